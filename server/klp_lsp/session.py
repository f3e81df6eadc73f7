"""A selection of kernel binaries and their indexes: what a CLI run or a language server holds.

It turns user input (paths, a kernel release, nothing) into binary files, makes sure each has a
current index, and opens them together as an `IndexSet`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from klp_lsp.binary.discovery import find_kernel_debug, iter_module_files
from klp_lsp.errors import UsageError
from klp_lsp.index.builder import BuildResult, build_index
from klp_lsp.index.query import IndexSet
from klp_lsp.progress import Progress


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
        """Build every missing index (a no-op for those already built)."""
        self.results = [
            build_index(
                path,
                self.index_dir,
                jobs=self.jobs,
                progress=progress,
                cu_names=cu_names,
            )
            for path in self.binary_files()
        ]
        return self.results

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
