"""Whether livepatch can redirect a function through ftrace, and the stable reasons when not."""

from __future__ import annotations

from collections.abc import Set
from typing import Literal

from klp_lsp.model import Arch

FtraceMode = Literal["fentry", "mcount", "patchable", "none"]

NO_RECORD = "no ftrace record (notrace or asm)"
NO_FTRACE_FLAGS = "its CU is built without ftrace flags"
IN_INIT_TEXT = "in .init.text"
IN_EXIT_TEXT = "in .exit.text"
IN_NOINSTR_TEXT = "in .noinstr.text"
FULLY_INLINED = "fully inlined"
NO_SYMBOL = "no symbol"
COLD_PART = "a .cold part (patch the function it belongs to)"

# Sections whose code is freed after boot, or dropped in built-in code, or must stay
# uninstrumented (`noinstr`, include/linux/compiler_types.h); ftrace does not patch them.
_SECTION_REASONS = {
    ".init.text": IN_INIT_TEXT,
    ".exit.text": IN_EXIT_TEXT,
    ".noinstr.text": IN_NOINSTR_TEXT,
}

# Where an ftrace record may point relative to the symbol. x86-64 `-mfentry`: the record is the
# `call __fentry__` at the symbol address. arm64 `-fpatchable-function-entry=2`: the record is the
# first of the two NOPs; GCC emits them at the symbol address, after a `bti c` landing pad when
# it emits one (4 bytes). Debian 6.1 arm64: all 38,285 records that fall inside a FUNC symbol are
# at offset 0.
_RECORD_OFFSETS: dict[Arch, tuple[int, ...]] = {"x86_64": (0,), "aarch64": (0, 4)}


def function_has_mcount(address: int, size: int, records: Set[int], arch: Arch) -> bool:
    """True when an ftrace record points at the entry of the function at `address`."""
    return any(
        address + offset in records
        for offset in _RECORD_OFFSETS[arch]
        if offset == 0 or offset < size
    )


def assess_patchability(
    *,
    has_symbol: bool,
    fully_inlined: bool,
    section: str | None,
    has_mcount: bool,
    ftrace: FtraceMode | None,
    is_cold_part: bool = False,
) -> tuple[bool, tuple[str, ...]]:
    """Return (patchable, reasons) for one function; reasons are empty when patchable.

    `ftrace` is the CU's mode from `DW_AT_producer`, None when unknown (asm, no DWARF). A `.cold`
    part never has a record (KERNEL_FACTS); that is a fact about the part, not its parent, so
    callers pass the parent's own facts when judging the parent.
    """
    if fully_inlined:
        return False, (FULLY_INLINED,)
    if not has_symbol:
        return False, (NO_SYMBOL,)
    if is_cold_part:
        return False, (COLD_PART,)
    reasons: list[str] = []
    section_reason = _SECTION_REASONS.get(section or "")
    if section_reason is not None:
        reasons.append(section_reason)
    if not has_mcount:
        reasons.append(NO_FTRACE_FLAGS if ftrace == "none" else NO_RECORD)
    return not reasons, tuple(reasons)
