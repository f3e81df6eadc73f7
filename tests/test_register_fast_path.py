"""The register analysis's fast path gives exactly what the full analysis gives (issue 7).

`RegisterAnalyser` decides most functions of CUs without IPA-RA from their calls alone
(`_quick_calls`: the fast decode, no CFG, no liveness); `exhaustive=True` runs the full analysis
on every function. Both must produce the same register uses (clobbers, callee-saved clobbers,
call edges, in the same order) and the same dependents: on every CU of the fixture kernels and
modules, and (opt-in, `KLP_CORPUS_DIR`) on a fixed sample of the Debian kernels' CUs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, fixture_binary

from klp_lsp.binary.dwarf import DwarfData
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.index.builder import _list_units
from klp_lsp.index.regfacts import RegisterAnalyser
from klp_lsp.model import RegisterDependent, RegisterUse

CORPUS = os.environ.get("KLP_CORPUS_DIR")

Result = tuple[list[RegisterUse], list[RegisterDependent]]


def _both(path: Path, step: int = 1, offset: int = 0) -> tuple[Result, Result, int]:
    """(full analysis, fast path, functions the fast path decided) over every `step`th CU."""
    with ElfBinary.open(path) as binary:
        dwarf = DwarfData(binary.get_dwarf_sections(), binary.arch)
        units = _list_units(dwarf)
        symbols = binary.iter_function_symbols()
        facts = [dwarf.scan_unit(u.unit.offset) for u in units[offset::step]]
        full = RegisterAnalyser(binary, units, symbols, exhaustive=True).analyse(facts)
        fast_analyser = RegisterAnalyser(binary, units, symbols)
        fast = fast_analyser.analyse(facts)
        return full, fast, fast_analyser.fast_path_functions


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", ["vmlinux", "demo.ko"])
def test_fast_path_matches_full_analysis_on_fixtures(arch: str, name: str) -> None:
    full, fast, decided = _both(fixture_binary(arch, name))
    assert fast == full
    if name == "vmlinux":
        # The fixture kernel's ftrace-built CUs call functions of other CUs: some are decided
        # by the fast path, so this compares something.
        assert decided > 0


@pytest.mark.skipif(not CORPUS, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_fast_path_matches_full_analysis_on_debian_sample(arch: str) -> None:
    assert CORPUS is not None
    vmlinux = Path(CORPUS) / arch / "vmlinux"
    # Every 25th CU: about 90 CUs and 1,700 functions per architecture.
    full, fast, decided = _both(vmlinux, step=25, offset=7)
    full_uses, full_deps = full
    fast_uses, fast_deps = fast
    assert [u.address for u in fast_uses] == [u.address for u in full_uses]
    differing = [(a, b) for a, b in zip(fast_uses, full_uses, strict=True) if a != b]
    assert differing == []
    assert fast_deps == full_deps
    assert decided > len(full_uses) // 3


def _saved_through_exits(arch: str, code: bytes) -> bool:
    """The fast path's verdict on hand-assembled code at 0x1000 (no tail calls, no noreturn)."""
    fixture = "x86_64" if arch == "x86_64" else "arm64"
    with ElfBinary.open(fixture_binary(fixture)) as binary:
        dwarf = DwarfData(binary.get_dwarf_sections(), binary.arch)
        analyser = RegisterAnalyser(binary, _list_units(dwarf))
        scan = analyser.decoder.scan_flow([analyser.decoder.lite(code, 0x1000)])
        return analyser._saved_through_exits(
            scan, scan.insns, lambda _insn: False, frozenset(), frozenset()
        )


def _a64(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


# stp x29, x30, [sp, #-16]!; mov x29, sp; bl +0x100; ldp x29, x30, [sp], #16; (autiasp;) ret
_A64_FRAME = (0xA9BF7BFD, 0x910003FD, 0x94000040, 0xA8C17BFD)
_A64_AUTIASP, _A64_RET = 0xD50323BF, 0xD65F03C0


@pytest.mark.parametrize(
    ("arch", "code", "may_keep"),
    [
        # x30 saved and loaded back before the return: it may be preserved, full analysis.
        ("aarch64", _a64(*_A64_FRAME, _A64_RET), True),
        # `autiasp` rewrites x30 after the load: not preserved, the fast path decides.
        ("aarch64", _a64(*_A64_FRAME, _A64_AUTIASP, _A64_RET), False),
        # push rax; call +0; pop rax; ret: rax may be preserved.
        ("x86_64", bytes.fromhex("50e80000000058c3"), True),
        # ... then mov eax, 1 before the ret: rax is written after its restore.
        ("x86_64", bytes.fromhex("50e80000000058b801000000c3"), False),
        # push rax; call +0; ret: never loaded back.
        ("x86_64", bytes.fromhex("50e800000000c3"), False),
    ],
)
def test_saved_through_exits_bounds_the_restores(arch: str, code: bytes, may_keep: bool) -> None:
    assert _saved_through_exits(arch, code) is may_keep
