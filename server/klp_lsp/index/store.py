"""Reading and writing one object's index file; the only module that speaks SQL.

An index file is created under a temporary name and renamed into place once its header and first
batch of compile units are committed, so a crash never leaves a half-written file under the real
name. Later batches (the rest of the CUs after a first diagnostic) are added in transactions, each
together with the `state` of the CUs it completes, so a reader never sees half a CU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from klp_lsp.errors import IndexError_
from klp_lsp.index.schema import SCHEMA, SCHEMA_VERSION
from klp_lsp.model import (
    CallEdge,
    CompilerFlags,
    CompileUnit,
    CuFacts,
    Param,
    RegisterDependent,
    RegisterUse,
)

_SIGN = 1 << 63
_WRAP = 1 << 64

# Scan state of a CU in the `cus` table. A failed CU (unreadable DWARF, over its budget) is as
# final as an analysed one: the index is complete without it, and `error` says why it is missing.
CU_LISTED, CU_SCANNED, CU_ANALYSED, CU_FAILED = 0, 1, 2, 3


def to_db(address: int) -> int:
    """Store an unsigned 64-bit address in SQLite's signed INTEGER.

    The readers keep addresses inside [0, 2^64); anything else is a bug, reported as such rather
    than as SQLite's OverflowError.
    """
    if not 0 <= address < _WRAP:
        raise ValueError(f"address {address:#x} does not fit 64 bits")
    return address - _WRAP if address >= _SIGN else address


def _int64(value: int | None) -> int | None:
    """A number read from a file (a line, a DW_AT_inline, a DIE reference) when SQLite can store
    it; None when it cannot (only a corrupt file gives one)."""
    return value if value is None or -_SIGN <= value < _SIGN else None


def from_db(value: int) -> int:
    """Inverse of `to_db`."""
    return value + _WRAP if value < 0 else value


def source_name(name: str, comp_dir: str) -> str:
    """A CU's source file relative to the source tree.

    `./kernel/fork.c` becomes `kernel/fork.c`. Asm CUs record absolute paths, and an out-of-tree
    build's `DW_AT_comp_dir` is a directory below the source tree (Debian:
    `<srctree>/debian/build/build_amd64_none_cloud-amd64`), so the longest ancestor of comp_dir
    that prefixes the name is taken as the tree. Relative names may lead to a tree beside the
    build directory first (`tree_prefix`).
    """
    if name.startswith("/") and comp_dir.startswith("/"):
        parts = comp_dir.rstrip("/").split("/")
        for n in range(len(parts), 1, -1):
            prefix = "/".join(parts[:n]) + "/"
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
    name = name[len(tree_prefix(name, comp_dir)) :]
    while name.startswith("./"):
        name = name[2:]
    return name


def tree_prefix(path: str, comp_dir: str) -> str:
    """The part of a relative DWARF path that leads to a source tree beside the build directory.

    Debian builds its featureset flavours (rt) in `debian/build/build_amd64_rt_amd64` from a
    patched copy of the tree in `debian/build/source_rt`, so their files are named
    `debian/build/source_rt/kernel/sched/core.c`; the cloud and generic flavours' sources are the
    package's own tree and are named `kernel/sched/core.c`. Returns `debian/build/source_rt/`
    there, else "".
    """
    if path.startswith("/") or not comp_dir or comp_dir.startswith("/"):
        return ""
    parent = posixpath.dirname(posixpath.normpath(comp_dir))
    if not parent or not path.startswith(parent + "/"):
        return ""
    sibling, sep, _rest = path[len(parent) + 1 :].partition("/")
    return f"{parent}/{sibling}/" if sep else ""


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    return " ".join(f"{lo:x}-{hi:x}" for lo, hi in ranges)


def parse_ranges(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in text.split():
        lo, _, hi = item.partition("-")
        out.append((int(lo, 16), int(hi, 16)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SymbolRow:
    """A symbol as the builder stores it."""

    name: str
    address: int
    size: int
    section: str
    binding: str
    sympos: int
    origin: str
    clone_kinds: tuple[str, ...]
    has_mcount: bool
    cu_id: int | None


@dataclass(frozen=True, slots=True)
class CuRow:
    """A compile unit and its compiler guarantees."""

    unit: CompileUnit
    flags: CompilerFlags
    ranges: tuple[tuple[int, int], ...]
    state: int  # CU_LISTED, CU_SCANNED, CU_ANALYSED or CU_FAILED
    error: str | None = None  # why a CU_FAILED unit could not be read


Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class FactRows:
    """The table rows of some CUs' facts, as `IndexWriter.add_fact_rows` inserts them.

    Plain tuples: a pool worker builds them and sends them to the parent, which pickles several
    times faster than the records they come from (docs/performance.md).
    """

    cus: list[int]
    functions: list[Row]
    instances: list[Row]
    params: list[Row]
    inline_sites: list[Row]
    register_use: list[Row]
    register_use_callers: list[int]  # their old `calls` rows are replaced
    calls: list[Row]
    register_dependents: list[Row]
    cu_files: list[Row] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (CU, reason)

    @classmethod
    def concat(cls, parts: Sequence[FactRows]) -> FactRows:
        """The rows of several CUs' `FactRows` in one, in order."""
        out = cls(*([] for _ in dataclasses.fields(cls)))
        for part in parts:
            for f in dataclasses.fields(cls):
                getattr(out, f.name).extend(getattr(part, f.name))
        return out


def fact_rows(
    facts: Sequence[CuFacts],
    register_use: Sequence[RegisterUse] = (),
    dependents: Sequence[RegisterDependent] = (),
    symbol_start: Callable[[int], int] = lambda address: address,
    failed: Sequence[tuple[int, str]] = (),
) -> FactRows:
    """The rows of whole CUs' DWARF facts and register facts, for `IndexWriter.add_fact_rows`.

    `symbol_start` maps a DWARF entry address to the FUNC symbol it belongs to (on arm64 the
    DWARF low_pc follows the two patchable-entry NOPs, 8 bytes after the symbol).
    """
    functions: list[Row] = []
    instances: list[Row] = []
    params: list[Row] = []
    sites: list[Row] = []
    for cu in facts:
        cu_id = cu.unit.offset
        by_die = {s.die_offset: s for s in cu.subprograms}
        for sp in cu.subprograms:
            if sp.declaration or sp.name is None:
                continue
            if sp.abstract_origin is None:
                functions.append(
                    (
                        sp.die_offset,
                        cu_id,
                        sp.name,
                        sp.linkage_name,
                        sp.decl_file,
                        _int64(sp.decl_line),
                        int(sp.external),
                        _int64(sp.inline),
                        _int64(sp.calling_convention),
                        int(sp.noreturn),
                        _int64(sp.return_size),
                    )
                )
            if sp.ranges:
                origin = sp.abstract_origin if sp.abstract_origin is not None else sp.die_offset
                # A concrete instance may point at a declaration through its abstract origin's
                # specification; the function row is the abstract origin itself.
                origin_sp = by_die.get(origin)
                if origin_sp is not None and origin_sp.abstract_origin is not None:
                    origin = origin_sp.abstract_origin
                entry = symbol_start(min(r[0] for r in sp.ranges))
                if _int64(origin) is not None:
                    instances.append(
                        (sp.die_offset, origin, cu_id, to_db(entry), format_ranges(sp.ranges))
                    )
            for i, p in enumerate(sp.params):
                params.append((sp.die_offset, i, p.name, p.location, p.type_kind))
        for site in cu.inline_sites:
            if _int64(site.origin) is None:
                continue
            lo = min((r[0] for r in site.ranges), default=None)
            sites.append(
                (
                    site.die_offset,
                    site.origin,
                    cu_id,
                    site.container,
                    site.parent,
                    site.call_file,
                    _int64(site.call_line),
                    None if lo is None else to_db(lo),
                )
            )
    edges: list[CallEdge] = [e for u in register_use for e in u.calls]
    files: list[Row] = [(cu.unit.offset, source_name(f, "")) for cu in facts for f in cu.files]
    return FactRows(
        cus=[cu.unit.offset for cu in facts],
        functions=functions,
        instances=instances,
        params=params,
        inline_sites=sites,
        register_use=[
            (
                to_db(u.address),
                " ".join(sorted(u.clobbers)),
                " ".join(sorted(u.callee_saved_clobbers)),
                None if u.arguments is None else " ".join(sorted(u.arguments)),
            )
            for u in register_use
        ],
        register_use_callers=[to_db(u.address) for u in register_use],
        calls=[
            (
                to_db(e.caller),
                to_db(e.site),
                None if e.callee is None else to_db(e.callee),
                e.kind,
            )
            for e in edges
        ],
        register_dependents=[
            (
                to_db(d.callee),
                to_db(d.caller),
                to_db(d.site),
                " ".join(d.registers),
                d.reason,
                " ".join(f"{a:x}" for a in d.via),
            )
            for d in dependents
        ],
        cu_files=files,
        failed=list(failed),
    )


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            con = sqlite3.connect(path, check_same_thread=False)
        version = con.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise IndexError_(f"{path}: not a readable klp-lsp index ({e})") from e
    if readonly and version != SCHEMA_VERSION:
        con.close()
        raise IndexError_(f"{path}: index schema {version}, this klp-lsp needs {SCHEMA_VERSION}")
    return con


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """SQLite and file-system errors of a writer (a read-only or full disk, a locked index) as
    one-line `IndexError_`s."""
    try:
        yield
    except sqlite3.Error as e:
        raise IndexError_(f"{path}: cannot write the index: {e}") from e
    except OSError as e:
        raise IndexError_(f"{path}: cannot write the index: {e.strerror or e}") from e


def temporary_path(path: Path) -> Path:
    """Where this process builds `path` before publishing it: `.NAME.HOST.PID.tmp`. The host
    is part of the name because an index directory may be shared (a fleet's workers on a
    shared file system), and a process id means something only on its own host."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def remove_orphans(path: Path) -> None:
    """Remove the temporary files of builds of `path`, on this host, whose process no longer
    runs.

    A build killed before it published (`kill -9`, a crash, a power cut) leaves its temporary
    file behind; it was never visible under the real name, so it is only garbage. Files of
    other hosts are left alone: whether their process runs cannot be told from here.
    """
    prefix, host = f".{path.name}.", socket.gethostname()
    for tmp in path.parent.glob(f"{prefix}*.tmp"):
        owner, _, pid = tmp.name[len(prefix) : -len(".tmp")].rpartition(".")
        if owner != host or not pid.isdigit() or _process_runs(int(pid)):
            continue
        tmp.unlink(missing_ok=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True


class IndexWriter:
    """Builds or extends one index file."""

    def __init__(self, con: sqlite3.Connection, final_path: Path, tmp_path: Path | None) -> None:
        self._con = con
        self.path = final_path
        self._tmp = tmp_path

    @classmethod
    def create(cls, path: Path) -> IndexWriter:
        """Start a new index under a temporary name beside `path`.

        Temporary files of builds that were killed (their process is gone) are removed first.
        """
        tmp = temporary_path(path)
        with _writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_orphans(path)
            tmp.unlink(missing_ok=True)
            con = sqlite3.connect(tmp, check_same_thread=False)
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.executescript(SCHEMA)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return cls(con, path, tmp)

    @classmethod
    def extend(cls, path: Path) -> IndexWriter:
        """Open a published index to add the compile units it still lacks."""
        con = _connect(path, readonly=False)
        with _writing(path):
            con.execute("PRAGMA journal_mode=WAL")
        return cls(con, path, None)

    # --- writing ---------------------------------------------------------------------------

    def set_meta(self, values: dict[str, str]) -> None:
        with _writing(self.path), self._con:
            self._con.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items()
            )

    def add_cus(self, cus: Sequence[CuRow]) -> None:
        with _writing(self.path), self._con:
            self._con.executemany(
                "INSERT INTO cus VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c.unit.offset,
                        c.unit.name,
                        c.unit.comp_dir,
                        c.unit.producer,
                        c.unit.language,
                        int(c.unit.is_asm),
                        c.flags.ftrace,
                        int(c.flags.ipa_ra),
                        c.flags.opt_level,
                        c.flags.live_patching,
                        c.state,
                        c.error,
                    )
                    for c in cus
                ],
            )
            self._con.executemany(
                "INSERT INTO cu_ranges VALUES (?,?,?)",
                [(c.unit.offset, to_db(lo), to_db(hi)) for c in cus for lo, hi in c.ranges],
            )

    def add_symbols(self, symbols: Sequence[SymbolRow]) -> None:
        with _writing(self.path), self._con:
            self._con.executemany(
                "INSERT INTO symbols(name, address, size, section, binding, sympos, origin,"
                " clone_kinds, has_mcount, cu_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        s.name,
                        to_db(s.address),
                        s.size,
                        s.section,
                        s.binding,
                        s.sympos,
                        s.origin,
                        " ".join(s.clone_kinds),
                        int(s.has_mcount),
                        s.cu_id,
                    )
                    for s in symbols
                ],
            )

    def add_fact_rows(self, rows: FactRows, *, state: int) -> None:
        """Store rows made by `fact_rows` in one transaction and mark their CUs `state`."""
        con = self._con
        with _writing(self.path), con:
            con.executemany(
                "INSERT OR REPLACE INTO functions VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows.functions
            )
            con.executemany("INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?)", rows.instances)
            con.executemany("INSERT OR REPLACE INTO params VALUES (?,?,?,?,?)", rows.params)
            con.executemany(
                "INSERT OR REPLACE INTO inline_sites VALUES (?,?,?,?,?,?,?,?)", rows.inline_sites
            )
            con.executemany(
                "INSERT OR REPLACE INTO register_use VALUES (?,?,?,?)", rows.register_use
            )
            con.executemany(
                "DELETE FROM calls WHERE caller = ?", [(c,) for c in rows.register_use_callers]
            )
            con.executemany("INSERT INTO calls VALUES (?,?,?,?)", rows.calls)
            con.executemany(
                "INSERT INTO register_dependents VALUES (?,?,?,?,?,?)", rows.register_dependents
            )
            if rows.cu_files:
                con.executemany(
                    "DELETE FROM cu_files WHERE cu_id = ?", [(c,) for c in dict.fromkeys(rows.cus)]
                )
                con.executemany("INSERT INTO cu_files VALUES (?,?)", rows.cu_files)
            con.executemany("UPDATE cus SET state = ? WHERE id = ?", [(state, c) for c in rows.cus])
            con.executemany(
                "UPDATE cus SET state = ?, error = ? WHERE id = ?",
                [(CU_FAILED, reason, c) for c, reason in rows.failed],
            )

    def count_cus_below(self, state: int) -> int:
        """How many CUs have not reached `state` yet."""
        return int(
            self._con.execute("SELECT count(*) FROM cus WHERE state < ?", (state,)).fetchone()[0]
        )

    def publish(self) -> None:
        """Make the index visible under its real name (atomic rename)."""
        with _writing(self.path):
            self._con.commit()
            if self._tmp is not None:
                self._con.close()
                os.replace(self._tmp, self.path)
                self._tmp = None
                self._con = _connect(self.path, readonly=False)
                self._con.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self._con.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


class Index:
    """A read-only view of one object's index file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con = _connect(path, readonly=True)
        self._con.row_factory = sqlite3.Row
        meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        try:
            self.build_id: str = meta["build_id"]
            self.object: str = meta["object"]
            self.binary: str = meta["binary"]
            self.arch: str = meta["arch"]
        except KeyError as e:
            raise IndexError_(f"{path}: index has no {e.args[0]} (incomplete index)") from e
        self.meta = meta

    def close(self) -> None:
        self._con.close()

    @property
    def complete(self) -> bool:
        row = self._con.execute("SELECT value FROM meta WHERE key = 'complete'").fetchone()
        return bool(row and row[0] == "1")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Run a read query; used by the typed accessors below and in tests."""
        return self._con.execute(sql, params).fetchall()

    # --- typed accessors -------------------------------------------------------------------

    def iter_cus(self) -> Iterator[CuRow]:
        ranges: dict[int, list[tuple[int, int]]] = {}
        for r in self._con.execute("SELECT cu_id, lo, hi FROM cu_ranges"):
            ranges.setdefault(r[0], []).append((from_db(r[1]), from_db(r[2])))
        for r in self._con.execute("SELECT * FROM cus ORDER BY id"):
            yield _cu_row(r, tuple(ranges.get(r["id"], ())))

    def get_cu(self, cu_id: int) -> CuRow | None:
        r = self._con.execute("SELECT * FROM cus WHERE id = ?", (cu_id,)).fetchone()
        if r is None:
            return None
        ranges = tuple(
            (from_db(a), from_db(b))
            for a, b in self._con.execute("SELECT lo, hi FROM cu_ranges WHERE cu_id = ?", (cu_id,))
        )
        return _cu_row(r, ranges)

    def cus_with_file(self, path: str) -> list[int]:
        """Ids of the CUs whose line table lists `path` (tree-relative), in id order."""
        rows = self._con.execute(
            "SELECT DISTINCT cu_id FROM cu_files WHERE path = ? ORDER BY cu_id", (path,)
        )
        return [r[0] for r in rows]

    def files_of_cu(self, cu_id: int) -> list[str]:
        """The files of one CU's line table, in table order (empty before its facts)."""
        rows = self._con.execute(
            "SELECT path FROM cu_files WHERE cu_id = ? ORDER BY rowid", (cu_id,)
        )
        return [r[0] for r in rows]

    def failed_cus(self) -> list[tuple[int, str, str]]:
        """(id, name, reason) of every CU that could not be read, in file order."""
        rows = self._con.execute(
            "SELECT id, name, error FROM cus WHERE state = ? ORDER BY id", (CU_FAILED,)
        )
        return [(r[0], r[1], r[2] or "") for r in rows]

    def params_of(self, die: int) -> tuple[Param, ...]:
        rows = self._con.execute(
            "SELECT name, location, type_kind FROM params WHERE owner_die = ? ORDER BY idx", (die,)
        )
        return tuple(Param(r[0], r[1], r[2]) for r in rows)


def _cu_row(r: sqlite3.Row, ranges: tuple[tuple[int, int], ...]) -> CuRow:
    unit = CompileUnit(
        offset=r["id"],
        name=r["name"],
        comp_dir=r["comp_dir"],
        producer=r["producer"],
        language=r["language"],
        is_asm=bool(r["is_asm"]),
    )
    flags = CompilerFlags(
        producer=r["producer"],
        ftrace=r["ftrace"],
        ipa_ra=bool(r["ipa_ra"]),
        opt_level=r["opt_level"],
        live_patching=r["live_patching"],
        patchable_entry=None,
    )
    return CuRow(unit=unit, flags=flags, ranges=ranges, state=r["state"], error=r["error"])


def complete_index(index_dir: Path, build_id: str) -> Path | None:
    """The index file of `build_id` in `index_dir` when it exists and is complete."""
    from klp_lsp.index.locate import index_path

    target = index_path(index_dir, build_id)
    if not target.exists():
        return None
    try:
        index = Index(target)
    except IndexError_:
        return None
    try:
        return target if index.complete else None
    finally:
        index.close()


def open_readonly(path: Path) -> Index:
    """Open an index file for queries."""
    if not path.exists():
        raise IndexError_(f"{path}: no such index")
    return Index(path)
