"""Progress reporting for long work (indexing): a protocol, and a terminal progress bar."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, TextIO


class Progress(Protocol):
    """Receives progress of one job; `cancelled()` lets the owner stop it between steps."""

    def begin(self, title: str, total: int) -> None: ...

    def advance(self, done: int, message: str = "") -> None: ...

    def end(self, message: str = "") -> None: ...

    def cancelled(self) -> bool: ...


class Cancelled(Exception):
    """Raised by a builder when its `Progress` asks to stop."""


def progress_title(object_name: str, cu_names: Sequence[str] | None) -> str:
    """`indexing vmlinux`, or for the source files indexed first `indexing kernel/sched/rt.c`
    (`and N more` after the first)."""
    if not cu_names:
        return f"indexing {object_name}"
    more = f" and {len(cu_names) - 1} more" if len(cu_names) > 1 else ""
    return f"indexing {cu_names[0]}{more}"


class TerminalProgress:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._title = ""
        self._total = 1
        self._last = 0.0

    def begin(self, title: str, total: int) -> None:
        self._title, self._total, self._last = title, max(total, 1), 0.0
        self.advance(0)

    def advance(self, done: int, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < self._total:
            return
        self._last = now
        filled = self._width * done // self._total
        bar = "#" * filled + " " * (self._width - filled)
        pct = 100 * done // self._total
        self._stream.write(f"\r{self._title} [{bar}] {pct:3d}% {message[:40]:40}")
        self._stream.flush()

    def end(self, message: str = "") -> None:
        self._stream.write(f"\r{self._title}: {message:{self._width + 50}}\n")
        self._stream.flush()

    def cancelled(self) -> bool:
        return False
