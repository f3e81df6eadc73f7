"""Renders function reports for people (text, Markdown) and tools (JSON-ready dicts).

The CLI's `show`, the language server's hover and its "full report" command all use these, so
every surface tells the same story in the same order: the verdict, then register dependents (the
finding an author is most likely to miss), then clones, inlining and sympos.
"""

from __future__ import annotations

from typing import Any

from klp_lsp.binary.abi import get_abi
from klp_lsp.model import (
    CompiledSignature,
    CompilerFlags,
    DependentFact,
    FunctionReport,
    InlinedInto,
    SymbolFact,
    UnreadableUnit,
)

_INLINE_PREVIEW = 8
_DEPENDENT_PREVIEW = 12


def hexaddr(address: int) -> str:
    return f"{address:#x}"


def report_to_json(r: FunctionReport) -> dict[str, Any]:
    """The `show --json` shape documented in the README."""

    queried = r.queried_symbol
    signatures = {sig.address: sig for sig in r.clone_signatures}

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
            "queried": queried is not None
            and (s.name, s.address) == (queried.name, queried.address),
        }

    def clone(c: SymbolFact) -> dict[str, Any]:
        sig = signatures.get(c.address)
        return {
            **sym(c),
            "kinds": list(c.clone_kinds),
            "signature": None if sig is None else signature_to_json(sig),
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
        "queried_symbol": None if queried is None else queried.name,
        "symbols": [sym(s) for s in r.symbols],
        "clones": [clone(c) for c in r.clones],
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
                "dead": i.dead,
                "reason": i.reason,
                "aliases": list(i.aliases),
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
                "via": list(d.via),
            }
            for d in r.register_dependents
        ],
        "has_dwarf": r.has_dwarf,
        "dead_copies": [{"address": hexaddr(a), "reason": why} for a, why in r.dead_copies],
    }


def signature_to_json(sig: CompiledSignature) -> dict[str, Any]:
    """A clone's compiled signature (`clones[].signature` of `show --json`)."""
    return {
        "params": [
            {
                "name": p.name,
                "index": p.index,
                "status": p.status,
                "register": p.register,
                "abi_register": p.abi_register,
            }
            for p in sig.params
        ],
        "extra_registers": None if sig.extra_registers is None else list(sig.extra_registers),
        "returns": None if sig.returns is None else list(sig.returns),
        "returns_in_memory": sig.returns_in_memory,
        "result_dropped": sig.result_dropped,
        "matches_prototype": sig.matches_prototype,
    }


def signature_text(sig: CompiledSignature, arch: str, *, verdict: bool = True) -> str:
    """One line: `(d=rdi, running: dropped) +rcx -> rax`, then whether it is the C ABI's."""
    params = ", ".join(
        f"{p.name or '?'}={p.register}"
        if p.status == "register"
        else f"{p.name or '?'}: {p.status}"
        for p in sig.params
    )
    extra = "".join(f" +{r}" for r in sig.extra_registers or ())
    if sig.result_dropped:
        returns = "nothing (result dropped)"
    elif sig.returns is None:
        returns = "?"
    elif sig.returns_in_memory:
        into = f"memory at [{get_abi(arch).indirect_result}]"
        returns = f"{into}, address in {sig.returns[0]}" if sig.returns else into
    else:
        returns = ":".join(sig.returns) or "void"
    text = f"({params}){extra} -> {returns}"
    if not verdict:
        return text
    note = "as the C prototype" if sig.matches_prototype else "differs from the C prototype"
    if sig.extra_registers is None:
        note += "; registers it reads not known"
    return f"{text}  [{note}]"


def dependent_text(d: DependentFact) -> str:
    """`caller at 0x.. keeps rsi across the call to g, which reaches f (via g) (ipa-ra)`."""
    if d.via:
        through = f"{d.via[0]}, which reaches {d.callee} (via {', '.join(d.via)})"
    else:
        through = d.callee
    return (
        f"{d.caller} at {hexaddr(d.site)} keeps {', '.join(d.registers)} across the call to"
        f" {through} ({d.reason})"
    )


def host_text(i: InlinedInto) -> str:
    """`pcpu_populate_pte (overridden __weak copy, no symbol)`, `f (aliases: g)`, or `f`."""
    if i.dead:
        return f"{i.function} ({i.reason})"
    if i.aliases:
        return f"{i.function} (aliases: {', '.join(i.aliases)})"
    return i.function


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
    return flags_line(r.compiler)


def flags_line(c: CompilerFlags | None) -> str:
    """`compiler: -O2, -pg -mfentry, IPA-RA off`: what a CU's compiler guarantees callers."""
    if c is None:
        return "compiler: unknown (no DWARF for this code)"
    ipa = "IPA-RA on: same-CU callers may rely on actual register use" if c.ipa_ra else "IPA-RA off"
    trace = {"fentry": "-pg -mfentry", "mcount": "-pg", "patchable": "-fpatchable-function-entry"}
    return f"compiler: -O{c.opt_level or '?'}, {trace.get(c.ftrace, 'no ftrace flags')}, {ipa}"


def report_to_text(r: FunctionReport) -> str:
    """The text form of `show`: verdict first."""
    queried = r.queried_symbol
    head = f"{r.name}  [{r.object}]  {_where(r)}"
    if queried is not None:
        pos = f", sympos {queried.sympos}" if queried.sympos else ""
        head += f"  (queried: {queried.name}{pos})"
    lines = [head, f"  verdict: {verdict_line(r)}"]
    if r.register_dependents:
        lines.append(f"  register dependents ({len(r.register_dependents)}):")
        for d in r.register_dependents[:_DEPENDENT_PREVIEW]:
            where = "" if d.object == r.object else f" [{d.object}]"
            text = dependent_text(d)
            lines.append(f"    {d.caller}{where}{text[len(d.caller) :]}")
        if len(r.register_dependents) > _DEPENDENT_PREVIEW:
            lines.append(f"    ... {len(r.register_dependents) - _DEPENDENT_PREVIEW} more")

    def mark(s: SymbolFact) -> str:
        hit = queried is not None and (s.name, s.address) == (queried.name, queried.address)
        return "  <- queried" if hit else ""

    if r.symbols:
        lines.append("  symbols:")
        lines.extend(f"    {_sym_line(s)}{mark(s)}" for s in r.symbols)
    elif r.dead_copies:
        lines.extend(
            f"  out-of-line copy at {hexaddr(a)} never runs: {why}" for a, why in r.dead_copies
        )
    elif not r.out_of_line:
        lines.append("  no out-of-line copy: every call was inlined")
    if r.clones:
        signatures = {sig.address: sig for sig in r.clone_signatures}
        lines.append(f"  clones ({len(r.clones)}):")
        for c in r.clones:
            lines.append(f"    {_sym_line(c)}  [{' '.join(c.clone_kinds)}]{mark(c)}")
            sig = signatures.get(c.address)
            if sig is not None:
                lines.append(f"      signature: {signature_text(sig, r.arch)}")
    if r.aliases:
        lines.append(f"  aliases: {', '.join(r.aliases)}")
    if r.inlined_into:
        lines.append(f"  inlined into {len(r.inlined_into)} place(s):")
        for i in r.inlined_into[:_INLINE_PREVIEW]:
            via = "" if i.depth == 1 else f" (through {i.depth - 1} inlined level(s))"
            lines.append(f"    {host_text(i)}  {i.call_file}:{i.call_line}{via}")
        if len(r.inlined_into) > _INLINE_PREVIEW:
            lines.append(f"    ... {len(r.inlined_into) - _INLINE_PREVIEW} more")
    lines.append(f"  {compiler_line(r)}")
    if r.clobbers is not None:
        lines.append(f"  clobbers: {' '.join(r.clobbers) or '(none)'}")
    if r.callee_saved_clobbers:
        lines.append(
            f"  writes callee-saved without restoring: {' '.join(r.callee_saved_clobbers)}"
        )
    if r.symbols or not r.has_dwarf:
        located = ", ".join(f"{p.name or '?'}={p.location}" for p in r.params)
        deviation = "  ABI DEVIATION" if r.abi_deviation else ""
        lines.append(f"  signature: {r.calling_convention}({located}){deviation}")
    else:
        # No copy under the C name: its parameters have no locations of their own.
        names = ", ".join(p.name or "?" for p in r.params)
        lines.append(f"  prototype: {r.calling_convention}({names}), no copy under the C name")
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
