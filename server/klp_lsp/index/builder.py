"""Builds an object's index: symbols, DWARF facts and register facts, CU by CU.

The builder is the only place that drives the binary readers and the analyses together. It can
index a chosen subset of compile units first (those a patch touches) and the rest later into the
same file: IPA-RA, inlining and cloning do not cross CUs in kernels built without LTO, so the
facts of one CU depend only on that CU's DWARF and code, plus the clobber sets of callees in other
CUs, which are computed on demand from their code.

Work is spread over a process pool: over CUs for one large object, over objects for many modules.
Forked workers inherit the parent's open binary (see `_WorkerCache`) and send back table rows.

A compile unit that cannot be read (malformed DWARF, or over its time budget,
`limits.cu_budget_seconds`) costs that CU only: it is stored with state `CU_FAILED` and the
reason, and `klp-lsp show` names it. A worker never lets any other exception out: what is not a
`KlpError` comes back as a `BinaryFormatError` naming the file.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from klp_lsp import __version__
from klp_lsp.analysis.clones import parse_clone_name
from klp_lsp.analysis.patchability import function_has_mcount
from klp_lsp.analysis.producer import parse_producer
from klp_lsp.analysis.symbols import CuLocator, assign_sympos, find_symbol_start
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import BinaryFormatError, DebugInfoMissing, IndexError_, KlpError
from klp_lsp.index.locate import index_path
from klp_lsp.index.store import (
    CU_ANALYSED,
    CU_FAILED,
    CuRow,
    FactRows,
    Index,
    IndexWriter,
    SymbolRow,
    fact_rows,
    source_name,
)
from klp_lsp.limits import Deadline, cu_budget_seconds
from klp_lsp.model import Arch, CompileUnit, ElfSymbol
from klp_lsp.progress import Cancelled, Progress, progress_title

if TYPE_CHECKING:
    # Imported where used instead: the DWARF scanner, the register analysis (capstone) and the
    # process pool are a third of `klp-lsp show`'s start-up, and an indexed binary needs none.
    from concurrent.futures import Executor, Future

    from klp_lsp.binary.dwarf import DwarfData
    from klp_lsp.index import regfacts

# CUs per task sent to a worker: large enough to amortise pickling, small enough to balance.
_BATCH_BYTES = 2_000_000


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What `build_index` did for one binary."""

    binary: Path
    object: str
    build_id: str
    index_path: Path
    reused: bool
    complete: bool
    seconds: float


class _WorkerCache:
    """One open binary per worker process, reused across the CU batches it is sent.

    The parent adopts its own open binary here before it forks its pool, so the workers inherit
    the DWARF sections (shared copy-on-write pages, not one copy per process), the units and
    the decoded symbol table instead of reading them again; a single-process build uses it the
    same way. The register analyser is built where the first batch runs, so a forked worker
    builds it while the parent writes the symbols. A worker of an executor started elsewhere
    opens the binary itself.

    A worker of such an executor may run tasks in threads (a Dask worker does, and a fleet
    build's writer task waits in one while batches run in another), so `lock` serialises the
    batches of a process and keeps `clear` from closing a binary that a batch is reading.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.key: tuple[Path, int, int] | None = None
        self.binary: ElfBinary | None = None
        self.dwarf: DwarfData | None = None
        self.units: Sequence[CuRow] = ()
        self.known_callees: Mapping[str, regfacts.KnownCallee] | None = None
        self.analyser: regfacts.RegisterAnalyser | None = None
        self.symbol_starts: frozenset[int] = frozenset()
        self.owned = False

    def adopt(
        self,
        path: Path,
        binary: ElfBinary,
        dwarf: DwarfData,
        units: Sequence[CuRow],
        known_callees: Mapping[str, regfacts.KnownCallee] | None,
    ) -> None:
        """Use the caller's open binary (it stays owned, and closed, by the caller)."""
        with self.lock:
            self.clear()
            self.key = _file_key(path)
            self.binary, self.dwarf = binary, dwarf
            self.units, self.known_callees = units, known_callees

    def clear(self) -> None:
        with self.lock:
            if self.owned and self.binary is not None:
                self.binary.close()
            self.key = self.binary = self.dwarf = self.analyser = self.known_callees = None
            self.units = ()
            self.symbol_starts = frozenset()
            self.owned = False

    def get(
        self,
        path: Path,
        units: Sequence[CuRow] | None,
        known_callees: Mapping[str, regfacts.KnownCallee] | None = None,
    ) -> tuple[ElfBinary, DwarfData, regfacts.RegisterAnalyser]:
        from klp_lsp.index import regfacts

        key = _file_key(path)
        if self.key != key or self.binary is None or self.dwarf is None:
            if units is None:
                raise IndexError_(f"{path}: worker process has no open binary to index")
            from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData

            self.clear()
            self.binary = ElfBinary.open(path)
            self.owned = True
            self.dwarf = DwarfData(
                self.binary.get_dwarf_sections(DWARF_SECTIONS), self.binary.arch, str(path)
            )
            self.units, self.known_callees = units, known_callees
            self.key = key
        if self.analyser is None:
            self.analyser = regfacts.RegisterAnalyser(
                self.binary,
                self.units,
                self.binary.iter_function_symbols(),
                known_callees=self.known_callees,
            )
            self.symbol_starts = frozenset(s.address for s in self.binary.iter_function_symbols())
        return self.binary, self.dwarf, self.analyser


def _file_key(path: Path) -> tuple[Path, int, int]:
    # A kernel rebuilt in place keeps its path: the cache must not serve the old file.
    st = path.stat()
    return path, st.st_mtime_ns, st.st_size


# A process-wide cache is how a pool worker keeps its open binary between tasks; it is owned by
# the worker process and keyed by path, mtime and size. The parent only fills it (`adopt`)
# around a build.
_WORKER = _WorkerCache()

# A batch's table rows and the name of its last CU (for progress). Workers send rows, not the
# records: plain tuples pickle several times faster (docs/performance.md).
BatchResult = tuple[FactRows, str]


def _index_batch(
    path: Path,
    units: Sequence[CuRow] | None,
    offsets: Sequence[int],
    known_callees: Mapping[str, regfacts.KnownCallee] | None = None,
) -> BatchResult:
    """Scan the DWARF of some CUs, analyse their machine code, make their rows (in a worker).

    Each CU has its own `Deadline` of `limits.cu_budget_seconds()`; one that fails is reported
    in the rows' `failed` list and the others go on.
    """
    try:
        with _WORKER.lock:
            return _index_batch_locked(path, units, offsets, known_callees)
    except KlpError:
        raise
    except Exception as e:
        raise _cannot_index(path, e) from None


def _index_batch_locked(
    path: Path,
    units: Sequence[CuRow] | None,
    offsets: Sequence[int],
    known_callees: Mapping[str, regfacts.KnownCallee] | None,
) -> BatchResult:
    binary, dwarf, analyser = _WORKER.get(path, units, known_callees)
    starts, arch = _WORKER.symbol_starts, binary.arch

    def symbol_start(address: int) -> int:
        found = find_symbol_start(address, starts, arch)
        return address if found is None else found

    seconds = cu_budget_seconds()
    parts: list[FactRows] = []
    last = ""
    for offset in offsets:
        deadline = Deadline(seconds)
        try:
            cu = dwarf.scan_unit(offset, deadline)
            uses, dependents = analyser.analyse([cu], deadline)
            parts.append(fact_rows([cu], uses, dependents, symbol_start))
        except KlpError as e:
            parts.append(fact_rows((), failed=[(offset, str(e))]))
            continue
        except Exception as e:
            # A reader or the analysis tripped over something malformed that no check
            # anticipated: this CU is lost, not the index.
            parts.append(fact_rows((), failed=[(offset, _internal(path, offset, e))]))
            continue
        last = cu.unit.name
    return FactRows.concat(parts), last


def build_index_task(
    path: Path,
    index_dir: Path,
    *,
    jobs: int = 0,
    known_callees: Mapping[str, regfacts.KnownCallee] | None = None,
) -> BuildResult:
    """`build_index` as the task of a pool over binaries: nothing but a `KlpError` leaves it,
    so the parent never prints a worker's traceback."""
    try:
        return build_index(path, index_dir, jobs=jobs, known_callees=known_callees)
    except KlpError:
        raise
    except Exception as e:
        raise _cannot_index(path, e) from None


def worker_died(path: Path | str) -> BinaryFormatError:
    """The error for a pool whose worker process ended abruptly (a signal, the OOM killer, a
    crash in a C extension): `BrokenProcessPool` has no more to say than that."""
    return BinaryFormatError(
        f"{path}: a worker process indexing it ended abruptly (killed by a signal or out of memory)"
    )


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _cannot_index(path: Path, e: BaseException) -> BinaryFormatError:
    return BinaryFormatError(f"{path}: cannot be indexed: internal error ({_one_line(e)})")


def _internal(path: Path, offset: int, e: Exception) -> str:
    return (
        f"{path}: unit at .debug_info+0x{offset:x}: internal error while reading it"
        f" ({_one_line(e)})"
    )


def die_with_parent(parent: int) -> None:
    """Initializer of pool workers: end when the process that started the pool ends.

    A worker blocks on its call queue, whose other end it holds itself, so it never learns that
    a parent killed with SIGKILL is gone and would sleep forever. Linux sends it SIGKILL instead
    (prctl PR_SET_PDEATHSIG; the pool's processes are started by the thread that submits to
    it, which lives as long as the pool); a parent that died before that is checked for after.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _default_jobs(jobs: int) -> int:
    return jobs if jobs > 0 else max(1, min(os.cpu_count() or 1, 8))


def _select_units(units: Sequence[CuRow], cu_names: Sequence[str] | None) -> list[CuRow]:
    if cu_names is None:
        return list(units)
    wanted = {source_name(n, "") for n in cu_names}
    return [u for u in units if source_name(u.unit.name, u.unit.comp_dir) in wanted]


def _batches(units: Sequence[CuRow], sizes: dict[int, int]) -> list[list[int]]:
    out: list[list[int]] = []
    current: list[int] = []
    weight = 0
    # Largest first, so the pool does not finish on one big straggler.
    for u in sorted(units, key=lambda u: -sizes.get(u.unit.offset, 0)):
        current.append(u.unit.offset)
        weight += sizes.get(u.unit.offset, 0)
        if weight >= _BATCH_BYTES:
            out.append(current)
            current, weight = [], 0
    if current:
        out.append(current)
    return out


def cu_locator(units: Iterable[CuRow]) -> CuLocator:
    """Where each unit's code ranges lie."""
    return CuLocator((lo, hi, u.unit.offset) for u in units for lo, hi in u.ranges)


def _symbol_rows(
    symbols: Sequence[ElfSymbol],
    kallsyms: Sequence[ElfSymbol],
    records: frozenset[int],
    locator: CuLocator,
    arch: Arch,
) -> list[SymbolRow]:
    sympos = assign_sympos(kallsyms)
    rows = []
    for s in symbols:
        clone = parse_clone_name(s.name)
        rows.append(
            SymbolRow(
                name=s.name,
                address=s.address,
                size=s.size,
                section=s.section,
                binding=s.binding,
                sympos=sympos.get((s.name, s.address), 0),
                origin=clone.origin,
                clone_kinds=clone.kinds,
                has_mcount=function_has_mcount(s.address, s.size, records, arch),
                cu_id=locator.find_function(s.address, s.size, arch),
            )
        )
    return rows


def _list_units(dwarf: DwarfData) -> list[CuRow]:
    """Every unit with its top DIE's facts; one whose header or top DIE is unreadable is listed
    as failed (the unit lengths still lead to the next one)."""
    rows = []
    for offset in dwarf.iter_unit_offsets():
        try:
            h = dwarf.get_unit_header(offset)
        except BinaryFormatError as e:
            unit = CompileUnit(offset, "", "", "", None, False)
            rows.append(CuRow(unit, parse_producer(""), (), CU_FAILED, str(e)))
            continue
        unit = h.to_compile_unit()
        rows.append(
            CuRow(unit=unit, flags=parse_producer(h.producer), ranges=tuple(h.ranges), state=0)
        )
    return rows


def build_index(
    path: Path,
    index_dir: Path,
    *,
    jobs: int = 0,
    progress: Progress | None = None,
    cu_names: Sequence[str] | None = None,
    executor: Executor | None = None,
    known_callees: Mapping[str, regfacts.KnownCallee] | None = None,
) -> BuildResult:
    """Index `path` into `index_dir` (all CUs, or first only those named in `cu_names`).

    Re-indexing a binary whose build-id is already fully indexed is a no-op. With `cu_names`, a
    missing index is created with just those CUs analysed, and an existing partial one gains them.
    `known_callees` (a module's build, from the vmlinux index: `regfacts.read_known_callees`)
    gives its calls to vmlinux asm helpers their clobber sets, so their dependents are found.
    Each CU may take `limits.cu_budget_seconds()` (`$KLP_LSP_CU_BUDGET`).
    """
    started = time.monotonic()
    path = Path(path)
    with ElfBinary.open(path) as binary:
        if not binary.has_dwarf:
            raise DebugInfoMissing(
                f"{path}: no DWARF debug info; install the kernel's debug package"
                " (Debian/Ubuntu: linux-image-$(uname -r)-dbg or -dbgsym;"
                " Fedora/RHEL: kernel-debuginfo)"
            )
        target = index_path(index_dir, binary.build_id)
        dwarf: DwarfData | None = None
        existing = _open_existing(target)
        if existing is not None:
            done = existing.complete
            # Read once: what is analysed, and the units to extend with it.
            units = [] if done else list(existing.iter_cus())
            existing.close()
            if done or (cu_names is not None and _covers(units, cu_names)):
                return BuildResult(
                    path,
                    binary.object_name,
                    binary.build_id,
                    target,
                    True,
                    done,
                    time.monotonic() - started,
                )
            writer = IndexWriter.extend(target)
            write_symbols: Callable[[], None] | None = None
        else:
            writer = IndexWriter.create(target)
            # A binary that fails here (corrupt DWARF) must not leave the temporary file.
            try:
                from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData

                dwarf = DwarfData(binary.get_dwarf_sections(DWARF_SECTIONS), binary.arch, str(path))
                units = _list_units(dwarf)
                writer.set_meta(
                    {
                        "build_id": binary.build_id,
                        "object": binary.object_name,
                        "binary": str(path.resolve()),
                        "arch": binary.arch,
                        "kind": binary.kind,
                        "elf_type": binary.elf_type,
                        "klp_lsp_version": __version__,
                        "complete": "0",
                    }
                )
                writer.add_cus(units)
            except BaseException:
                writer.close()
                raise

            def write_symbols() -> None:
                writer.add_symbols(
                    _symbol_rows(
                        binary.iter_function_symbols(),
                        binary.iter_kallsyms_symbols(),
                        binary.get_mcount_records(),
                        cu_locator(units),
                        binary.arch,
                    )
                )

        try:
            todo = [u for u in _select_units(units, cu_names) if u.state < CU_ANALYSED]
            if todo:
                from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData

                if dwarf is None:
                    dwarf = DwarfData(
                        binary.get_dwarf_sections(DWARF_SECTIONS), binary.arch, str(path)
                    )
                build = _Build(binary, path, dwarf, units, known_callees)
                # A first pass for some CUs says which (the editor shows it while waiting).
                title = progress_title(
                    binary.object_name,
                    None
                    if cu_names is None
                    else [source_name(u.unit.name, u.unit.comp_dir) for u in todo],
                )
                _index_units(
                    build, writer, todo, jobs, progress, executor, write_symbols, title=title
                )
            elif write_symbols is not None:
                write_symbols()
            if cu_names is None or len(todo) == len(units):
                writer.set_meta({"complete": "1"})
                complete = True
            else:
                complete = _all_analysed(writer)
                if complete:
                    writer.set_meta({"complete": "1"})
            writer.publish()
        except BaseException:
            writer.close()
            raise
        writer.close()
        return BuildResult(
            path,
            binary.object_name,
            binary.build_id,
            target,
            False,
            complete,
            time.monotonic() - started,
        )


def _open_existing(target: Path) -> Index | None:
    if not target.exists():
        return None
    try:
        return Index(target)
    except IndexError_:
        # Another schema version or a damaged file: rebuild from scratch.
        target.unlink(missing_ok=True)
        return None


def _covers(units: Sequence[CuRow], cu_names: Sequence[str]) -> bool:
    wanted = {source_name(n, "") for n in cu_names}
    return all(
        u.state >= CU_ANALYSED for u in units if source_name(u.unit.name, u.unit.comp_dir) in wanted
    )


def _all_analysed(writer: IndexWriter) -> bool:
    return writer.count_cus_below(CU_ANALYSED) == 0


@dataclass(frozen=True, slots=True)
class _Build:
    """The open binary a build works on, with what every batch of it needs."""

    binary: ElfBinary
    path: Path
    dwarf: DwarfData
    units: Sequence[CuRow]
    known_callees: Mapping[str, regfacts.KnownCallee] | None


def _index_units(
    build: _Build,
    writer: IndexWriter,
    todo: Sequence[CuRow],
    jobs: int,
    progress: Progress | None,
    executor: Executor | None,
    first: Callable[[], None] | None = None,
    *,
    title: str,
) -> None:
    """Scan and analyse `todo`, writing each batch in its own transaction (in batch order).

    `first` (writing the symbols of a new index) runs once the pool has its tasks and before
    any batch is written: forked workers scan and analyse meanwhile.
    """
    binary = build.binary
    all_units = build.units
    if progress is not None:
        progress.begin(title, len(todo))
    sizes = {u.unit.offset: s for u, s in zip(all_units, _unit_sizes(all_units), strict=True)}
    batches = _batches(todo, sizes)
    workers = _default_jobs(jobs)
    done = 0
    # Decoded here, before the pool forks, so that every worker inherits the symbol table.
    binary.iter_function_symbols()

    def consume(result: BatchResult) -> None:
        nonlocal done
        rows, last_name = result
        writer.add_fact_rows(rows, state=CU_ANALYSED)
        done += len(rows.cus) + len(rows.failed)
        if progress is not None:
            progress.advance(done, last_name)
            if progress.cancelled():
                raise Cancelled(f"indexing {binary.object_name} cancelled")

    def run_first() -> None:
        if first is not None:
            first()

    from concurrent.futures import BrokenExecutor

    _WORKER.adopt(build.path, binary, build.dwarf, all_units, build.known_callees)
    try:
        if workers == 1:
            run_first()
            for batch in batches:
                consume(_index_batch(build.path, None, batch, None))
        elif executor is not None:
            # Its workers were started before this build: they open the binary themselves.
            futures = [
                executor.submit(_index_batch, build.path, all_units, b, build.known_callees)
                for b in batches
            ]
            _consume_in_order(futures, consume, run_first)
        else:
            # Forked now, the workers inherit the adopted binary: they need no units and read
            # no section again. Even a single batch (a first diagnostic) goes to a worker, so
            # that its scan and register analysis overlap the parent's symbol work.
            # Forked explicitly: in a process started with `spawn` (the language server's
            # indexing child) the default start method is spawn too, and spawned workers
            # would inherit nothing.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            fork = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(
                min(workers, len(batches)),
                mp_context=fork,
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                try:
                    _consume_in_order(
                        [pool.submit(_index_batch, build.path, None, b, None) for b in batches],
                        consume,
                        run_first,
                    )
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
    except BrokenExecutor:
        raise worker_died(build.path) from None
    finally:
        _WORKER.clear()
    if progress is not None:
        progress.end(f"{done} compile units")


def _consume_in_order(
    futures: list[Future[BatchResult]],
    consume: Callable[[BatchResult], None],
    first: Callable[[], None],
) -> None:
    # In submission order, so the index is the same whatever the pool's timing; each result is
    # dropped once written, so the parent never holds more than the batches still in flight.
    futures.reverse()
    try:
        first()
        while futures:
            consume(futures.pop().result())
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _unit_sizes(units: Sequence[CuRow]) -> list[int]:
    # The distance to the next CU header is the CU's size in .debug_info.
    offsets = sorted(u.unit.offset for u in units)
    nxt = {o: (offsets[i + 1] if i + 1 < len(offsets) else o + 1) for i, o in enumerate(offsets)}
    return [nxt[u.unit.offset] - u.unit.offset for u in units]
