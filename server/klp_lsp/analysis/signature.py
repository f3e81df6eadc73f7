"""Whether a compiled function still takes its arguments where the C ABI puts them.

This is pahole's check for parameters in unexpected registers (dwarves, `parameter__new`): a GCC
clone (`.isra`, `.constprop`) or an optimised out-of-line copy may drop, reorder or add
parameters, and its callers then pass values in registers the C prototype does not predict.
"""

from __future__ import annotations

from collections.abc import Sequence

from klp_lsp.binary.abi import get_abi
from klp_lsp.model import Param

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
    for i, p in enumerate(params):
        if p.location in ("stack", "optimized-out", "unknown"):
            continue
        if i >= len(expected) or p.location != expected[i]:
            return True
    return False
