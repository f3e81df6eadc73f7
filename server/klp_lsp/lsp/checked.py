"""The last check of each open document, kept for the features that show it in other ways.

Diagnostics run the check (see `features/diagnostics.py`); code lenses, hovers and the outline
of a patch answer from its result for the same document version, waiting for the check in
flight when there is one, so they never run a check of their own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lsprotocol import types

from klp_lsp.model import CheckResult, Finding, Severity


@dataclass(frozen=True, slots=True)
class Placed:
    """A finding as published: where it was placed in the document, at which severity."""

    finding: Finding
    range: types.Range
    severity: Severity


@dataclass(frozen=True, slots=True)
class Checked:
    """One document version's check result and its published findings."""

    version: int
    result: CheckResult
    placed: tuple[Placed, ...]

    def count(self, severity: Severity) -> int:
        return sum(p.severity == severity for p in self.placed)


class CheckedDocuments:
    """The last `Checked` of each open document and the check task in flight for it."""

    def __init__(self) -> None:
        self._last: dict[str, Checked] = {}
        self._running: dict[str, asyncio.Future[None]] = {}

    def running(self, uri: str, task: asyncio.Future[None]) -> None:
        """Note the check task that will (or will not) produce the document's next result."""
        self._running[uri] = task

    def store(self, uri: str, checked: Checked) -> None:
        self._last[uri] = checked

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._running.pop(uri, None)

    def get(self, uri: str, version: int) -> Checked | None:
        """The result for exactly this version of the document, if there is one already."""
        last = self._last.get(uri)
        return last if last is not None and last.version == version else None

    async def wait_for(self, uri: str, version: int, timeout: float) -> Checked | None:
        """The result for this version, waiting up to `timeout` s for the checks in flight.

        None when no check is coming (no index yet, the document is not a patch or C file) or
        the wait times out. A newer edit replaces the task in flight; it is then waited for.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.get(uri, version)
            if found is not None:
                return found
            task = self._running.get(uri)
            remaining = deadline - loop.time()
            if task is None or task.done() or remaining <= 0:
                return None
            # `wait` neither raises the task's exception nor cancels it on timeout.
            await asyncio.wait({task}, timeout=remaining)
