"""Tests of the compiler-guarantee parser, on producer strings of the real Debian kernel."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from klp_lsp.analysis.producer import parse_producer

# Verbatim DW_AT_producer values from the Debian 6.1.192-2 vmlinux files.
AMD64_COMMON = (
    "-mno-sse -mno-mmx -mno-sse2 -mno-3dnow -mno-avx -m64 -mno-80387 -mno-fp-ret-in-387 "
    "-mpreferred-stack-boundary=3 -mskip-rax-setup -mtune=generic -mno-red-zone -mcmodel=kernel "
    "-mindirect-branch=thunk-extern -mindirect-branch-register -mindirect-branch-cs-prefix "
    "-mfunction-return=thunk-extern -mharden-sls=all"
)
AMD64_TAIL = (
    "-fno-strict-aliasing -fno-common -fshort-wchar -fno-PIE -fcf-protection=none "
    "-falign-jumps=1 -falign-loops=1 -fno-asynchronous-unwind-tables -fno-jump-tables "
    "-fno-delete-null-pointer-checks -fno-allow-store-data-races -fstack-protector-strong "
    "-ftrivial-auto-var-init=zero -fno-stack-clash-protection -fno-strict-overflow "
    "-fstack-check=no -fconserve-stack -fno-builtin-wcslen"
)
# arch/x86/kernel/ebda.c: ftrace on.
AMD64_FENTRY = (
    f"GNU C11 12.2.0 {AMD64_COMMON} -mrecord-mcount -mfentry -march=x86-64 -g -O2 -std=gnu11 -p "
    f"{AMD64_TAIL}"
)
# arch/x86/kernel/head64.c: CC_FLAGS_FTRACE removed, so -p is gone but -mfentry stays.
AMD64_HEAD64 = (
    f"GNU C11 12.2.0 {AMD64_COMMON} -mrecord-mcount -mfentry -march=x86-64 -g -O2 -std=gnu11 "
    f"{AMD64_TAIL}"
)
# arch/x86/entry/common.c: no ftrace flags at all.
AMD64_NONE = (
    f"GNU C11 12.2.0 {AMD64_COMMON} -march=x86-64 -g -O2 -std=gnu11 {AMD64_TAIL} "
    "-fno-stack-protector"
)
ARM64_COMMON = (
    "-mlittle-endian -mgeneral-regs-only -mabi=lp64 -mbranch-protection=pac-ret+leaf "
    "-mstack-protector-guard=sysreg -mstack-protector-guard-reg=sp_el0 "
    "-mstack-protector-guard-offset=1360 -g -O2 -std=gnu11 -fno-strict-aliasing -fno-common "
    "-fshort-wchar -fno-PIE -fno-asynchronous-unwind-tables -fno-unwind-tables "
    "-fno-delete-null-pointer-checks -fno-allow-store-data-races -fstack-protector-strong "
    "-fno-omit-frame-pointer -fno-optimize-sibling-calls -ftrivial-auto-var-init=zero "
    "-fno-stack-clash-protection"
)
# init/main.c and arch/arm64/kernel/return_address.c.
ARM64_PATCHABLE = (
    f"GNU C11 12.2.0 {ARM64_COMMON} -fpatchable-function-entry=2 -fno-strict-overflow "
    "-fstack-check=no -fconserve-stack -fno-builtin-wcslen -fno-function-sections "
    "-fno-data-sections"
)
ARM64_NONE = (
    f"GNU C11 12.2.0 {ARM64_COMMON} -fno-strict-overflow -fstack-check=no -fconserve-stack "
    "-fno-builtin-wcslen"
)


def check(producer: str, ftrace: str, ipa_ra: bool, opt: str, **extra: str | None) -> None:
    flags = parse_producer(producer)
    assert (flags.ftrace, flags.ipa_ra, flags.opt_level) == (ftrace, ipa_ra, opt)
    assert flags.producer == producer
    for key, value in extra.items():
        assert getattr(flags, key) == value


@pytest.mark.parametrize(
    ("producer", "ftrace", "ipa_ra", "opt", "extra"),
    [
        (AMD64_FENTRY, "fentry", False, "2", {}),
        (AMD64_HEAD64, "none", True, "2", {}),
        (AMD64_NONE, "none", True, "2", {}),
        (ARM64_PATCHABLE, "patchable", False, "2", {"patchable_entry": "2"}),
        (ARM64_NONE, "none", True, "2", {"patchable_entry": None}),
        ("GNU AS 2.40", "none", False, "", {}),
        ("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 -pg", "mcount", False, "2", {}),
        ("GNU C17 12.2.0 -O2 -pg -mfentry -mno-fentry", "mcount", False, "2", {}),
        ("GNU C17 12.2.0 -g", "none", False, "", {}),
        ("GNU C17 12.2.0 -O0", "none", False, "0", {}),
        ("GNU C17 12.2.0 -O", "none", False, "1", {}),
        # -fipa-ra is in OPT_LEVELS_2_PLUS: off at -O1 and -Og, on at -Os/-Oz/-O3/-Ofast.
        ("GNU C17 12.2.0 -O1", "none", False, "1", {}),
        ("GNU C17 12.2.0 -Og", "none", False, "g", {}),
        ("GNU C17 12.2.0 -O1 -fipa-ra", "none", True, "1", {}),
        ("GNU C17 12.2.0 -Os", "none", True, "s", {}),
        ("GNU C17 12.2.0 -Oz", "none", True, "z", {}),
        ("GNU C17 12.2.0 -O3", "none", True, "3", {}),
        ("GNU C17 12.2.0 -Ofast", "none", True, "fast", {}),
        ("GNU C17 12.2.0 -O9", "none", True, "3", {}),
        # The last -O wins.
        ("GNU C17 12.2.0 -O2 -O0", "none", False, "0", {}),
        ("GNU C17 12.2.0 -O0 -O2", "none", True, "2", {}),
        ("GNU C17 12.2.0 -O2 -fno-ipa-ra", "none", False, "2", {}),
        # -fipa-ra does not bring IPA-RA back under -pg or patchable entries (toplev.cc).
        ("GNU C17 12.2.0 -O2 -p -mfentry -fipa-ra", "fentry", False, "2", {}),
        ("GNU C17 12.2.0 -O2 -fpatchable-function-entry=2,1 -fipa-ra", "patchable", False, "2", {}),
        ("GNU C17 12.2.0 -O2 -fpatchable-function-entry=0", "none", True, "2", {}),
        # -flive-patching clears flag_ipa_ra in opts.cc for both levels.
        ("GNU C17 12.2.0 -O2 -flive-patching=inline-clone", "none", False, "2",
         {"live_patching": "inline-clone"}),
        ("GNU C17 12.2.0 -O2 -flive-patching=inline-only-static", "none", False, "2",
         {"live_patching": "inline-only-static"}),
    ],
)  # fmt: skip
def test_parse_producer(
    producer: str, ftrace: str, ipa_ra: bool, opt: str, extra: dict[str, str | None]
) -> None:
    check(producer, ftrace, ipa_ra, opt, **extra)


FIXTURES = Path(__file__).parent / "fixtures" / "build"


def _units(path: Path) -> list[tuple[str, str]]:
    from klp_lsp.binary.dwarf import DwarfData
    from klp_lsp.binary.elf import ElfBinary

    with ElfBinary.open(path) as elf:
        dwarf = DwarfData(elf.get_dwarf_sections(), elf.arch, str(path))
    return [(u.name, u.producer) for u in dwarf.list_units()]


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="fixtures not built")
@pytest.mark.parametrize(("arch", "ftrace"), [("x86_64", "fentry"), ("arm64", "patchable")])
def test_fixture_producers(arch: str, ftrace: str) -> None:
    """The fixture kernels mix instrumented CUs and CUs without ftrace flags, like the kernel."""
    seen = Counter(parse_producer(p).ftrace for _, p in _units(FIXTURES / arch / "vmlinux"))
    assert seen[ftrace] >= 1
    for _, p in _units(FIXTURES / arch / "vmlinux"):
        flags = parse_producer(p)
        assert flags.ipa_ra == (flags.ftrace == "none" and flags.opt_level == "2")


CORPUS = os.environ.get("KLP_CORPUS_DIR")


@pytest.mark.corpus
@pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")
@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        # KERNEL_FACTS: 1,973 C CUs with -p -mrecord-mcount -mfentry, 168 without, 31 asm.
        ("amd64", {("fentry", False): 1973, ("none", True): 168, ("none", False): 31}),
        # 2,016 with -fpatchable-function-entry=2, 213 without, 48 asm.
        ("arm64", {("patchable", False): 2016, ("none", True): 213, ("none", False): 48}),
    ],
)
def test_corpus_census(arch: str, expected: dict[tuple[str, bool], int]) -> None:
    assert CORPUS is not None
    units = _units(Path(CORPUS) / arch / "vmlinux")
    seen = Counter((f.ftrace, f.ipa_ra) for f in (parse_producer(p) for _, p in units))
    assert seen == expected
