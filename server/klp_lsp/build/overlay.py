"""A copy-on-write view of a source tree: symlinks to it, with the patched files copied in.

Only the directories on the way to a changed file are real; every other entry is a symlink to the
original, so making an overlay of a kernel tree costs a few hundred symlinks, and the original
is never written. A compiler sees the overlay exactly as the source tree (`#include "rt.c"` from
`kernel/sched/build_policy.c` finds the patched `rt.c` next to it), except for a path that
leaves a symlinked directory with `..`, which the kernel resolves inside the original.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType

from klp_lsp.errors import UsageError


def check_relative(path: str) -> PurePosixPath:
    """A tree-relative path that stays inside the tree, or a one-line `UsageError`."""
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or any(part in ("..", ".", "") for part in p.parts):
        raise UsageError(f"{path}: not a path inside the source tree")
    return p


class Overlay:
    """A directory at `root` that reads like `source` with `files` replaced (None: deleted)."""

    def __init__(self, source: Path, root: Path, files: Mapping[str, str | None]) -> None:
        self.source = source
        self.root = root
        self._mirrored: set[Path] = set()
        root.mkdir(parents=True)
        try:
            for rel, text in sorted(files.items()):
                self._write(check_relative(rel), text)
        except BaseException:
            self.remove()
            raise

    def _mirror(self, dst: Path, src: Path) -> None:
        """Make `dst` hold a symlink to every entry of `src` it does not have yet."""
        if dst in self._mirrored:
            return
        self._mirrored.add(dst)
        if not src.is_dir():
            return
        with os.scandir(src) as entries:
            for entry in entries:
                link = dst / entry.name
                if not os.path.lexists(link):
                    os.symlink(entry.path, link)

    def _write(self, rel: PurePosixPath, text: str | None) -> None:
        dst, src = self.root, self.source
        for part in rel.parts[:-1]:
            self._mirror(dst, src)
            dst, src = dst / part, src / part
            if dst.is_symlink():
                dst.unlink()
            dst.mkdir(exist_ok=True)
        self._mirror(dst, src)
        target = dst / rel.parts[-1]
        if os.path.lexists(target):
            target.unlink()
        if text is not None:
            target.write_text(text, encoding="utf-8", errors="surrogateescape")

    def remove(self) -> None:
        """Delete the overlay (the symlinks, never what they point at)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Overlay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
