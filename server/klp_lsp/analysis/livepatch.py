"""Pure checks behind `klp-lsp verify`: how the kernel resolves a `klp_func`, and whether a
replacement fits the compiled code of what it replaces.

- `resolve_sympos` is kernel/livepatch/core.c `klp_find_object_symbol` over the object's
  function symbols, with the messages the kernel prints when it refuses;
- `compare_parameters` and `compare_returns` compare the replacement's parameter locations and
  return class (from its DWARF) with the original's compiled copy, a GCC clone's included;
- `entry_arguments` finds the argument registers a function reads before writing them, which
  is what a clone really receives when GCC passes values its DWARF does not name;
- `same_magic` is kernel/module/version.c `same_magic`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from klp_lsp.analysis.cfg import Cfg
from klp_lsp.binary.abi import get_abi
from klp_lsp.model import Arch, Param, Severity, SymbolFact, TypeShape

ResolutionStatus = Literal["ok", "not-found", "ambiguous", "bad-position"]

# GCC clone kinds whose callers pass arguments in a layout of GCC's choosing (IPA-SRA,
# IPA-CP, ipa-split); `.cold` is a part of its parent and never called.
_ABI_CLONE_KINDS = frozenset({"isra", "constprop", "part"})


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the kernel finds for `old_name` and `old_sympos` in one object."""

    status: ResolutionStatus
    symbol: SymbolFact | None
    count: int  # how many function symbols of the object have the name
    kernel_message: str | None  # what kernel/livepatch/core.c prints when it refuses


def resolve_sympos(
    object_name: str, name: str, sympos: int, candidates: Sequence[SymbolFact]
) -> Resolution:
    """Resolve (`name`, `sympos`) as `klp_find_object_symbol` does.

    `candidates` are the object's function symbols called `name`, each with its index
    `sympos` (0 when the name occurs once in kallsyms, else its 1-based position in kallsyms
    order, data symbols counted). The kernel counts every kallsyms entry of the name: sympos 0
    needs exactly one, sympos N needs an N-th. A position no function symbol holds is a data
    symbol or none at all; either way no function is found there.
    """
    # klp_find_object_symbol prints objname, which is NULL for vmlinux: printk writes "(null)".
    printed = "(null)" if object_name == "vmlinux" else object_name
    if not candidates:
        return Resolution("not-found", None, 0, f"symbol '{name}' not found in symbol table")
    count = len(candidates)
    unique = count == 1 and candidates[0].sympos == 0
    if sympos == 0:
        if unique:
            return Resolution("ok", candidates[0], 1, None)
        return Resolution(
            "ambiguous",
            None,
            max(count, 2),
            f"unresolvable ambiguity for symbol '{name}' in object '{printed}'",
        )
    for c in candidates:
        if c.sympos == sympos or (unique and sympos == 1):
            return Resolution("ok", c, count, None)
    where = "vmlinux" if object_name == "vmlinux" else object_name
    return Resolution(
        "bad-position",
        None,
        count,
        f"symbol position {sympos} for symbol '{name}' in object '{where}' not found",
    )


def resolve_kallsyms(
    object_name: str, name: str, sympos: int, addresses: Sequence[int]
) -> tuple[ResolutionStatus, int | None, str | None]:
    """Resolve a `.klp.sym` symbol over every kallsyms entry of `name` in kallsyms order.

    (status, address, the kernel's message when it refuses): `klp_find_object_symbol` as in
    `resolve_sympos`, but over all symbol types, since a klp relocation may name data.
    """
    printed = "(null)" if object_name == "vmlinux" else object_name
    count = len(addresses)
    if count == 0:
        return "not-found", None, f"symbol '{name}' not found in symbol table"
    if sympos == 0:
        if count == 1:
            return "ok", addresses[0], None
        return (
            "ambiguous",
            None,
            f"unresolvable ambiguity for symbol '{name}' in object '{printed}'",
        )
    if sympos <= count:
        return "ok", addresses[sympos - 1], None
    return (
        "bad-position",
        None,
        f"symbol position {sympos} for symbol '{name}' in object '{object_name}' not found",
    )


@dataclass(frozen=True, slots=True)
class AbiDifference:
    """One way the replacement's calling convention differs from the original's code."""

    parameter: str  # the C parameter name, or the register for an unnamed value
    original: str  # where the original finds it: a register, "dropped", "stack", ...
    replacement: str
    severity: Severity
    message: str


def is_abi_clone(clone_kinds: Iterable[str]) -> bool:
    """Whether callers of a symbol with these clone kinds pass arguments GCC's own way."""
    return bool(_ABI_CLONE_KINDS & set(clone_kinds))


# Parameter locations at a copy's entry that are not a register (binary/dwarf.py): "removed"
# is GCC's DW_OP_GNU_parameter_ref (IPA-SRA replaced the parameter by what callers pass
# instead), "constant" a value IPA-CP fixed.
_NOT_A_REGISTER = frozenset(("stack", "optimized-out", "unknown", "removed", "constant"))


def _is_register(location: str) -> bool:
    return location not in _NOT_A_REGISTER


def compare_parameters(
    arch: Arch,
    symbol: str,
    original: Sequence[Param],
    clone_kinds: Sequence[str],
    replacement: Sequence[Param],
    received: frozenset[str] | None,
) -> list[AbiDifference]:
    """Compare where the replacement reads each parameter with what the original receives.

    `original` are the original copy's parameters at its entry (DWARF of that copy: a clone's
    concrete DIE lists every C parameter, dropped ones without a location); `replacement` the
    replacement's. `received` are the argument registers the original reads before writing
    them (`entry_arguments`), None when its code was not looked at. Callers of a plain
    function pass every C parameter where the C ABI puts it, even one the function ignores;
    callers of a clone pass only what the clone takes.
    """
    abi_regs = get_abi(arch).arg_registers
    clone = is_abi_clone(clone_kinds)
    by_name = {p.name: (i, p) for i, p in enumerate(original) if p.name}
    by_register = {p.location: p for p in original if _is_register(p.location)}
    out: list[AbiDifference] = []

    def carried(register: str) -> str:
        holder = by_register.get(register)
        if holder is not None:
            return f"{register} carries {holder.name or 'an unnamed parameter'} there"
        if received is not None:
            if register in received:
                return f"{register} carries a value GCC derived (not a C parameter)"
            return f"{symbol} does not read {register} at all"
        return f"what {register} carries is not known"

    for j, p in enumerate(replacement):
        r = p.location
        name = p.name or f"parameter {j + 1}"
        if not _is_register(r):
            continue  # the replacement does not read it from a register at entry
        if p.name and p.name in by_name:
            i, o = by_name[p.name]
            if o.location == r:
                continue
            if _is_register(o.location):
                out.append(
                    AbiDifference(
                        name,
                        o.location,
                        r,
                        "error",
                        f"{name}: {symbol} takes it in {o.location}, the replacement reads it"
                        f" from {r}",
                    )
                )
                continue
            if o.location == "optimized-out" and not clone:
                # Callers follow the C ABI; the original just never reads this parameter.
                expected = abi_regs[i] if i < len(abi_regs) else "stack"
                if expected != r:
                    out.append(
                        AbiDifference(
                            name,
                            expected,
                            r,
                            "error",
                            f"{name}: callers pass it in {expected} (C ABI position {i + 1}),"
                            f" the replacement reads it from {r}",
                        )
                    )
                continue
            same_slot = i < len(abi_regs) and abi_regs[i] == r
            lost = o.location == "optimized-out" and clone and same_slot
            if lost and received is not None and r in received:
                # DWARF can lose a kept parameter (no DW_AT_location while the clone's code
                # reads its register at entry): something arrives there, maybe the parameter.
                out.append(
                    AbiDifference(
                        name,
                        "no location",
                        r,
                        "warning",
                        f"{name}: {symbol}'s DWARF gives it no location, but {symbol} reads"
                        f" {r} at its entry: it may still take {name} there, or a value GCC"
                        " derived from it; check its callers",
                    )
                )
                continue
            if o.location in ("optimized-out", "unknown", "removed", "constant") and clone:
                how, what = {
                    "optimized-out": ("dropped", "dropped it (its callers do not pass it)"),
                    "constant": ("constant", "fixed it to a constant (its callers do not pass it)"),
                }.get(
                    o.location,
                    ("replaced", "replaced it by a value its callers pass instead (IPA-SRA)"),
                )
                out.append(
                    AbiDifference(
                        name,
                        how,
                        r,
                        "error",
                        f"{name}: GCC {what} in {symbol}; the replacement reads it from {r},"
                        f" where {carried(r)}",
                    )
                )
                continue
            if o.location == "stack":
                out.append(
                    AbiDifference(
                        name,
                        "stack",
                        r,
                        "error",
                        f"{name}: {symbol} takes it on the stack, the replacement reads it"
                        f" from {r}",
                    )
                )
                continue
            out.append(
                AbiDifference(
                    name,
                    o.location,
                    r,
                    "warning",
                    f"{name}: where {symbol} takes it is not known (no simple DWARF"
                    f" location at its entry); the replacement reads it from {r}",
                )
            )
            continue
        # A parameter the original does not have under that name.
        holder = by_register.get(r)
        if holder is not None:
            continue  # the same register under another name: a renamed parameter
        if received is not None and r in received:
            if clone:
                continue  # a value GCC passes instead of a C parameter (IPA-SRA)
            out.append(
                AbiDifference(
                    name,
                    "unnamed",
                    r,
                    "warning",
                    f"{name}: {symbol} reads {r} at its entry but has no parameter there",
                )
            )
            continue
        if received is not None:
            out.append(
                AbiDifference(
                    name,
                    "nothing",
                    r,
                    "error",
                    f"{name}: the replacement reads it from {r}, but {symbol} takes nothing"
                    f" there ({carried(r)}): its callers leave {r} undefined",
                )
            )
        else:
            out.append(
                AbiDifference(
                    name,
                    "unknown",
                    r,
                    "warning",
                    f"{name}: {symbol} has no parameter of that name and {carried(r)}",
                )
            )
    return out


def _return_class(arch: Arch, shape: TypeShape) -> str:
    """The return convention of a type: none, register(s), memory (a hidden pointer), unknown."""
    if shape.kind == "void":
        return "none"
    if shape.kind in ("integer", "pointer"):
        return "register" if shape.size <= 8 else "register pair"
    if shape.kind == "aggregate":
        if shape.size > 16:
            # x86-64 SysV: the caller passes the result's address in rdi, shifting every
            # argument by one register; AAPCS64: in x8, arguments unchanged.
            return "memory (hidden pointer in rdi)" if arch == "x86_64" else "memory (x8)"
        return "register" if shape.size <= 8 else "register pair"
    return "unknown"


def compare_returns(
    arch: Arch, symbol: str, original: TypeShape, replacement: TypeShape, clone: bool
) -> AbiDifference | None:
    """Whether the replacement returns its value the way the original's callers read it."""
    o, r = _return_class(arch, original), _return_class(arch, replacement)
    if "unknown" in (o, r) or o == r:
        if o == r == "register" and replacement.size < original.size:
            return AbiDifference(
                "return",
                original.name,
                replacement.name,
                "warning",
                f"{symbol} returns {original.name} ({original.size} bytes), the replacement"
                f" {replacement.name} ({replacement.size} bytes): callers read the upper bits"
                " of the register too",
            )
        return None
    if o == "none":
        return None  # callers of a void function read no return register
    severity: Severity = "error"
    note = ""
    if clone and r == "none":
        # IPA-SRA also removes return values no caller uses; the clone's DWARF keeps the C type.
        severity = "warning"
        note = " (unless GCC removed the clone's return value, which DWARF does not record)"
    return AbiDifference(
        "return",
        f"{original.name}: {o}",
        f"{replacement.name}: {r}",
        severity,
        f"{symbol} returns {original.name} in {o}; the replacement returns {replacement.name}"
        f" in {r}{note}",
    )


def entry_arguments(arch: Arch, cfg: Cfg, drop: Iterable[int] = ()) -> frozenset[str]:
    """The argument registers a function reads before it writes them, on some path.

    A call is taken to read every argument register (the callee's arguments are not known
    here) and a tail call too, which can only add registers; `drop` are instruction
    addresses to ignore (the x86 `call __fentry__` at the entry, which ftrace turns into a NOP).
    """
    abi = get_abi(arch)
    args = frozenset(abi.arg_registers)
    ignored = frozenset(drop)
    gen: dict[int, frozenset[str]] = {}
    kill: dict[int, frozenset[str]] = {}
    for block in cfg.blocks.values():
        g: set[str] = set()
        k: set[str] = set()
        for insn in block.insns:
            if insn.address in ignored:
                continue
            if insn.flow in ("call", "indirect-call"):
                g |= args - k
                k |= set(abi.call_clobbered)
                continue
            g |= (insn.reads & args) - k
            k |= insn.writes
        if block.tail_call is not None or block.indirect_tail_call:
            g |= args - k
        gen[block.start] = frozenset(g)
        kill[block.start] = frozenset(k)
    live_in: dict[int, frozenset[str]] = dict.fromkeys(cfg.blocks, frozenset())
    changed = True
    while changed:
        changed = False
        for start in sorted(cfg.blocks, reverse=True):
            block = cfg.blocks[start]
            out: frozenset[str] = frozenset().union(
                *(live_in.get(s, frozenset()) for s in block.successors)
            )
            new = gen[start] | (out - kill[start])
            if new != live_in[start]:
                live_in[start] = new
                changed = True
    return live_in.get(cfg.entry, frozenset())


def same_magic(module: str, kernel: str, has_crcs: bool) -> bool:
    """kernel/module/version.c `same_magic`: with CRCs the release (first word) is ignored."""
    if has_crcs:
        module = module[len(module.split(" ", 1)[0]) :]
        kernel = kernel[len(kernel.split(" ", 1)[0]) :]
    return module == kernel
