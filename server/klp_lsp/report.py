"""Renders function reports for people (text, Markdown) and tools (JSON-ready dicts).

The CLI's `show`, the language server's hover and its "full report" command all use these, so
every surface tells the same story in the same order: the verdict, then register dependents (the
finding an author is most likely to miss), then clones, inlining and sympos.
"""

from __future__ import annotations

from typing import Any

from klp_lsp.model import FunctionReport, SymbolFact, UnreadableUnit

_INLINE_PREVIEW = 8
_DEPENDENT_PREVIEW = 12


def hexaddr(address: int) -> str:
    return f"{address:#x}"


def report_to_json(r: FunctionReport) -> dict[str, Any]:
    """The `show --json` shape documented in the README."""

    def sym(s: SymbolFact) -> dict[str, Any]:
        return {
            "name": s.name,
            "address": hexaddr(s.address),
            "size": s.size,
            "section": s.section,
            "binding": s.binding,
            "sympos": s.sympos,
            "has_mcount": s.has_mcount,
            "patchable": s.patchable,
        }

    return {
        "name": r.name,
        "object": r.object,
        "binary": r.binary,
        "build_id": r.build_id,
        "arch": r.arch,
        "decl_file": r.decl_file,
        "decl_line": r.decl_line,
        "cu": r.cu_name,
        "symbols": [sym(s) for s in r.symbols],
        "clones": [{**sym(c), "kinds": list(c.clone_kinds)} for c in r.clones],
        "aliases": list(r.aliases),
        "patchable": r.patchable,
        "not_patchable_reasons": list(r.not_patchable_reasons),
        "out_of_line": r.out_of_line,
        "inlined_into": [
            {
                "function": i.function,
                "object": i.object,
                "address": hexaddr(i.address),
                "call_file": i.call_file,
                "call_line": i.call_line,
                "depth": i.depth,
            }
            for i in r.inlined_into
        ],
        "compiler": None
        if r.compiler is None
        else {
            "ipa_ra": r.compiler.ipa_ra,
            "ftrace": r.compiler.ftrace,
            "opt_level": r.compiler.opt_level,
            "producer": r.compiler.producer,
        },
        "signature": {
            "calling_convention": r.calling_convention,
            "abi_deviation": r.abi_deviation,
            "params": [{"name": p.name, "location": p.location} for p in r.params],
        },
        "clobbers": None if r.clobbers is None else list(r.clobbers),
        "callee_saved_clobbers": list(r.callee_saved_clobbers),
        "register_dependents": [
            {
                "callee": d.callee,
                "caller": d.caller,
                "object": d.object,
                "call_address": hexaddr(d.site),
                "registers": list(d.registers),
                "reason": d.reason,
            }
            for d in r.register_dependents
        ],
        "has_dwarf": r.has_dwarf,
    }


def verdict_line(r: FunctionReport) -> str:
    if r.patchable and r.register_dependents:
        return "patchable, but callers rely on its registers"
    if r.patchable:
        return "patchable"
    return "NOT patchable: " + "; ".join(r.not_patchable_reasons)


def _where(r: FunctionReport) -> str:
    if r.decl_file:
        return f"{r.decl_file}:{r.decl_line}" if r.decl_line else r.decl_file
    return "(no DWARF: asm or stripped)"


def _sym_line(s: SymbolFact) -> str:
    pos = f"sympos {s.sympos}" if s.sympos else "unique"
    trace = "ftrace" if s.has_mcount else "no ftrace record"
    return (
        f"{s.name}  {hexaddr(s.address)}  {s.size} bytes  {s.section}  {s.binding}  {pos}  {trace}"
    )


def compiler_line(r: FunctionReport) -> str:
    c = r.compiler
    if c is None:
        return "compiler: unknown (no DWARF for this code)"
    ipa = "IPA-RA on: same-CU callers may rely on actual register use" if c.ipa_ra else "IPA-RA off"
    trace = {"fentry": "-pg -mfentry", "mcount": "-pg", "patchable": "-fpatchable-function-entry"}
    return f"compiler: -O{c.opt_level or '?'}, {trace.get(c.ftrace, 'no ftrace flags')}, {ipa}"


def report_to_text(r: FunctionReport) -> str:
    """The text form of `show`: verdict first."""
    lines = [f"{r.name}  [{r.object}]  {_where(r)}", f"  verdict: {verdict_line(r)}"]
    if r.register_dependents:
        lines.append(f"  register dependents ({len(r.register_dependents)}):")
        for d in r.register_dependents[:_DEPENDENT_PREVIEW]:
            where = "" if d.object == r.object else f" [{d.object}]"
            lines.append(
                f"    {d.caller}{where} at {hexaddr(d.site)} keeps {', '.join(d.registers)}"
                f" across the call to {d.callee} ({d.reason})"
            )
        if len(r.register_dependents) > _DEPENDENT_PREVIEW:
            lines.append(f"    ... {len(r.register_dependents) - _DEPENDENT_PREVIEW} more")
    if r.symbols:
        lines.append("  symbols:")
        lines.extend(f"    {_sym_line(s)}" for s in r.symbols)
    elif not r.out_of_line:
        lines.append("  no out-of-line copy: every call was inlined")
    if r.clones:
        lines.append(f"  clones ({len(r.clones)}):")
        lines.extend(f"    {_sym_line(c)}  [{' '.join(c.clone_kinds)}]" for c in r.clones)
    if r.aliases:
        lines.append(f"  aliases: {', '.join(r.aliases)}")
    if r.inlined_into:
        lines.append(f"  inlined into {len(r.inlined_into)} place(s):")
        for i in r.inlined_into[:_INLINE_PREVIEW]:
            via = "" if i.depth == 1 else f" (through {i.depth - 1} inlined level(s))"
            lines.append(f"    {i.function}  {i.call_file}:{i.call_line}{via}")
        if len(r.inlined_into) > _INLINE_PREVIEW:
            lines.append(f"    ... {len(r.inlined_into) - _INLINE_PREVIEW} more")
    lines.append(f"  {compiler_line(r)}")
    if r.clobbers is not None:
        lines.append(f"  clobbers: {' '.join(r.clobbers) or '(none)'}")
    if r.callee_saved_clobbers:
        lines.append(
            f"  writes callee-saved without restoring: {' '.join(r.callee_saved_clobbers)}"
        )
    sig = ", ".join(f"{p.name or '?'}={p.location}" for p in r.params)
    deviation = "  ABI DEVIATION" if r.abi_deviation else ""
    lines.append(f"  signature: {r.calling_convention}({sig}){deviation}")
    return "\n".join(lines)


def unreadable_to_text(u: UnreadableUnit) -> str:
    """One line naming a compile unit the index lacks, and why."""
    name = u.name or f"the unit at .debug_info+{u.offset:#x}"
    return (
        f"{u.object}: compile unit {name} could not be read, its functions are missing: {u.reason}"
    )


def unreadable_to_json(u: UnreadableUnit) -> dict[str, Any]:
    """The `unreadable_units` entries of `show --json`."""
    return {"object": u.object, "offset": hexaddr(u.offset), "cu": u.name, "reason": u.reason}
