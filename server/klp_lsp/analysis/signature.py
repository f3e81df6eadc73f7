"""Whether a compiled function still takes its arguments where the C ABI puts them.

This is pahole's check for parameters in unexpected registers (dwarves, `parameter__new`): a GCC
clone (`.isra`, `.constprop`) or an optimised out-of-line copy may drop, reorder or add
parameters, and its callers then pass values in registers the C prototype does not predict.
`compiled_signature` says, per C parameter, how a copy receives it, from the copy's own
DW_TAG_subprogram (its parameters' locations at entry) and the registers its machine code reads.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from klp_lsp.binary.abi import MAX_REGISTER_RESULT, get_abi, result_registers
from klp_lsp.model import CompiledSignature, Param, PassedParam, PassingStatus

# DW_CC_* values from the DWARF 5 standard, section 7.15.
_CALLING_CONVENTIONS = {
    1: "normal",
    2: "program",
    3: "nocall",
    4: "pass_by_reference",
    5: "pass_by_value",
}


def calling_convention_name(value: int | None) -> str:
    """Name a DW_AT_calling_convention value; absent means DW_CC_normal."""
    if value is None:
        return "normal"
    return _CALLING_CONVENTIONS.get(value, f"vendor-{value:#x}")


def abi_deviation(arch: str, params: Sequence[Param]) -> bool:
    """True when a parameter that lives in a register at entry is not in its ABI register.

    Parameters without a location (optimised out) or on the stack say nothing either way; the
    check assumes each parameter takes one register, which holds for the scalars and pointers
    that make up nearly every kernel signature.
    """
    try:
        expected = get_abi(arch).arg_registers
    except Exception:  # Unknown architecture: nothing to compare against.
        return False
    registers = set(expected) | get_abi(arch).call_clobbered | get_abi(arch).callee_saved
    for i, p in enumerate(params):
        if p.location not in registers:
            continue  # Stack, optimised out, removed, constant, unknown: nothing to compare.
        if i >= len(expected) or p.location != expected[i]:
            return True
    return False


def prototype_registers(arch: str, count: int, return_size: int | None) -> tuple[str | None, ...]:
    """Where the C ABI puts each of `count` integer parameters (None: on the stack).

    On x86-64 a result returned in memory takes rdi for its address, and the parameters start
    at rsi (psABI 3.2.3); arm64 passes that address in x8, beside them.
    """
    abi = get_abi(arch)
    regs: tuple[str, ...] = abi.arg_registers
    if arch == "x86_64" and return_size is not None and return_size > MAX_REGISTER_RESULT:
        regs = regs[1:]
    return tuple(regs[i] if i < len(regs) else None for i in range(count))


# Locations of a parameter a clone does not receive.
_NOT_PASSED = frozenset(("optimized-out", "removed"))


def compiled_signature(
    arch: str,
    symbol: str,
    obj: str,
    address: int,
    clone_kinds: Sequence[str],
    prototype: Sequence[Param],
    own: Sequence[Param],
    return_size: int | None,
    arguments: Collection[str] | None,
    clobbers: Collection[str] | None,
) -> CompiledSignature:
    """How the copy at `address` receives each C parameter and returns its result.

    `prototype`: the C function's parameters (names, in order); `own`: the copy's, in the same
    order (`binary.dwarf`: a concrete DIE's parameters follow its abstract origin's), with
    their locations at entry; `arguments`: the argument registers its code reads before
    writing them (None: not known); `clobbers`: its clobber set (None: not known).

    GCC changes a signature only in a clone (IPA-SRA, IPA-CP, ipa-split make a new symbol): a
    copy under the C name keeps the C ABI, so a parameter without a location there is
    "unused", still passed. In a clone it is not passed: "dropped", or "replaced" when the clone
    reads argument registers that no parameter's location names (IPA-SRA passes a field
    instead of a struct pointer). Which removed parameter those registers stand for DWARF does
    not say: IPA-SRA splits only pointers and aggregates, so with one such parameter removed it
    is that one, with several they are "removed".
    """
    abi = get_abi(arch)
    is_clone = any(k in ("isra", "constprop", "part") for k in clone_kinds)
    expected = prototype_registers(arch, len(prototype), return_size)
    in_memory = return_size is not None and return_size > MAX_REGISTER_RESULT
    statuses: list[tuple[PassingStatus, str | None]] = []
    for i in range(len(prototype)):
        location = own[i].location if i < len(own) else "optimized-out"
        if location in abi.call_clobbered or location in abi.callee_saved:
            statuses.append(("register", location))
        elif location == "stack":
            statuses.append(("stack", None))
        elif location == "constant":
            statuses.append(("constant", None))
        elif location in _NOT_PASSED:
            statuses.append(("dropped" if is_clone else "unused", None))
        else:
            statuses.append(("unknown", None))
    extra: tuple[str, ...] | None = None
    if arguments is not None:
        received = {reg for status, reg in statuses if status == "register"}
        if in_memory:
            received.add(abi.indirect_result)
        if not is_clone:
            # Unused parameters still arrive in their C registers.
            received.update(r for r in expected if r is not None)
        order = (*abi.arg_registers, abi.indirect_result)
        extra = tuple(dict.fromkeys(r for r in order if r in arguments and r not in received))
    dropped = [i for i, (status, _reg) in enumerate(statuses) if status == "dropped"]
    # IPA-SRA splits only pointers and aggregates into other arguments; a scalar it removes
    # was unused (or fixed by IPA-CP).
    candidates = [i for i in dropped if prototype[i].type_kind in ("pointer", "aggregate")]
    if not candidates:
        candidates = [i for i in dropped if prototype[i].type_kind is None]
    if extra and candidates:
        for i in candidates:
            statuses[i] = ("replaced" if len(candidates) == 1 else "removed", None)
    returns = result_registers(arch, return_size)
    result_dropped = False
    if (
        returns
        and "isra" in clone_kinds
        and clobbers is not None
        and arch == "x86_64"
        and returns[0] not in clobbers
    ):
        # x86-64 results are always written to rax; a copy that never writes it returns
        # nothing (IPA-SRA removes a result no caller uses). arm64 may return x0 unchanged.
        returns, result_dropped = (), True
    params = tuple(
        PassedParam(p.name, i, status, reg, expected[i])
        for i, (p, (status, reg)) in enumerate(zip(prototype, statuses, strict=True))
    )
    matches = (
        all(
            (p.status == "register" and p.register == p.abi_register)
            or (p.status == "stack" and p.abi_register is None)
            or p.status == "unused"
            for p in params
        )
        and not extra
        and not result_dropped
    )
    return CompiledSignature(
        symbol=symbol,
        object=obj,
        address=address,
        clone_kinds=tuple(clone_kinds),
        params=params,
        extra_registers=extra,
        returns=returns,
        returns_in_memory=in_memory,
        result_dropped=result_dropped,
        matches_prototype=matches,
    )
