"""Answers over one or several index files: function reports, callers, inline sites.

`IndexSet` is what the CLI, the patch engine and the language server hold: the indexes of a
vmlinux and its modules, queried together. Everything returned is a `model` record.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.analysis.clones import cold_parent, is_cold_part, parse_clone_name
from klp_lsp.analysis.patchability import assess_patchability
from klp_lsp.analysis.signature import (
    abi_deviation,
    calling_convention_name,
    compiled_signature,
)
from klp_lsp.binary.abi import sort_registers
from klp_lsp.index.store import (
    CuRow,
    Index,
    from_db,
    open_readonly,
    parse_ranges,
    to_db,
    tree_prefix,
)
from klp_lsp.model import (
    CallFact,
    CompiledSignature,
    DependentFact,
    FunctionReport,
    InlinedInto,
    InstanceFacts,
    Param,
    SymbolFact,
    UnreadableUnit,
)


@dataclass(frozen=True, slots=True)
class _Definition:
    """A group of function DIEs that are one C definition (a header inline in many CUs)."""

    name: str
    decl_file: str | None
    decl_line: int | None
    dies: tuple[int, ...]
    cu_ids: tuple[int, ...]
    external: bool
    calling_convention: int | None


class ObjectIndex:
    """Queries over one object's index file."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.object = index.object
        self._cus: dict[int, CuRow] | None = None
        self._cu_cache: dict[int, CuRow] = {}
        self._cu_starts: list[int] = []
        self._cu_spans: list[tuple[int, int, int]] = []

    # --- compile units ---------------------------------------------------------------------

    def cus(self) -> dict[int, CuRow]:
        if self._cus is None:
            self._cus = {c.unit.offset: c for c in self.index.iter_cus()}
            spans = sorted(
                (lo, hi, c.unit.offset) for c in self._cus.values() for lo, hi in c.ranges
            )
            self._cu_spans = spans
            self._cu_starts = [s[0] for s in spans]
        return self._cus

    def cu(self, cu_id: int | None) -> CuRow | None:
        """One CU by id, without loading them all (a `show` needs only a few)."""
        if cu_id is None:
            return None
        if self._cus is not None:
            return self._cus.get(cu_id)
        found = self._cu_cache.get(cu_id)
        if found is None:
            found = self.index.get_cu(cu_id)
            if found is not None:
                self._cu_cache[cu_id] = found
        return found

    def cu_of_address(self, address: int) -> CuRow | None:
        cus = self.cus()
        i = bisect.bisect_right(self._cu_starts, address) - 1
        if i >= 0:
            lo, hi, cu_id = self._cu_spans[i]
            if lo <= address < hi:
                return cus[cu_id]
        return None

    # --- symbols ---------------------------------------------------------------------------

    def _symbol_fact(self, r: object) -> SymbolFact:
        row = r  # sqlite3.Row
        address = from_db(row["address"])  # type: ignore[index]
        cu = self.cu(row["cu_id"])  # type: ignore[index]
        kinds = tuple(row["clone_kinds"].split())  # type: ignore[index]
        patchable, reasons = assess_patchability(
            has_symbol=True,
            fully_inlined=False,
            section=row["section"],  # type: ignore[index]
            has_mcount=bool(row["has_mcount"]),  # type: ignore[index]
            ftrace=None if cu is None else cu.flags.ftrace,
            is_cold_part=is_cold_part(row["name"]),  # type: ignore[index]
        )
        return SymbolFact(
            name=row["name"],  # type: ignore[index]
            object=self.object,
            address=address,
            size=row["size"],  # type: ignore[index]
            section=row["section"],  # type: ignore[index]
            binding=row["binding"],  # type: ignore[index]
            sympos=row["sympos"],  # type: ignore[index]
            clone_kinds=kinds,
            has_mcount=bool(row["has_mcount"]),  # type: ignore[index]
            patchable=patchable,
            not_patchable_reasons=reasons,
        )

    def symbols_named(self, name: str) -> list[SymbolFact]:
        rows = self.index.query("SELECT * FROM symbols WHERE name = ? ORDER BY address", (name,))
        return [self._symbol_fact(r) for r in rows]

    def symbols_at(self, address: int) -> list[SymbolFact]:
        rows = self.index.query(
            "SELECT * FROM symbols WHERE address = ? ORDER BY binding = 'local', name",
            (to_db(address),),
        )
        return [self._symbol_fact(r) for r in rows]

    def name_at(self, address: int) -> str:
        """The best symbol name for a function start (globals first), or a hex address."""
        rows = self.index.query(
            "SELECT name FROM symbols WHERE address = ?"
            " ORDER BY clone_kinds LIKE '%cold%', binding = 'local', length(name), name LIMIT 1",
            (to_db(address),),
        )
        return rows[0][0] if rows else f"{address:#x}"

    def tree_file(self, path: str | None, cu_id: int | None) -> str | None:
        """A DWARF file path of a CU as the source tree names it (see `store.tree_prefix`)."""
        cu = self.cu(cu_id) if path is not None else None
        if path is None or cu is None:
            return path
        prefix = tree_prefix(cu.unit.name, cu.unit.comp_dir)
        return path[len(prefix) :] if prefix and path.startswith(prefix) else path

    # --- definitions -----------------------------------------------------------------------

    def _definitions(self, name: str) -> list[_Definition]:
        rows = self.index.query(
            "SELECT die, cu_id, decl_file, decl_line, external, calling_convention"
            " FROM functions WHERE name = ? ORDER BY decl_file, decl_line, die",
            (name,),
        )
        groups: dict[tuple[str | None, int | None], list[object]] = {}
        for r in rows:
            decl_file = self.tree_file(r["decl_file"], r["cu_id"])
            groups.setdefault((decl_file, r["decl_line"]), []).append(r)
        out = []
        for (decl_file, decl_line), members in groups.items():
            out.append(
                _Definition(
                    name=name,
                    decl_file=decl_file,
                    decl_line=decl_line,
                    dies=tuple(m["die"] for m in members),  # type: ignore[index]
                    cu_ids=tuple(dict.fromkeys(m["cu_id"] for m in members)),  # type: ignore[index]
                    external=any(m["external"] for m in members),  # type: ignore[index]
                    calling_convention=members[0]["calling_convention"],  # type: ignore[index]
                )
            )
        return out

    def definitions_of(self, name: str) -> list[tuple[str | None, int | None]]:
        """(decl_file, decl_line) of each C definition named `name`: one indexed lookup."""
        return [(d.decl_file, d.decl_line) for d in self._definitions(name)]

    def _instances(self, dies: Sequence[int]) -> list[tuple[int, int, tuple[tuple[int, int], ...]]]:
        marks = ",".join("?" * len(dies))
        rows = self.index.query(
            f"SELECT die, entry, ranges FROM instances WHERE function_die IN ({marks})", dies
        )
        return [(r[0], from_db(r[1]), parse_ranges(r[2])) for r in rows]

    def reports(self, query: str) -> list[FunctionReport]:
        """One report per distinct C definition that `query` names in this object.

        `query` is a C function name, or any symbol the index knows: a clone (`foo.isra.0`),
        a `.cold` or `.part` piece, an alias (`__x64_sys_fork`), each optionally with its
        livepatch position (`foo,2`). A symbol gets its C definition's report with
        `queried_symbol` set.
        """
        name, sympos = split_sympos(query)
        reports = self._reports_of_c_name(name)
        if sympos is not None:
            reports = [
                dataclasses.replace(r, queried_symbol=s)
                for r in reports
                for s in (*r.symbols, *r.clones)
                if s.name == name and s.sympos == sympos
            ]
        if reports:
            return reports
        out: list[FunctionReport] = []
        for s in self.symbols_named(name):
            if sympos is not None and s.sympos != sympos:
                continue
            report = self._report_of_symbol(s)
            if report is not None and not any(
                (r.name, r.decl_file, r.decl_line)
                == (report.name, report.decl_file, report.decl_line)
                for r in out
            ):
                out.append(dataclasses.replace(report, queried_symbol=s))
        return out

    def _report_of_symbol(self, s: SymbolFact) -> FunctionReport | None:
        """The report of the C definition whose machine code a symbol names."""
        found = self._instance_at(s.address)
        if found is None:
            parent = cold_parent(s.name)
            parents = self.symbols_named(parent) if parent else []
            found = next(
                (i for p in parents if (i := self._instance_at(p.address)) is not None), None
            )
        if found is not None:
            rows = self.index.query(
                "SELECT name, decl_file, decl_line FROM functions WHERE die = ?", (found[1],)
            )
            if rows:
                for d in self._definitions(rows[0]["name"]):
                    if (d.decl_file, d.decl_line) == (rows[0]["decl_file"], rows[0]["decl_line"]):
                        return self._report(d)
        # No DWARF (asm): the report of its origin's symbols.
        for r in self._reports_of_c_name(parse_clone_name(s.name).origin):
            if any(x.address == s.address for x in (*r.symbols, *r.clones)):
                return r
        return None

    def _instance_at(self, address: int) -> tuple[int, int] | None:
        """(instance DIE, function DIE) of the out-of-line copy starting at `address`."""
        rows = self.index.query(
            "SELECT die, function_die FROM instances WHERE entry = ? ORDER BY die LIMIT 1",
            (to_db(address),),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def _reports_of_c_name(self, name: str) -> list[FunctionReport]:
        """One report per distinct C definition named `name` in this object."""
        reports = [self._report(d) for d in self._definitions(name)]
        covered = {s.address for r in reports for s in (*r.symbols, *r.clones)}
        # Functions without DWARF (asm) and clones whose origin has no DWARF definition here.
        # An alias of a C function (`demo_entry_alias`) is not one: its code has DWARF.
        orphans = [
            s
            for s in self._symbols_for_origin(name)
            if s.address not in covered and self._instance_at(s.address) is None
        ]
        if orphans:
            reports.append(self._report_without_dwarf(name, orphans))
        return reports

    def _symbols_for_origin(self, name: str) -> list[SymbolFact]:
        rows = self.index.query(
            "SELECT * FROM symbols WHERE origin = ? ORDER BY address, name", (name,)
        )
        return [self._symbol_fact(r) for r in rows]

    def _report(self, d: _Definition) -> FunctionReport:
        instances = self._instances(d.dies)
        spans = [rng for _die, _entry, ranges in instances for rng in ranges]
        entries = {entry for _die, entry, _ranges in instances}
        symbols: list[SymbolFact] = []
        clones: list[SymbolFact] = []
        for s in self._symbols_for_origin(d.name):
            inside = s.address in entries or any(lo <= s.address < hi for lo, hi in spans)
            if not inside:
                continue
            (clones if s.clone_kinds else symbols).append(s)
        # An instance whose entry symbol has another name (an alias only) still counts.
        for entry in sorted(entries):
            if not any(s.address == entry for s in (*symbols, *clones)):
                for s in self.symbols_at(entry):
                    (clones if s.clone_kinds else symbols).append(s)
                    break
        addresses = {s.address for s in symbols}
        names = {s.name for s in (*symbols, *clones)}
        aliases = sorted(
            {a.name for addr in addresses for a in self.symbols_at(addr) if a.name not in names}
        )
        inlined = self._inlined_into(d.dies)
        cu = self.cu(d.cu_ids[0]) if d.cu_ids else None
        params = self._params(d, instances, symbols)
        out_of_line = bool(symbols or clones)
        patchable, reasons = _verdict(symbols, clones, inlined)
        dead: list[tuple[int, str]] = []
        if not out_of_line:
            # An out-of-line copy without a symbol: an overridden __weak function's body.
            for entry in sorted(entries):
                _name, is_dead, why, _aliases = self._host(entry, d.name)
                if is_dead and why is not None:
                    dead.append((entry, why))
            if dead:
                reasons = tuple(dict.fromkeys(why for _a, why in dead))
        clobbers, saved, dependents = self._register_facts([s.address for s in (*symbols, *clones)])
        signatures = tuple(
            sig
            for c in clones
            if not is_cold_part(c.name) and (sig := self.signature_of_symbol(c)) is not None
        )
        return FunctionReport(
            name=d.name,
            object=self.object,
            binary=self.index.binary,
            build_id=self.index.build_id,
            arch=self.index.arch,  # type: ignore[arg-type]
            decl_file=d.decl_file,
            decl_line=d.decl_line,
            cu_name=None if cu is None else cu.unit.name,
            external=d.external,
            symbols=tuple(symbols),
            clones=tuple(clones),
            aliases=tuple(aliases),
            patchable=patchable,
            not_patchable_reasons=reasons,
            out_of_line=out_of_line,
            inlined_into=inlined,
            compiler=None if cu is None else cu.flags,
            calling_convention=calling_convention_name(d.calling_convention),
            abi_deviation=abi_deviation(self.index.arch, params),
            params=params,
            clobbers=clobbers,
            callee_saved_clobbers=saved,
            register_dependents=dependents,
            clone_signatures=signatures,
            dead_copies=tuple(dead),
        )

    def signature_of_symbol(self, s: SymbolFact) -> CompiledSignature | None:
        """The calling convention of the machine code at a symbol, against its C prototype:
        per C parameter, the register it arrives in or why it does not (`compiled_signature`).
        None without DWARF for that code (asm, or a `.cold` part)."""
        found = self._instance_at(s.address)
        if found is None:
            return None
        die, function_die = found
        rows = self.index.query("SELECT return_size FROM functions WHERE die = ?", (function_die,))
        return_size = rows[0][0] if rows else None
        use = self.index.query(
            "SELECT clobbers, arguments FROM register_use WHERE address = ?", (to_db(s.address),)
        )
        clobbers = frozenset(use[0][0].split()) if use else None
        arguments = frozenset(use[0][1].split()) if use and use[0][1] is not None else None
        return compiled_signature(
            self.index.arch,
            s.name,
            self.object,
            s.address,
            s.clone_kinds,
            self.index.params_of(function_die),
            self.index.params_of(die),
            return_size,
            arguments,
            clobbers,
        )

    def signatures_of(self, symbol: str) -> list[CompiledSignature]:
        """Compiled signatures of the symbols named `symbol` (`name` or `name,sympos`): what a
        replacement of that copy must accept and return (the verify step compares these)."""
        name, sympos = split_sympos(symbol)
        return [
            sig
            for s in self.symbols_named(name)
            if (sympos is None or s.sympos == sympos)
            and (sig := self.signature_of_symbol(s)) is not None
        ]

    def _report_without_dwarf(self, name: str, syms: list[SymbolFact]) -> FunctionReport:
        symbols = [s for s in syms if not s.clone_kinds]
        clones = [s for s in syms if s.clone_kinds]
        names = {s.name for s in syms}
        aliases = sorted(
            {a.name for s in symbols for a in self.symbols_at(s.address) if a.name not in names}
        )
        cu = self.cu_of_address(syms[0].address)
        patchable, reasons = _verdict(symbols, clones, ())
        clobbers, saved, dependents = self._register_facts([s.address for s in syms])
        return FunctionReport(
            name=name,
            object=self.object,
            binary=self.index.binary,
            build_id=self.index.build_id,
            arch=self.index.arch,  # type: ignore[arg-type]
            decl_file=None,
            decl_line=None,
            cu_name=None if cu is None else cu.unit.name,
            external=any(s.binding != "local" for s in syms),
            symbols=tuple(symbols),
            clones=tuple(clones),
            aliases=tuple(aliases),
            patchable=patchable,
            not_patchable_reasons=reasons,
            out_of_line=True,
            inlined_into=(),
            compiler=None if cu is None else cu.flags,
            calling_convention="normal",
            abi_deviation=False,
            params=(),
            clobbers=clobbers,
            callee_saved_clobbers=saved,
            register_dependents=dependents,
            has_dwarf=False,
        )

    def _params(
        self,
        d: _Definition,
        instances: list[tuple[int, int, tuple[tuple[int, int], ...]]],
        symbols: list[SymbolFact],
    ) -> tuple[Param, ...]:
        # Prefer the out-of-line copy under the C name: its parameters have locations.
        own = {s.address for s in symbols}
        for die, entry, _ranges in instances:
            if entry in own:
                params = self.index.params_of(die)
                if params:
                    return params
        for die in d.dies:
            params = self.index.params_of(die)
            if params:
                return params
        return ()

    def instance_at(self, address: int) -> InstanceFacts | None:
        """The out-of-line copy whose entry is `address` (a symbol's start), with its params."""
        rows = self.index.query(
            "SELECT i.die, i.function_die, f.name, f.decl_file, f.decl_line FROM instances i"
            " LEFT JOIN functions f ON f.die = i.function_die WHERE i.entry = ? ORDER BY i.die",
            (to_db(address),),
        )
        if not rows:
            return None
        r = rows[0]
        return InstanceFacts(
            die=r[0],
            function_die=r[1],
            name=r[2],
            decl_file=r[3],
            decl_line=r[4],
            params=self.index.params_of(r[0]),
        )

    def instance_ranges(self, address: int) -> tuple[tuple[int, int], ...]:
        """The code ranges of the out-of-line copy whose entry is `address` (empty if none)."""
        rows = self.index.query(
            "SELECT ranges FROM instances WHERE entry = ? ORDER BY die LIMIT 1", (to_db(address),)
        )
        return parse_ranges(rows[0][0]) if rows else ()

    def inlined_into(self, name: str) -> tuple[InlinedInto, ...]:
        """Every out-of-line function holding an inlined copy of a C function called `name`."""
        dies = [die for d in self._definitions(name) for die in d.dies]
        return self._inlined_into(dies) if dies else ()

    def register_facts_at(
        self, address: int
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...], tuple[DependentFact, ...]]:
        """Clobbers, unrestored callee-saved registers and dependents of the function at
        `address` (clobbers None when its register facts are not computed)."""
        return self._register_facts([address])

    def _inlined_into(self, dies: Sequence[int]) -> tuple[InlinedInto, ...]:
        marks = ",".join("?" * len(dies))
        rows = self.index.query(
            "SELECT s.die, s.cu_id, s.parent_die, s.call_file, s.call_line, i.entry, f.name"
            " FROM inline_sites s JOIN instances i ON i.die = s.container_die"
            " LEFT JOIN functions f ON f.die = i.function_die"
            f" WHERE s.function_die IN ({marks}) ORDER BY i.entry, s.call_line",
            dies,
        )
        out: list[InlinedInto] = []
        seen: set[tuple[int, str | None, int | None]] = set()
        own = set(dies)
        hosts: dict[int, tuple[str, bool, str | None, tuple[str, ...]]] = {}
        for r in rows:
            if r["parent_die"] is not None and self._site_function(r["parent_die"]) in own:
                # GCC nests an inlined copy of a function inside another copy of itself
                # (same origin, call_line on its own first line); the outer copy is the site.
                continue
            entry = from_db(r["entry"])
            call_file = self.tree_file(r["call_file"], r["cu_id"])
            key = (entry, call_file, r["call_line"])
            if key in seen:
                continue
            seen.add(key)
            if entry not in hosts:
                hosts[entry] = self._host(entry, r["name"])
            name, dead, reason, aliases = hosts[entry]
            out.append(
                InlinedInto(
                    function=name,
                    object=self.object,
                    address=entry,
                    call_file=call_file,
                    call_line=r["call_line"],
                    depth=self._inline_depth(r["parent_die"]),
                    dead=dead,
                    reason=reason,
                    aliases=aliases,
                )
            )
        return tuple(out)

    def _host(
        self, entry: int, dwarf_name: str | None
    ) -> tuple[str, bool, str | None, tuple[str, ...]]:
        """(name, dead, reason, aliases) of the out-of-line copy at `entry` that holds inlined
        code: named after its DWARF definition when a symbol of that name is there.

        Code at an address no symbol covers never runs and no `klp_func` can name it: mm/
        percpu.c's `__weak pcpu_populate_pte` is overridden on x86, and the linker keeps the
        weak copy's code in .init.text without its symbol (its ftrace record stays too).
        """
        names = [s.name for s in self.symbols_at(entry) if not is_cold_part(s.name)]
        if names:
            name = dwarf_name if dwarf_name in names else self.name_at(entry)
            return name, False, None, tuple(sorted(n for n in names if n != name))
        covering = self.index.query(
            "SELECT address FROM symbols WHERE address < ? AND address + size > ?"
            " ORDER BY address DESC LIMIT 1",
            (to_db(entry), to_db(entry)),
        )
        if covering:
            return self.name_at(from_db(covering[0][0])), False, None, ()
        name = dwarf_name or f"{entry:#x}"
        if dwarf_name and self.symbols_named(dwarf_name):
            return name, True, "overridden __weak copy, no symbol", ()
        return name, True, "no symbol covers this code", ()

    def _site_function(self, die: int) -> int | None:
        rows = self.index.query("SELECT function_die FROM inline_sites WHERE die = ?", (die,))
        return rows[0][0] if rows else None

    def _inline_depth(self, parent: int | None) -> int:
        depth = 1
        while parent is not None and depth < 64:
            rows = self.index.query("SELECT parent_die FROM inline_sites WHERE die = ?", (parent,))
            parent = rows[0][0] if rows else None
            depth += 1
        return depth

    def _register_facts(
        self, addresses: Sequence[int]
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...], tuple[DependentFact, ...]]:
        if not addresses:
            return None, (), ()
        marks = ",".join("?" * len(addresses))
        db_addresses = [to_db(a) for a in addresses]
        rows = self.index.query(
            f"SELECT clobbers, callee_saved_clobbers FROM register_use WHERE address IN ({marks})",
            db_addresses,
        )
        clobbers: tuple[str, ...] | None = None
        saved: set[str] = set()
        if rows:
            regs: set[str] = set()
            for r in rows:
                regs.update(r[0].split())
                saved.update(r[1].split())
            clobbers = sort_registers(self.index.arch, regs)
        deps = self.index.query(
            "SELECT callee, caller, site, registers, reason, via FROM register_dependents"
            f" WHERE callee IN ({marks}) ORDER BY caller, site, via",
            db_addresses,
        )
        dependents = tuple(
            DependentFact(
                callee=self.name_at(from_db(r[0])),
                caller=self.name_at(from_db(r[1])),
                object=self.object,
                site=from_db(r[2]),
                registers=tuple(r[3].split()),
                reason=r[4],
                caller_address=from_db(r[1]),
                via=self._via_names(r[5]),
            )
            for r in deps
        )
        return clobbers, sort_registers(self.index.arch, saved), dependents

    def dependents_on_external(self, callee: str, addresses: Sequence[int]) -> list[DependentFact]:
        """Callers here that rely on registers of a function of another object (a module
        calling vmlinux asm helpers: stored under the helper's vmlinux address)."""
        if not addresses:
            return []
        marks = ",".join("?" * len(addresses))
        rows = self.index.query(
            "SELECT caller, site, registers, reason, via FROM register_dependents"
            f" WHERE callee IN ({marks}) ORDER BY caller, site, via",
            [to_db(a) for a in addresses],
        )
        return [
            DependentFact(
                callee=callee,
                caller=self.name_at(from_db(r[0])),
                object=self.object,
                site=from_db(r[1]),
                registers=tuple(r[2].split()),
                reason=r[3],
                caller_address=from_db(r[0]),
                via=self._via_names(r[4]),
            )
            for r in rows
        ]

    def _via_names(self, via: str) -> tuple[str, ...]:
        """Names of the functions a stored `via` lists (hex start addresses)."""
        return tuple(self.name_at(int(a, 16)) for a in via.split())

    # --- call graph ------------------------------------------------------------------------

    def callers_of(self, addresses: Iterable[int]) -> list[CallFact]:
        db = [to_db(a) for a in addresses]
        if not db:
            return []
        marks = ",".join("?" * len(db))
        rows = self.index.query(
            f"SELECT caller, site, callee, kind FROM calls WHERE callee IN ({marks})"
            " ORDER BY caller, site",
            db,
        )
        return [
            CallFact(
                caller=self.name_at(from_db(r[0])),
                callee=self.name_at(from_db(r[2])),
                object=self.object,
                site=from_db(r[1]),
                kind=r[3],
                caller_address=from_db(r[0]),
                callee_address=from_db(r[2]),
            )
            for r in rows
        ]

    def callees_of(self, address: int) -> list[CallFact]:
        rows = self.index.query(
            "SELECT caller, site, callee, kind FROM calls WHERE caller = ? ORDER BY site",
            (to_db(address),),
        )
        return [
            CallFact(
                caller=self.name_at(from_db(r[0])),
                callee=None if r[2] is None else self.name_at(from_db(r[2])),
                object=self.object,
                site=from_db(r[1]),
                kind=r[3],
                caller_address=from_db(r[0]),
                callee_address=None if r[2] is None else from_db(r[2]),
            )
            for r in rows
        ]

    def cus_declaring(self, path: str) -> list[int]:
        """The CUs (ids) holding functions declared in source file `path`: for a `.c` file that
        another `.c` file #includes (kernel/sched/build_policy.c includes rt.c), the CUs it
        is really compiled in."""
        rows = self.index.query("SELECT DISTINCT cu_id FROM functions WHERE decl_file = ?", (path,))
        return sorted(int(r[0]) for r in rows)

    def count_inline_cus(self, name: str, decl_file: str | None, decl_line: int | None) -> int:
        """In how many CUs a function (e.g. a header inline) was inlined somewhere."""
        rows = self.index.query(
            "SELECT DISTINCT s.cu_id, f.decl_file, f.cu_id FROM inline_sites s JOIN functions f"
            " ON f.die = s.function_die WHERE f.name = ? AND f.decl_line IS ?",
            (name, decl_line),
        )
        return len({r[0] for r in rows if self.tree_file(r[1], r[2]) == decl_file})

    def cus_with_file(self, path: str) -> list[CuRow]:
        """The CUs whose line table lists `path` (a tree-relative .c or .h file)."""
        cus = self.cus()
        return [cus[i] for i in self.index.cus_with_file(path) if i in cus]

    def cus_with_code_of(self, name: str, decl_file: str | None) -> set[int]:
        """Ids of the CUs holding an out-of-line copy or an inlined copy of a C function."""
        rows = self.index.query(
            "SELECT s.cu_id FROM inline_sites s JOIN functions f ON f.die = s.function_die"
            " WHERE f.name = ? AND f.decl_file IS ?"
            " UNION SELECT i.cu_id FROM instances i JOIN functions f ON f.die = i.function_die"
            " WHERE f.name = ? AND f.decl_file IS ?",
            (name, decl_file, name, decl_file),
        )
        return {int(r[0]) for r in rows}

    def symbol_sizes_of_cu(self, cu_id: int) -> list[tuple[str, int]]:
        """(name, size) of the FUNC symbols whose code lies in one CU."""
        rows = self.index.query("SELECT name, size FROM symbols WHERE cu_id = ?", (cu_id,))
        return [(r[0], int(r[1])) for r in rows]

    def search_names(self, prefix: str, limit: int) -> list[str]:
        """C function names and symbol names (clones, aliases) starting with `prefix` (for
        workspace symbols)."""
        end = prefix + "\U0010ffff"
        rows = self.index.query(
            "SELECT origin FROM symbols WHERE origin >= ? AND origin < ?"
            " UNION SELECT name FROM symbols WHERE name >= ? AND name < ?"
            " ORDER BY 1 LIMIT ?",
            (prefix, end, prefix, end, limit),
        )
        return [r[0] for r in rows]


def split_sympos(query: str) -> tuple[str, int | None]:
    """`foo,2` -> (`foo`, 2), livepatch's `old_name,sympos`; `foo` -> (`foo`, None)."""
    name, comma, pos = query.rpartition(",")
    if comma and name and pos.strip().isdigit():
        return name.strip(), int(pos)
    return query.strip(), None


def _verdict(
    symbols: Sequence[SymbolFact],
    clones: Sequence[SymbolFact],
    inlined: Sequence[InlinedInto],
) -> tuple[bool, tuple[str, ...]]:
    """A C function is patchable when its own out-of-line symbol is."""
    if any(s.patchable for s in symbols):
        return True, ()
    if not symbols:
        if clones and any(c.patchable for c in clones):
            return False, ("only clones are out of line; patch the clones",)
        if inlined:
            return assess_patchability(
                has_symbol=False, fully_inlined=True, section=None, has_mcount=False, ftrace=None
            )
        return assess_patchability(
            has_symbol=False, fully_inlined=False, section=None, has_mcount=False, ftrace=None
        )
    reasons = dict.fromkeys(r for s in symbols for r in s.not_patchable_reasons)
    return False, tuple(reasons)


class IndexSet:
    """The indexes of one kernel build (vmlinux and modules), queried together."""

    def __init__(self, indexes: Sequence[Index]) -> None:
        self.objects = [ObjectIndex(i) for i in indexes]

    @classmethod
    def open(cls, paths: Sequence[Path]) -> IndexSet:
        return cls([open_readonly(p) for p in paths])

    def close(self) -> None:
        for o in self.objects:
            o.index.close()

    def reports(self, name: str) -> list[FunctionReport]:
        """Reports of `name` in every object, with module callers of vmlinux asm helpers."""
        out = [r for o in self.objects for r in o.reports(name)]
        modules = [o for o in self.objects if o.object != "vmlinux"]
        if not modules:
            return out
        merged = []
        for r in out:
            extra: list[DependentFact] = []
            if r.object == "vmlinux":
                addresses = [s.address for s in (*r.symbols, *r.clones)]
                for m in modules:
                    extra.extend(m.dependents_on_external(r.name, addresses))
            merged.append(
                dataclasses.replace(r, register_dependents=(*r.register_dependents, *extra))
                if extra
                else r
            )
        return merged

    def unreadable_units(self) -> list[UnreadableUnit]:
        """The compile units each index lacks because they could not be read."""
        return [
            UnreadableUnit(o.object, offset, name, reason)
            for o in self.objects
            for offset, name, reason in o.index.failed_cus()
        ]

    def get_object(self, name: str) -> ObjectIndex | None:
        for o in self.objects:
            if o.object == name:
                return o
        return None
