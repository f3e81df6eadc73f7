"""The check engine: from patches (or an edited buffer) to findings and the replace set.

It joins what `changes.py` finds in the source (which C definitions a change touches) with what
the index knows about the binary (clones, inlining, register dependents, ftrace records), and
closes the set of functions a live patch must replace. The CLI and the language server both call
`Checker`; the renderers for text, JSON and the skeleton live in `render.py`, SARIF in `sarif.py`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from klp_lsp.binary.abi import sort_registers
from klp_lsp.index.query import IndexSet, ObjectIndex
from klp_lsp.index.store import CU_ANALYSED, CuRow, source_name
from klp_lsp.model import (
    ChangedFunction,
    CheckResult,
    CompileUnitRef,
    Finding,
    FunctionImpact,
    FunctionReport,
    Problem,
    Related,
    ReplaceEntry,
    Severity,
    SymbolFact,
)
from klp_lsp.patch.changes import (
    Change,
    ChangeMapper,
    DataChange,
    FileNote,
    FunctionChange,
    MacroChange,
    post_images,
)
from klp_lsp.patch.diff import Patch, parse_patch_text
from klp_lsp.patch.diff import Problem as DiffProblem
from klp_lsp.patch.includes import with_including_files
from klp_lsp.patch.outline import outline_patches
from klp_lsp.patch.render import render_replace_set, render_skeleton
from klp_lsp.patch.unsupported import find_unsupported
from klp_lsp.report import host_text, signature_text

__all__ = [
    "SEVERITIES",
    "Checker",
    "check_patches",
    "check_source_edit",
    "cu_names_for_patch",
    "render_replace_set",
    "render_skeleton",
]

# Default severity of each finding kind; `severityOverrides` can change them.
SEVERITIES: dict[str, Severity] = {
    "register-dependents": "error",
    "not-patchable": "error",
    "inlined": "warning",
    "has-clones": "warning",
    "signature-changed": "warning",
    "ambiguous-sympos": "information",
    "header-change": "warning",
    "data-change": "warning",
    "init-code": "warning",
    "static-local": "warning",
    "unknown-function": "warning",
    # Added or changed definitions are errors, uses of the file's own warnings (unsupported.py).
    "export-symbol": "error",
    "per-cpu": "error",
    "static-key": "error",
    "tracepoint": "error",
}

# How far the replace set climbs from an unpatchable function to patchable callers.
_MAX_CLIMB = 6
_MAX_CALLERS = 64
_PREVIEW = 6


_Key = tuple[str, str, int]  # (object, symbol, sympos) of a replace entry


@dataclass(slots=True)
class _Collector:
    """Accumulates the result of one check."""

    changed: list[ChangedFunction] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    replace: dict[_Key, ReplaceEntry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    climbed: set[_Key] = field(default_factory=set)
    # Each evaluated function, with the replace entries it needs directly.
    impacts: list[tuple[FunctionImpact, list[_Key]]] = field(default_factory=list)
    # An unpatchable entry -> the callers the climb added for it.
    climbed_to: dict[_Key, list[_Key]] = field(default_factory=dict)

    def add_replace(self, entry: ReplaceEntry) -> bool:
        key = (entry.object, entry.symbol, entry.sympos)
        if key in self.replace:
            return False
        self.replace[key] = entry
        return True

    def function_impacts(self) -> list[FunctionImpact]:
        """The evaluated functions, each with every replace entry it leads to."""
        out = []
        for impact, direct in self.impacts:
            seen: dict[_Key, None] = {}
            pending = list(direct)
            while pending:
                key = pending.pop(0)
                if key not in seen and key in self.replace:
                    seen[key] = None
                    pending.extend(self.climbed_to.get(key, ()))
            out.append(replace(impact, replace=tuple(self.replace[k] for k in seen)))
        return out

    def result(self) -> CheckResult:
        return CheckResult(
            changed_functions=tuple(self.changed),
            findings=tuple(self.findings),
            replace=tuple(self.replace.values()),
            problems=tuple(self.problems),
            notes=tuple(dict.fromkeys(self.notes)),
        )


def _names(items: Iterable[str], limit: int = _PREVIEW) -> str:
    seen = list(dict.fromkeys(items))
    text = ", ".join(seen[:limit])
    return text + (f" and {len(seen) - limit} more" if len(seen) > limit else "")


def _unit_ref(obj: str, cu: CuRow, included: bool) -> CompileUnitRef:
    """A CU as the file mapping names it: analysed only when its facts are in the index (a
    failed CU is as final as an analysed one, but has none)."""
    analysed = cu.state == CU_ANALYSED
    return CompileUnitRef(obj, cu.unit.name, cu.flags, analysed, included, cu.error)


class Checker:
    """Checks patches and edits against one kernel's indexes; reuse it across checks."""

    def __init__(self, indexes: IndexSet) -> None:
        self.indexes = indexes
        self._mapper = ChangeMapper()
        # The changes of the last check, for `check --compile` to explain what the compiler saw.
        self.changes: list[Change] = []
        # The CUs of each source file, with the CU tables they were read from (an index that
        # grows gets new tables, and the map is made again).
        self._by_path: tuple[list[dict[int, CuRow]], dict[str, list[tuple[str, CuRow]]]] | None
        self._by_path = None

    @property
    def images(self) -> dict[str, tuple[str | None, str | None]]:
        """Each file the last check touched: its text before and after (None: absent)."""
        return self._mapper.images

    # --- source tree -----------------------------------------------------------------------

    def find_source_root(
        self, given: Path | None, why: str = "--source"
    ) -> tuple[Path | None, str]:
        """The source tree to read pre-images from, and a note saying which and why."""
        if given is not None:
            return given, f"source tree: {given} ({why})"
        for o in self.indexes.objects:
            for cu in o.cus().values():
                comp_dir = Path(cu.unit.comp_dir)
                if cu.unit.comp_dir and (comp_dir / "Makefile").exists():
                    return comp_dir, f"source tree: {comp_dir} (from DW_AT_comp_dir)"
                break
        return None, "no source tree found (DW_AT_comp_dir does not exist here); pass --source"

    def _cus_by_path(self) -> dict[str, list[tuple[str, CuRow]]]:
        """(object, CU) of every indexed CU, by tree-relative source file."""
        tables = [o.cus() for o in self.indexes.objects]
        cached = self._by_path
        same = cached is not None and len(cached[0]) == len(tables)
        if cached is not None and same and all(map(operator.is_, cached[0], tables)):
            return cached[1]
        by_path: dict[str, list[tuple[str, CuRow]]] = {}
        for o, cus in zip(self.indexes.objects, tables, strict=True):
            for cu in cus.values():
                name = source_name(cu.unit.name, cu.unit.comp_dir)
                by_path.setdefault(name, []).append((o.object, cu))
        self._by_path = (tables, by_path)
        return by_path

    def built_files(self) -> set[str]:
        """Source files compiled into the indexed objects (CU names)."""
        return set(self._cus_by_path())

    def units_of(self, path: str) -> tuple[CompileUnitRef, ...]:
        """The compile units the source file `path` is built as, in every indexed object; for a
        `.c` file other files #include, the CUs its functions were compiled in."""
        own = tuple(_unit_ref(obj, cu, False) for obj, cu in self._cus_by_path().get(path, ()))
        if own or not path.endswith(".c"):
            return own
        found = []
        for o in self.indexes.objects:
            cus = o.cus()
            for cu_id in o.cus_declaring(path):
                cu = cus.get(cu_id)
                if cu is not None:
                    found.append(_unit_ref(o.object, cu, True))
        return tuple(found)

    # --- entry points ----------------------------------------------------------------------

    def check_patches(
        self,
        patches: Sequence[tuple[str, str]],
        source_root: Path | None,
        source_why: str = "--source",
    ) -> CheckResult:
        """Check patch texts, given as (display name, text), applied in order.

        `source_why` says where `source_root` comes from, for the note naming it.
        """
        out = _Collector()
        parsed: list[Patch] = []
        problems: list[DiffProblem] = []
        for name, text in patches:
            ps, found = parse_patch_text(text, name)
            parsed.extend(ps)
            problems.extend(found)
            out.problems.extend(Problem(p.patch_file, p.line or None, p.message) for p in found)
        root, note = self.find_source_root(source_root, source_why)
        out.notes.append(note)
        self._note_partial(out)
        # Users of a changed header macro are searched in every C file built into the kernel.
        search = [Path(f) for f in sorted(self.built_files()) if f.endswith(".c")] if root else []
        changes, mapped = self._mapper.changes_from_patch(parsed, root, macro_search=search)
        self.changes = list(changes)
        out.problems.extend(Problem(p.patch_file, p.line or None, p.message) for p in mapped)
        self._evaluate(changes, out, in_patch=True)
        if root is not None:
            self._unsupported_in_patch(parsed, root, changes, out)
        files = outline_patches(
            parsed, changes, out.function_impacts(), (*problems, *mapped), self.units_of
        )
        return replace(out.result(), files=files)

    def _unsupported_in_patch(
        self, parsed: Sequence[Patch], root: Path, changes: Sequence[Change], out: _Collector
    ) -> None:
        """Exports, per-CPU variables, static keys and tracepoints the patch adds or uses."""
        post, _problems = post_images(parsed, root)
        where: dict[str, tuple[str, int]] = {}
        for patch in parsed:
            for fd in patch.files:
                where.setdefault(fd.path, (patch.patch_file, fd.patch_line))
        for path, text in post.items():
            if text is None or not path.endswith((".c", ".h")):
                continue
            try:
                pre = (root / path).read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                pre = ""
            self._add_unsupported(path, pre, text, changes, out, where.get(path))

    def _add_unsupported(
        self,
        path: str,
        pre: str,
        post: str,
        changes: Sequence[Change],
        out: _Collector,
        patch_where: tuple[str, int] | None,
    ) -> None:
        names = [c.name for c in changes if isinstance(c, FunctionChange) and c.source_file == path]
        for u in find_unsupported(path, pre, post, names):
            out.findings.append(
                Finding(
                    u.kind,
                    u.severity,
                    u.function,
                    None,
                    u.message,
                    patch_file=patch_where[0] if patch_where else None,
                    patch_line=patch_where[1] if patch_where else None,
                    source_file=path,
                    source_line=u.line,
                )
            )

    def check_source_edit(
        self, source_root: Path, rel_path: str, old_text: str, new_text: str
    ) -> CheckResult:
        """Check an edited buffer of `rel_path` against its text on disk (or in git HEAD)."""
        out = _Collector()
        out.notes.append(f"source tree: {source_root}")
        self._note_partial(out)
        changes = self._mapper.changes_between(rel_path, old_text, new_text)
        self.changes = list(changes)
        self._evaluate(changes, out, in_patch=False)
        if rel_path.endswith((".c", ".h")):
            self._add_unsupported(rel_path, old_text, new_text, changes, out, None)
        return out.result()

    def _note_partial(self, out: _Collector) -> None:
        for o in self.indexes.objects:
            if not o.index.complete:
                out.notes.append(
                    f"the index of {o.object} is not complete yet: callers in compile units not"
                    " indexed so far are missing from the replace set"
                )

    # --- evaluation ------------------------------------------------------------------------

    def _evaluate(self, changes: Sequence[Change], out: _Collector, *, in_patch: bool) -> None:
        built = self.built_files()
        for change in changes:
            if isinstance(change, FunctionChange):
                self._function(change, out, built)
            elif isinstance(change, DataChange):
                self._data(change, out)
            elif isinstance(change, MacroChange):
                self._macro(change, out, built)
            elif isinstance(change, FileNote):
                out.notes.append(f"{change.patch_file}:{change.patch_line}: {change.message}")
        self._climb(out)

    def _find(self, change: FunctionChange) -> list[tuple[ObjectIndex, FunctionReport]]:
        """Reports of the binary functions a source function became (same file only)."""
        found: list[tuple[ObjectIndex, FunctionReport]] = []
        for name in change.binary_names or (change.name,):
            for o in self.indexes.objects:
                for r in o.reports(name):
                    if r.decl_file is None or r.decl_file == change.source_file:
                        found.append((o, r))
            if found:
                break
        return found

    def _function(
        self, c: FunctionChange, out: _Collector, built: set[str], *, in_hunks: bool = True
    ) -> None:
        """Evaluate one changed function; `in_hunks` is False for the users of a changed macro,
        which the patch changes without a line of theirs in it."""
        where = {
            "patch_file": c.patch_file,
            "patch_line": c.patch_line,
            "source_file": c.source_file,
            "source_line": c.name_line,
        }
        lines = c.patch_lines if in_hunks else ()
        if c.status == "added":
            out.notes.append(
                f"{c.patch_file}:{c.patch_line}: {c.name} is new code in {c.source_file};"
                " nothing to replace, it comes with the patch module"
            )
            out.impacts.append((FunctionImpact(c.name, c.source_file, "added", lines), []))
            return
        found = self._find(c)
        if not found:
            if not c.is_header and c.source_file not in built and not self.units_of(c.source_file):
                out.notes.append(
                    f"{c.patch_file}:{c.patch_line}: {c.source_file} is not built into this"
                    f" kernel; {c.name} changes nothing here"
                )
                out.impacts.append((FunctionImpact(c.name, c.source_file, "not-built", lines), []))
                return
            out.impacts.append((FunctionImpact(c.name, c.source_file, "not-found", lines), []))
            out.changed.append(
                ChangedFunction(
                    c.name, c.source_file, None, c.patch_file, c.patch_line, c.name_line
                )
            )
            out.findings.append(
                Finding(
                    "unknown-function",
                    SEVERITIES["unknown-function"],
                    c.name,
                    None,
                    f"{c.name} ({c.source_file}) is changed but not found in the indexed binaries"
                    " (not built, renamed by a macro, or its CU is not indexed yet)",
                    **where,  # type: ignore[arg-type]
                )
            )
            return
        for o, r in found:
            out.changed.append(
                ChangedFunction(
                    r.name, c.source_file, r.object, c.patch_file, c.patch_line, c.name_line
                )
            )
            needs = self._report_findings(c, o, r, out, where)
            impact = FunctionImpact(
                name=r.name,
                source_file=c.source_file,
                status=c.status,
                patch_lines=lines,
                object=r.object,
                symbols=tuple(s for s in r.symbols if "cold" not in s.clone_kinds),
                clones=tuple(s for s in r.clones if "cold" not in s.clone_kinds),
                inlined_into=tuple(dict.fromkeys(i.function for i in r.inlined_into)),
                inline_sites=len(r.inlined_into),
                out_of_line=r.out_of_line,
                patchable=r.patchable,
                not_patchable_reasons=r.not_patchable_reasons,
                register_callers=tuple(dict.fromkeys(d.caller for d in r.register_dependents)),
            )
            out.impacts.append((impact, needs))

    def _finding(
        self,
        kind: str,
        r: FunctionReport,
        message: str,
        where: dict[str, object],
        related: Sequence[Related] = (),
    ) -> Finding:
        return Finding(
            kind,
            SEVERITIES[kind],
            r.name,
            r.object,
            message,
            related=tuple(related),
            **where,  # type: ignore[arg-type]
        )

    def _report_findings(
        self,
        c: FunctionChange,
        o: ObjectIndex,
        r: FunctionReport,
        out: _Collector,
        where: dict[str, object],
    ) -> list[_Key]:
        """Add the findings and replace entries of one changed function; return the keys of
        the entries it needs."""
        needs: list[_Key] = []

        def need(entry: ReplaceEntry) -> None:
            out.add_replace(entry)
            needs.append((entry.object, entry.symbol, entry.sympos))

        reason = f"changed ({c.source_file}:{c.name_line})"
        # The changed function's own out-of-line copies and clones.
        for s in (*r.symbols, *r.clones):
            if "cold" in s.clone_kinds:
                continue  # A .cold part is replaced with the function it belongs to.
            need(ReplaceEntry(r.object, s.name, s.sympos, reason, s.patchable))

        if r.register_dependents:
            callers = {d.caller: d for d in r.register_dependents}
            regs = sort_registers(
                r.arch, {reg for d in r.register_dependents for reg in d.registers}
            )
            why = {d.reason for d in r.register_dependents}
            because = (
                "its CU is built with IPA-RA"
                if why == {"ipa-ra"}
                else "it has a custom calling convention"
                if why == {"custom-convention"}
                else "IPA-RA and its custom convention"
            )
            out.findings.append(
                self._finding(
                    "register-dependents",
                    r,
                    f"{len(callers)} caller(s) keep values in {', '.join(regs)} across calls to"
                    f" {r.name} because {because}: {_names(callers)}. The replacement must not"
                    " write these registers, or those callers must be replaced too",
                    where,
                    [
                        Related(
                            "caller",
                            d.caller,
                            d.object,
                            address=d.site,
                            message=f"keeps {', '.join(d.registers)} across the call ({d.reason})",
                        )
                        for d in r.register_dependents
                    ],
                )
            )
            for d in r.register_dependents:
                sym = self._symbol_at(o, d.caller_address)
                if sym is not None:
                    need(
                        ReplaceEntry(
                            d.object,
                            sym.name,
                            sym.sympos,
                            f"relies on {', '.join(d.registers)} surviving {d.callee}",
                            sym.patchable,
                        )
                    )

        live = [i for i in r.inlined_into if not i.dead]
        if not r.patchable:
            containers = _names(i.function for i in live)
            extra = (
                f"; replace the functions it is inlined into instead: {containers}"
                if (r.inlined_into and not r.out_of_line)
                else ""
            )
            out.findings.append(
                self._finding(
                    "not-patchable",
                    r,
                    f"{r.name} cannot be patched through ftrace: "
                    f"{'; '.join(r.not_patchable_reasons)}{extra}",
                    where,
                    [Related("symbol", s.name, s.object, address=s.address) for s in r.symbols],
                )
            )

        if r.inlined_into:
            functions = list(dict.fromkeys(i.function for i in live))
            dead = list(dict.fromkeys(host_text(i) for i in r.inlined_into if i.dead))
            # Copies in code no symbol covers (an overridden __weak function) never run and no
            # klp_func can name them: said, but kept out of the replace set.
            never = f"; also in code that never runs, nothing to replace: {_names(dead)}"
            out.findings.append(
                self._finding(
                    "inlined",
                    r,
                    f"{r.name} is inlined into {len(functions)} function(s), whose machine code"
                    f" holds a copy of the changed code: {_names(functions)}; they must be replaced"
                    f" too{never if dead else ''}",
                    where,
                    [
                        Related(
                            "inline-site",
                            i.function,
                            i.object,
                            i.call_file,
                            i.call_line,
                            i.address,
                            f"dead code ({i.reason})"
                            if i.dead
                            else "inlined here"
                            if i.depth == 1
                            else f"inlined through {i.depth - 1} level(s)",
                        )
                        for i in r.inlined_into
                    ],
                )
            )
            for i in live:
                sym = self._symbol_at(o, i.address, i.function)
                if sym is not None:
                    need(
                        ReplaceEntry(
                            i.object, sym.name, sym.sympos, f"inlines {r.name}", sym.patchable
                        )
                    )

        # A .cold part belongs to the function (or clone) it was split from.
        real_clones = [s for s in r.clones if "cold" not in s.clone_kinds]
        if real_clones:
            out.findings.append(
                self._finding(
                    "has-clones",
                    r,
                    f"GCC made {len(real_clones)} clone(s) of {r.name}: "
                    f"{_names(s.name for s in real_clones)}. Each holds a copy of the changed code"
                    " and must be replaced under its own name",
                    where,
                    [Related("clone", s.name, s.object, address=s.address) for s in real_clones],
                )
            )
        # A clone whose compiled signature is known and matches the prototype (a `.part`, or an
        # IPA-CP clone that kept every parameter) changed nothing for its callers.
        signatures = {sig.address: sig for sig in r.clone_signatures}
        changed_abi = [
            s
            for s in real_clones
            if (s.address in signatures and not signatures[s.address].matches_prototype)
            or (s.address not in signatures and {"isra", "constprop"} & set(s.clone_kinds))
        ]
        if changed_abi or r.abi_deviation or c.signature_changed:
            parts = []
            if c.signature_changed:
                parts.append(
                    f"the patch changes the prototype of {r.name}; existing callers"
                    " still pass the old arguments"
                )
            if changed_abi:
                layouts = [
                    f"{s.name} {signature_text(signatures[s.address], r.arch, verdict=False)}"
                    for s in changed_abi
                    if s.address in signatures
                ]
                parts.append(
                    f"callers of {_names(s.name for s in changed_abi)} pass arguments in a"
                    " GCC-private layout (parameters removed, replaced by constants or by their"
                    " pointed-to values); the replacement of each clone must keep that layout"
                    + (f": {'; '.join(layouts)}" if layouts else "")
                )
            if r.abi_deviation:
                parts.append(f"{r.name} does not take its parameters where the C ABI puts them")
            out.findings.append(
                self._finding(
                    "signature-changed",
                    r,
                    "; ".join(parts),
                    where,
                    [Related("clone", s.name, s.object, address=s.address) for s in changed_abi],
                )
            )

        ambiguous = [s for s in (*r.symbols, *r.clones) if s.sympos > 0]
        if ambiguous:
            out.findings.append(
                self._finding(
                    "ambiguous-sympos",
                    r,
                    "several local functions share this name in "
                    f"{r.object}; use "
                    + ", ".join(f"old_sympos = {s.sympos} for {s.name}" for s in ambiguous)
                    + f" ({r.decl_file})",
                    where,
                )
            )

        if c.is_init or any(s.section.startswith(".init") for s in r.symbols):
            out.findings.append(
                self._finding(
                    "init-code",
                    r,
                    f"{r.name} is __init code: it ran at boot and its memory was freed; a live"
                    " patch cannot change what it did. Patch the state it set up instead",
                    where,
                )
            )

        if c.static_locals_added or c.static_locals_removed:
            names = [*c.static_locals_added, *c.static_locals_removed]
            out.findings.append(
                self._finding(
                    "static-local",
                    r,
                    f"the patch adds or removes static local variable(s) {_names(names)} in"
                    f" {r.name}; the patched function gets fresh copies, not the running"
                    " kernel's values. Use klp shadow variables or kallsyms lookups",
                    where,
                )
            )

        if c.is_header:
            cus = o.count_inline_cus(r.name, r.decl_file, r.decl_line)
            n_functions = len({i.function for i in r.inlined_into})
            out.findings.append(
                self._finding(
                    "header-change",
                    r,
                    f"{r.name} is defined in a header: the change reaches every CU that"
                    f" inlined it: {n_functions} function(s) in {cus} CU(s) of {r.object}",
                    where,
                )
            )
        return needs

    def _data(self, d: DataChange, out: _Collector) -> None:
        out.findings.append(
            Finding(
                "data-change",
                SEVERITIES["data-change"],
                None,
                None,
                f"the patch changes the {d.kind} {d.name} ({d.source_file}:{d.start_line}); a live"
                " patch replaces code, not data: existing instances keep the old layout and"
                " value. Use shadow variables or leave the definition unchanged",
                patch_file=d.patch_file,
                patch_line=d.patch_line,
                source_file=d.source_file,
                source_line=d.start_line,
            )
        )

    def _macro(self, m: MacroChange, out: _Collector, built: set[str]) -> None:
        users = list(dict.fromkeys(u.function for u in m.users))
        # Each function that expands the macro changes with it.
        for u in m.users:
            self._function(
                FunctionChange(
                    name=u.function,
                    binary_names=(u.function,),
                    source_file=u.source_file,
                    start_line=u.line,
                    end_line=u.line,
                    name_line=u.line,
                    patch_file=m.patch_file,
                    patch_line=m.patch_line,
                    status="changed",
                    is_header=u.source_file.endswith(".h"),
                    is_init=False,
                    is_static=False,
                    is_inline=False,
                    attributes=(),
                    macro=None,
                    signature_changed=False,
                    static_locals_added=(),
                    static_locals_removed=(),
                ),
                out,
                built,
                in_hunks=False,
            )
        out.findings.append(
            Finding(
                "header-change",
                SEVERITIES["header-change"],
                None,
                None,
                f"the patch changes the macro {m.name} ({m.source_file}:{m.start_line}); every"
                f" function that expands it changes too: {len(users)} found"
                + (f": {_names(users)}" if users else ""),
                patch_file=m.patch_file,
                patch_line=m.patch_line,
                source_file=m.source_file,
                source_line=m.start_line,
                related=tuple(
                    Related("inline-site", u.function, "", u.source_file, u.line) for u in m.users
                ),
            )
        )

    # --- replace set -----------------------------------------------------------------------

    def _symbol_at(
        self, o: ObjectIndex, address: int, preferred: str | None = None
    ) -> SymbolFact | None:
        """The symbol a klp_func names for the function at `address`: `preferred` (its DWARF
        definition's name) among several at one address, else a patchable global one."""
        found = [s for s in o.symbols_at(address) if "cold" not in s.clone_kinds]
        found.sort(
            key=lambda s: (s.name != preferred, not s.patchable, s.binding == "local", s.name)
        )
        return found[0] if found else None

    def _climb(self, out: _Collector) -> None:
        """Replace unpatchable entries' patchable callers, naming every step."""
        for _ in range(_MAX_CLIMB):
            pending = [
                e for key, e in out.replace.items() if not e.patchable and key not in out.climbed
            ]
            if not pending:
                return
            grew = False
            for entry in pending:
                o = self.indexes.get_object(entry.object)
                if o is None:
                    continue
                symbols = [s for s in o.symbols_named(entry.symbol) if s.sympos == entry.sympos]
                callers = o.callers_of(s.address for s in symbols)[:_MAX_CALLERS]
                why = (
                    "; ".join(dict.fromkeys(r for s in symbols for r in s.not_patchable_reasons))
                    or "not patchable"
                )
                key = (entry.object, entry.symbol, entry.sympos)
                out.climbed.add(key)
                for call in callers:
                    sym = self._symbol_at(o, call.caller_address)
                    if sym is None:
                        continue
                    out.climbed_to.setdefault(key, []).append((o.object, sym.name, sym.sympos))
                    grew |= out.add_replace(
                        ReplaceEntry(
                            o.object,
                            sym.name,
                            sym.sympos,
                            f"calls {entry.symbol}, which cannot be patched ({why})",
                            sym.patchable,
                        )
                    )
            if not grew:
                return


def check_patches(
    indexes: IndexSet, patches: Sequence[tuple[str, str]], source_root: Path | None
) -> CheckResult:
    """Check patch texts against the kernel behind `indexes`."""
    return Checker(indexes).check_patches(patches, source_root)


def check_source_edit(
    indexes: IndexSet, source_root: Path, rel_path: str, old_text: str, new_text: str
) -> CheckResult:
    """Check an edited C buffer against its on-disk text."""
    return Checker(indexes).check_source_edit(source_root, rel_path, old_text, new_text)


def cu_names_for_patch(text: str, source_root: Path | None = None) -> list[str] | None:
    """The CUs a patch needs indexed first; None when it touches a header (all CUs).

    With the source tree, a `.c` file that other `.c` files #include brings those in too
    (`including_files`): its code is compiled there.
    """
    patches, _problems = parse_patch_text(text, "<patch>")
    names: list[str] = []
    for p in patches:
        for fd in p.files:
            path = fd.path
            if path.endswith(".h"):
                return None
            if path.endswith(".c"):
                names.append(path)
    return with_including_files(names, source_root)
