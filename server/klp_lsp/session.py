"""A selection of kernel binaries and their indexes: what a CLI run or a language server holds.

It turns user input (paths, a kernel release, nothing) into binary files, makes sure each has a
current index, and opens them together as an `IndexSet`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from klp_lsp.binary.discovery import find_kernel_debug, iter_module_files
from klp_lsp.errors import UsageError
from klp_lsp.index.builder import (
    BuildResult,
    build_index,
    build_index_task,
    die_with_parent,
    worker_died,
)
from klp_lsp.index.query import IndexSet
from klp_lsp.progress import Cancelled, Progress

if TYPE_CHECKING:
    # regfacts imports capstone; `show` on an indexed kernel needs neither.
    from klp_lsp.index.regfacts import KnownCallee

# Binaries at least this large (a vmlinux; the largest amd64 Debian module is 61 MB) are indexed
# with a pool over their CUs, and CU by CU first when a first answer needs only some; smaller ones
# are indexed whole, as one task of a pool over binaries.
_POOL_OVER_CUS_BYTES = 200 << 20


class Session:
    """Binaries chosen by the user and the index files that describe them."""

    def __init__(
        self,
        binaries: Sequence[Path],
        kernel: str | None,
        index_dir: Path,
        jobs: int = 0,
    ) -> None:
        self.requested = list(binaries)
        self.kernel = kernel
        self.index_dir = index_dir
        self.jobs = jobs
        self._files: list[Path] | None = None
        self.results: list[BuildResult] = []

    def binary_files(self) -> list[Path]:
        """The ELF files selected: explicit paths (directories expanded) or the kernel's."""
        if self._files is not None:
            return self._files
        files: list[Path] = []
        if self.requested:
            for p in self.requested:
                if p.is_dir():
                    found = list(iter_module_files(p))
                    if not found:
                        raise UsageError(f"{p}: directory holds no .ko, .ko.xz or .ko.zst files")
                    files.extend(found)
                elif p.exists():
                    files.append(p)
                else:
                    raise UsageError(f"{p}: no such file or directory")
        else:
            debug = find_kernel_debug(self.kernel)
            files.append(debug.vmlinux)
        self._files = files
        return files

    def ensure_indexes(
        self, progress: Progress | None = None, *, cu_names: Sequence[str] | None = None
    ) -> list[BuildResult]:
        """Build every missing index (a no-op for those already built).

        A large binary (vmlinux) is built alone with a pool over its CUs; many small ones
        (modules) are built one per task in a pool over binaries, each serially in its worker:
        a module has too few CUs to keep a pool busy, and starting a pool per module would
        cost more than indexing it.
        """
        files = self.binary_files()
        workers = self.jobs if self.jobs > 0 else max(1, min(os.cpu_count() or 1, 8))
        # Only a large binary (a vmlinux) is worth indexing CU by CU for a first answer; a module
        # or a test kernel is indexed whole at once.
        large = {i for i, f in enumerate(files) if _file_size(f) >= _POOL_OVER_CUS_BYTES}
        small = [i for i in range(len(files)) if i not in large]
        if workers == 1 or len(small) < 2:
            small = []
        results: dict[int, BuildResult] = {}
        # vmlinux first: modules then learn the clobber sets of the asm helpers they call.
        order = sorted(range(len(files)), key=lambda i: is_module_file(files[i]))
        known: dict[str, KnownCallee] | None = None
        for i in order:
            if i in small:
                continue
            results[i] = build_index(
                files[i],
                self.index_dir,
                jobs=self.jobs,
                progress=progress,
                cu_names=cu_names if i in large else None,
                known_callees=known if is_module_file(files[i]) else None,
            )
            if results[i].object == "vmlinux" and any(is_module_file(f) for f in files):
                known = known_callees_of(results[i].index_path)
        if small:
            results.update(self._build_many(files, small, workers, progress, known))
        self.results = [results[i] for i in range(len(files))]
        return self.results

    def _build_many(
        self,
        files: Sequence[Path],
        chosen: Sequence[int],
        workers: int,
        progress: Progress | None,
        known: Mapping[str, KnownCallee] | None = None,
    ) -> dict[int, BuildResult]:
        """Index `files[i]` for each chosen i, one binary per task, largest first."""
        from concurrent.futures import (  # see builder imports
            BrokenExecutor,
            Future,
            ProcessPoolExecutor,
            as_completed,
        )

        order = sorted(chosen, key=lambda i: -_file_size(files[i]))
        if progress is not None:
            progress.begin(f"indexing {len(order)} binaries", len(order))
        out: dict[int, BuildResult] = {}
        with ProcessPoolExecutor(
            max_workers=min(workers, len(order)),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            pending: dict[Future[BuildResult], int] = {}
            try:
                try:
                    # A worker that dies at once breaks the pool while tasks are still being
                    # submitted: `submit` raises then, not `result`.
                    for i in order:
                        task = pool.submit(
                            build_index_task, files[i], self.index_dir, jobs=1, known_callees=known
                        )
                        pending[task] = i
                except BrokenExecutor:
                    raise worker_died(files[next(iter(pending.values()), i)]) from None
                for future in as_completed(pending):
                    i = pending[future]
                    try:
                        out[i] = future.result()
                    except BrokenExecutor:
                        raise worker_died(files[i]) from None
                    if progress is not None:
                        progress.advance(len(out), files[i].name)
                        if progress.cancelled():
                            raise Cancelled(f"indexing {len(order)} binaries cancelled")
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        if progress is not None:
            progress.end(f"{len(order)} binaries")
        return out

    def index_extra(self, path: Path, progress: Progress | None = None) -> BuildResult:
        """Index a binary outside the selection (a livepatch module) in the same index
        directory, with the clobber sets of the selected vmlinux's asm helpers."""
        if not self.results:
            self.ensure_indexes(progress=progress)
        vmlinux = next((r for r in self.results if r.object == "vmlinux"), None)
        known = known_callees_of(vmlinux.index_path) if vmlinux is not None else None
        return build_index(path, self.index_dir, jobs=1, progress=progress, known_callees=known)

    @contextmanager
    def open(self) -> Iterator[IndexSet]:
        """Open the indexes built by `ensure_indexes`."""
        if not self.results:
            self.ensure_indexes()
        indexes = IndexSet.open([r.index_path for r in self.results])
        try:
            yield indexes
        finally:
            indexes.close()


def is_module_file(path: Path) -> bool:
    """A kernel module by its file name (`.ko`, `.ko.xz`, `.ko.zst`)."""
    return ".ko" in path.name


def known_callees_of(vmlinux_index: Path) -> dict[str, KnownCallee] | None:
    """The asm helpers of an indexed vmlinux, for the register analysis of its modules."""
    from klp_lsp.index.regfacts import read_known_callees
    from klp_lsp.index.store import open_readonly

    index = open_readonly(vmlinux_index)
    try:
        return read_known_callees(index) or None
    finally:
        index.close()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
