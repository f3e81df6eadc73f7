"""ftrace patchability verdicts and record matching, over plain values."""

from __future__ import annotations

import pytest

from klp_lsp.analysis.patchability import (
    COLD_PART,
    FULLY_INLINED,
    IN_EXIT_TEXT,
    IN_INIT_TEXT,
    IN_NOINSTR_TEXT,
    NO_FTRACE_FLAGS,
    NO_RECORD,
    NO_SYMBOL,
    FtraceMode,
    assess_patchability,
    function_has_mcount,
)
from klp_lsp.model import Arch


def check(
    expected: tuple[bool, tuple[str, ...]],
    *,
    has_symbol: bool = True,
    fully_inlined: bool = False,
    section: str | None = ".text",
    has_mcount: bool = True,
    ftrace: FtraceMode | None = "fentry",
    is_cold_part: bool = False,
) -> None:
    got = assess_patchability(
        has_symbol=has_symbol,
        fully_inlined=fully_inlined,
        section=section,
        has_mcount=has_mcount,
        ftrace=ftrace,
        is_cold_part=is_cold_part,
    )
    assert got == expected


def test_ordinary_function_is_patchable() -> None:
    check((True, ()))
    check((True, ()), ftrace="patchable")


def test_reason_strings_are_stable() -> None:
    assert NO_RECORD == "no ftrace record (notrace or asm)"
    assert NO_FTRACE_FLAGS == "its CU is built without ftrace flags"
    assert (IN_INIT_TEXT, IN_EXIT_TEXT, IN_NOINSTR_TEXT) == (
        "in .init.text",
        "in .exit.text",
        "in .noinstr.text",
    )
    assert (FULLY_INLINED, NO_SYMBOL) == ("fully inlined", "no symbol")


def test_not_patchable() -> None:
    check((False, (NO_RECORD,)), has_mcount=False)
    check((False, (NO_RECORD,)), has_mcount=False, ftrace=None)
    check((False, (NO_FTRACE_FLAGS,)), has_mcount=False, ftrace="none")
    check((False, (IN_INIT_TEXT,)), section=".init.text")
    check((False, (IN_EXIT_TEXT, NO_RECORD)), section=".exit.text", has_mcount=False)
    check((False, (IN_NOINSTR_TEXT, NO_RECORD)), section=".noinstr.text", has_mcount=False)
    check((False, (FULLY_INLINED,)), fully_inlined=True, has_symbol=False, has_mcount=False)
    check((False, (NO_SYMBOL,)), has_symbol=False, has_mcount=False)
    check((False, (COLD_PART,)), is_cold_part=True, has_mcount=False)


@pytest.mark.parametrize(
    ("arch", "address", "size", "records", "expected"),
    [
        ("x86_64", 0x1000, 64, {0x1000}, True),
        ("x86_64", 0x1000, 64, {0x1004}, False),
        ("x86_64", 0x1000, 64, set(), False),
        ("aarch64", 0x1000, 64, {0x1000}, True),
        ("aarch64", 0x1000, 64, {0x1004}, True),  # after a `bti c` landing pad
        ("aarch64", 0x1000, 4, {0x1004}, False),  # that record belongs to the next function
        ("aarch64", 0x1000, 64, {0x1008}, False),
        ("x86_64", 0, 16, {0}, True),  # the first function of a module's synthetic layout
    ],
)
def test_function_has_mcount(
    arch: Arch, address: int, size: int, records: set[int], expected: bool
) -> None:
    assert function_has_mcount(address, size, frozenset(records), arch) is expected
