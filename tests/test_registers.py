"""Register analysis over the real fixture programs in tests/fixtures/regs and plain values.

The expected dependents of the IPA-RA builds were read off `objdump -d` by hand: after each
call, the call-clobbered registers that are read before being written, minus the return
value.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from klp_lsp.analysis.cfg import Cfg, build_cfg
from klp_lsp.analysis.registers import (
    FunctionCode,
    RegisterReport,
    analyse_function,
    analyse_registers,
    find_entry_arguments,
    find_register_dependents,
)
from klp_lsp.binary.abi import ALL_LANES, LANE_HIGH_BYTE, LANE_LOW, get_abi
from klp_lsp.binary.disasm import Decoder, Insn
from klp_lsp.model import DependencyReason

REGS = Path(__file__).parent / "fixtures" / "regs"

# The functions of regs.c with their parameter counts (what DWARF would give), void ones apart.
PARAMS = {
    "leaf_add": 1, "leaf_mix": 2, "leaf_store": 2, "die": 1, "chain": 3, "store_twice": 3,
    "tail": 1, "via_tail": 2, "dispatch": 3, "checked": 2, "bitmap_weight": 3, "main": 2,
    "sw_weight": 1, "flags": 3, "compare_twice": 2, "make_big": 2, "fill_big": 3,
    "sct_weight": 3, "sw_weight_sct": 1, "sw_weight_alt": 1, "leaf_cmp": 1,
}  # fmt: skip
VOID = frozenset(("leaf_store", "die", "flags"))
# Functions returning a struct over 16 bytes: in memory at the address in rdi / x8.
IN_MEMORY = frozenset(("make_big",))
BUILDS = {
    "regs-x86_64-O2": ("x86_64", True),
    "regs-x86_64-noipara": ("x86_64", False),
    "regs-x86_64-pg": ("x86_64", False),
    "regs-aarch64-O2": ("aarch64", True),
    "regs-aarch64-noipara": ("aarch64", False),
    "regs-aarch64-patchable": ("aarch64", False),
}


@dataclass
class Program:
    """One fixture program, decoded and analysed as the index builder would."""

    path: Path
    arch: str
    symbols: dict[str, tuple[int, int]]  # name -> (start, size)
    names: dict[int, str]
    functions: dict[int, FunctionCode]
    report: RegisterReport

    def addr(self, name: str) -> int:
        return self.symbols[name][0]

    def dependents(self) -> set[tuple[str, str, int, tuple[str, ...], str]]:
        """(callee, caller, site offset in caller, registers, reason) of every dependent."""
        return {
            (self.names[d.callee], self.names[d.caller], d.site - d.caller, d.registers, d.reason)
            for d in self.report.dependents
        }


def load_program(binary: str) -> Program:
    arch, ipa_ra = BUILDS[binary]
    abi = get_abi(arch)
    path = REGS / binary
    with path.open("rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        data, base = text.data(), text["sh_addr"]
        rodata = elf.get_section_by_name(".rodata")
        ro, ro_base = rodata.data(), rodata["sh_addr"]
        symbols = {
            s.name: (s["st_value"], s["st_size"])
            for s in elf.get_section_by_name(".symtab").iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] > 0
        }
    names = {start: name for name, (start, _) in symbols.items()}
    starts = sorted(names)

    def resolve(address: int) -> int | None:
        i = bisect.bisect_right(starts, address) - 1
        if i < 0:
            return None
        start = starts[i]
        return start if address < start + symbols[names[start]][1] else None

    def read_pointer(address: int) -> int | None:
        off = address - ro_base
        return int.from_bytes(ro[off : off + 8], "little") if 0 <= off <= len(ro) - 8 else None

    decoder = Decoder(arch)
    functions = {}
    for name in PARAMS:
        start, size = symbols[name]
        code = data[start - base : start - base + size]
        functions[start] = FunctionCode(name, ((start, start + size),), decoder.decode(code, start))
    helpers = {symbols[n][0] for n in ("sw_weight", "sw_weight_sct", "sw_weight_alt")}

    def reason_for(caller: int, callee: int) -> DependencyReason | None:
        if callee in helpers:
            return "custom-convention"
        if ipa_ra and names[caller] in PARAMS and names.get(callee) in PARAMS:
            return "ipa-ra"
        return None

    def arg_registers_of(callee: int) -> tuple[str, ...] | None:
        name = names.get(callee, "")
        n = PARAMS.get(name)
        if n is None:
            return None
        if name in IN_MEMORY:
            # x86-64: the address in rdi, the parameters from rsi; arm64: x8 beside x0-x7.
            first = 1 if arch == "x86_64" else 0
            return (*abi.arg_registers[first : first + n], abi.indirect_result)
        return abi.arg_registers[:n]

    def return_registers_of(callee: int) -> tuple[str, ...] | None:
        name = names.get(callee, "")
        if name in VOID or (name in IN_MEMORY and arch == "aarch64"):
            return ()
        return abi.return_registers[:1] if name in PARAMS else None

    report = analyse_registers(
        arch,
        functions,
        resolve=resolve,
        reason_for=reason_for,
        noreturn={symbols["die"][0], symbols["exit"][0]},
        arg_registers_of=arg_registers_of,
        return_registers_of=return_registers_of,
        read_pointer=read_pointer,
    )
    return Program(path, arch, symbols, names, functions, report)


_CACHE: dict[str, Program] = {}


def program(binary: str) -> Program:
    if binary not in _CACHE:
        _CACHE[binary] = load_program(binary)
    return _CACHE[binary]


X86_O2 = {
    ("leaf_add", "chain", 0x11, ("rcx", "rsi", "r8"), "ipa-ra"),
    ("leaf_add", "chain", 0x1C, ("rcx", "rdx", "rsi"), "ipa-ra"),
    ("leaf_add", "chain", 0x32, ("rcx", "rdx", "rsi", "rdi"), "ipa-ra"),
    ("leaf_mix", "chain", 0x27, ("rcx", "rdx", "rsi", "r9"), "ipa-ra"),
    ("leaf_store", "store_twice", 0xA, ("rcx", "rdx", "rdi", "r8"), "ipa-ra"),
    ("leaf_store", "store_twice", 0x16, ("rcx", "rdx", "r8"), "ipa-ra"),
    ("tail", "via_tail", 0xA, ("rcx", "rdx"), "ipa-ra"),
    # Through the tail call in `tail`: via_tail relies on leaf_mix too.
    ("leaf_mix", "via_tail", 0xA, ("rcx", "rdx"), "ipa-ra"),
    ("leaf_add", "checked", 0x9, ("rsi",), "ipa-ra"),
    (
        "sw_weight",
        "bitmap_weight",
        0x24,
        ("rcx", "rdx", "rsi", "r8", "r9", "r10"),
        "custom-convention",
    ),
    # `xor ecx, ecx` before the call, `setne cl` after it: bits 8-63 of rcx are kept.
    ("leaf_cmp", "flags", 0x6, ("rcx", "rdx", "rsi"), "ipa-ra"),
    ("leaf_cmp", "compare_twice", 0x6, ("rcx", "rsi"), "ipa-ra"),
    ("leaf_cmp", "compare_twice", 0x11, ("rcx", "rdx"), "ipa-ra"),
    ("leaf_add", "fill_big", 0xA, ("rcx", "rdx"), "ipa-ra"),
    ("make_big", "fill_big", 0x18, ("r8",), "ipa-ra"),
    # main keeps `s` in rsi / r8 across compare_twice, and so across leaf_cmp in it.
    ("compare_twice", "main", 0x16D, ("rsi",), "ipa-ra"),
    ("leaf_cmp", "main", 0x16D, ("rsi",), "ipa-ra"),
    ("compare_twice", "main", 0x178, ("r8",), "ipa-ra"),
    ("leaf_cmp", "main", 0x178, ("r8",), "ipa-ra"),
    # Through the trampoline's `jmp sw_weight_alt`.
    (
        "sw_weight_sct",
        "sct_weight",
        0x24,
        ("rcx", "rdx", "rsi", "r8", "r9", "r10"),
        "custom-convention",
    ),
    (
        "sw_weight_alt",
        "sct_weight",
        0x24,
        ("rcx", "rdx", "rsi", "r8", "r9", "r10"),
        "custom-convention",
    ),
}
A64_O2 = {
    ("leaf_add", "chain", 0x10, ("x2", "x4", "x5"), "ipa-ra"),
    ("leaf_add", "chain", 0x1C, ("x2", "x3", "x4", "x5"), "ipa-ra"),
    ("leaf_mix", "chain", 0x30, ("x1", "x3", "x4", "x5"), "ipa-ra"),
    ("leaf_add", "chain", 0x3C, ("x1", "x3", "x4", "x5"), "ipa-ra"),
    ("leaf_store", "store_twice", 0x10, ("x0", "x2", "x3", "x4"), "ipa-ra"),
    ("leaf_store", "store_twice", 0x1C, ("x2", "x3", "x4"), "ipa-ra"),
    ("tail", "via_tail", 0x10, ("x2", "x3"), "ipa-ra"),
    ("leaf_mix", "via_tail", 0x10, ("x2", "x3"), "ipa-ra"),
    ("leaf_add", "checked", 0xC, ("x1",), "ipa-ra"),
    (
        "sw_weight",
        "bitmap_weight",
        0x34,
        ("x1", "x2", "x3", "x4", "x5", "x6"),
        "custom-convention",
    ),
    ("leaf_cmp", "flags", 0x8, ("x1", "x2"), "ipa-ra"),
    ("leaf_cmp", "compare_twice", 0xC, ("x2",), "ipa-ra"),
    ("leaf_cmp", "compare_twice", 0x18, ("x1",), "ipa-ra"),
    # `mov x8, x0` before `bl leaf_add`: the indirect result register of `bl make_big`.
    ("leaf_add", "fill_big", 0x14, ("x1", "x8"), "ipa-ra"),
    # make_big returns in memory, so nothing in x0: t stays there across it.
    ("make_big", "fill_big", 0x18, ("x0",), "ipa-ra"),
    ("compare_twice", "main", 0x174, ("x3",), "ipa-ra"),
    ("leaf_cmp", "main", 0x174, ("x3",), "ipa-ra"),
    (
        "sw_weight_sct",
        "sct_weight",
        0x30,
        ("x1", "x2", "x3", "x4", "x5", "x6"),
        "custom-convention",
    ),
    (
        "sw_weight_alt",
        "sct_weight",
        0x30,
        ("x1", "x2", "x3", "x4", "x5", "x6"),
        "custom-convention",
    ),
}


@pytest.mark.parametrize(
    ("binary", "expected"), [("regs-x86_64-O2", X86_O2), ("regs-aarch64-O2", A64_O2)]
)
def test_ipa_ra_builds_show_every_dependency(
    binary: str, expected: set[tuple[str, str, int, tuple[str, ...], str]]
) -> None:
    prog = program(binary)
    found = prog.dependents()
    dispatch = {d for d in found if d[1] == "dispatch"}
    assert found - dispatch == expected
    # Every case of the jump table that calls a leaf keeps v/w (and the result) across it.
    assert len(dispatch) == 10
    assert all(d[0] in ("leaf_add", "leaf_mix") and d[4] == "ipa-ra" for d in dispatch)
    assert not prog.report.artefacts


@pytest.mark.parametrize(
    "binary",
    ["regs-x86_64-noipara", "regs-x86_64-pg", "regs-aarch64-noipara", "regs-aarch64-patchable"],
)
def test_builds_without_ipa_ra_only_depend_on_the_asm_helper(binary: str) -> None:
    prog = program(binary)
    found = prog.dependents()
    assert {(d[0], d[1], d[4]) for d in found} == {
        ("sw_weight", "bitmap_weight", "custom-convention"),
        ("sw_weight_sct", "sct_weight", "custom-convention"),
        ("sw_weight_alt", "sct_weight", "custom-convention"),
    }
    assert not prog.report.artefacts


@pytest.mark.parametrize(
    ("binary", "expected"),
    [
        (
            "regs-x86_64-O2",
            {
                "leaf_add": {"rax"},
                "leaf_mix": {"rax", "rdi"},
                "leaf_store": {"rsi"},
                "tail": {"rax", "rdi", "rsi"},
                "sw_weight": {"rax"},
            },
        ),
        (
            "regs-aarch64-O2",
            {"leaf_add": {"x0"}, "leaf_mix": {"x0"}, "leaf_store": {"x1"}, "sw_weight": {"x0"}},
        ),
    ],
)
def test_clobber_sets(binary: str, expected: dict[str, set[str]]) -> None:
    prog = program(binary)
    for name, regs in expected.items():
        use = prog.report.uses[prog.addr(name)]
        assert set(use.clobbers) == regs, name
        assert not use.callee_saved_clobbers, name
    abi = get_abi(prog.arch)
    # main calls printf, whose clobbers are unknown: the whole ABI set, but for the link
    # register that arm64 main saves and restores with stp/ldp.
    assert prog.report.uses[prog.addr("main")].clobbers == abi.call_clobbered - {"x30"}


@pytest.mark.parametrize("binary", ["regs-x86_64-O2", "regs-aarch64-O2"])
def test_call_edges(binary: str) -> None:
    prog = program(binary)
    tail = prog.report.uses[prog.addr("tail")]
    assert [(e.callee, e.kind) for e in tail.calls] == [(prog.addr("leaf_mix"), "tail-call")]
    chain = prog.report.uses[prog.addr("chain")]
    assert [prog.names[e.callee or 0] for e in chain.calls] == [
        "leaf_add", "leaf_add", "leaf_mix", "leaf_add",
    ]  # fmt: skip


def test_jump_tables() -> None:
    x86 = program("regs-x86_64-O2")
    start = x86.addr("dispatch")
    cfg = build_cfg(x86.functions[start].insns, x86.functions[start].ranges)
    assert not any(b.jump_table for b in cfg.blocks.values())  # no read_pointer: unresolved
    # Resolved through .rodata with the `cmp edi, 11; ja` bound.
    facts_blocks = [b for b in _cfg(x86, "dispatch").blocks.values() if b.jump_table]
    assert len(facts_blocks) == 1 and len(facts_blocks[0].successors) == 12
    # arm64 dispatches through `ldrb; adr; add; br` with the `cmp w0, #0xb; b.ls` bound.
    a64 = program("regs-aarch64-O2")
    resolved = [b for b in _cfg(a64, "dispatch").blocks.values() if b.jump_table]
    assert len(resolved) == 1 and len(resolved[0].successors) == 12
    assert not any(b.guessed_targets for b in _cfg(a64, "dispatch").blocks.values())


def _cfg(prog: Program, name: str) -> Cfg:
    start = prog.addr(name)
    with prog.path.open("rb") as f:
        rodata = ELFFile(f).get_section_by_name(".rodata")
        ro, ro_base = rodata.data(), rodata["sh_addr"]

    def read_pointer(address: int) -> int | None:
        off = address - ro_base
        return int.from_bytes(ro[off : off + 8], "little") if 0 <= off <= len(ro) - 8 else None

    code = prog.functions[start]
    return build_cfg(
        code.insns, code.ranges, noreturn={prog.addr("die")}, read_pointer=read_pointer
    )


def test_noreturn_call_ends_block() -> None:
    prog = program("regs-x86_64-O2")
    cfg = _cfg(prog, "checked")
    (block,) = [b for b in cfg.blocks.values() if b.insns[-1].target == prog.addr("die")]
    assert block.successors == ()


# --- plain values -------------------------------------------------------------------------


def insn(
    address: int,
    reads: str = "",
    writes: str = "",
    flow: str = "fallthrough",
    target: int | None = None,
    saves: str = "",
    restores: str = "",
    lanes: tuple[tuple[str, int, int], ...] = (),
) -> Insn:
    return Insn(
        address, 1, "op", "", frozenset(reads.split()), frozenset(writes.split()),
        flow, target, None, frozenset(saves.split()), frozenset(restores.split()), lanes,  # type: ignore[arg-type]
    )  # fmt: skip


def check(
    code: dict[int, list[Insn]],
    reasons: dict[tuple[int, int], DependencyReason],
    expected: set[tuple[int, int, int, tuple[str, ...]]],
    *,
    noreturn: frozenset[int] = frozenset(),
) -> RegisterReport:
    """Analyse hand-made x86-64 functions; expected holds (callee, caller, site, registers)."""
    functions = {
        start: FunctionCode(f"f{start:x}", ((start, start + len(body)),), tuple(body))
        for start, body in code.items()
    }
    report = analyse_registers(
        "x86_64",
        functions,
        resolve=lambda a: a if a in code else None,
        reason_for=lambda caller, callee: reasons.get((caller, callee)),
        noreturn=noreturn,
        arg_registers_of=lambda f: (),
        return_registers_of=lambda f: ("rax",),
    )
    assert {(d.callee, d.caller, d.site, d.registers) for d in report.dependents} == expected
    return report


LEAF = [insn(0x100, "rdi", "rax"), insn(0x101, flow="return")]
WRITES_RCX = [insn(0x200, "rdi", "rcx rax"), insn(0x201, flow="return")]


def test_value_live_across_two_calls() -> None:
    caller = [
        insn(0x10, "", "rcx"),
        insn(0x11, flow="call", target=0x100),
        insn(0x12, flow="call", target=0x100),
        insn(0x13, "rcx rax", "rax"),
        insn(0x14, flow="return"),
    ]
    check(
        {0x10: caller, 0x100: LEAF},
        {(0x10, 0x100): "ipa-ra"},
        {(0x100, 0x10, 0x11, ("rcx",)), (0x100, 0x10, 0x12, ("rcx",))},
    )


def test_clobbering_callee_kills_liveness() -> None:
    # rcx is redefined by the second callee, so nothing is kept across the first call.
    caller = [
        insn(0x10, flow="call", target=0x100),
        insn(0x11, flow="call", target=0x200),
        insn(0x12, "rcx"),
        insn(0x13, flow="return"),
    ]
    check({0x10: caller, 0x100: LEAF, 0x200: WRITES_RCX}, {(0x10, 0x100): "ipa-ra"}, set())


def test_no_reason_is_an_artefact() -> None:
    caller = [insn(0x10, flow="call", target=0x100), insn(0x11, "rcx"), insn(0x12, flow="return")]
    report = check({0x10: caller, 0x100: LEAF}, {}, set())
    assert [(a.site, a.registers, a.why) for a in report.artefacts] == [
        (0x10, ("rcx",), "no-reason")
    ]


def test_transitive_and_tail_calls() -> None:
    # 0x10 keeps rsi across a call to 0x300, which tail-calls the leaf 0x100.
    middle = [insn(0x300, "", "rdi"), insn(0x301, flow="jump", target=0x100)]
    caller = [insn(0x10, flow="call", target=0x300), insn(0x11, "rsi"), insn(0x12, flow="return")]
    report = check(
        {0x10: caller, 0x100: LEAF, 0x300: middle},
        {(0x10, 0x300): "ipa-ra"},
        {(0x300, 0x10, 0x10, ("rsi",)), (0x100, 0x10, 0x10, ("rsi",))},
    )
    assert report.uses[0x300].clobbers == {"rax", "rdi"}
    assert [(e.callee, e.kind) for e in report.uses[0x300].calls] == [(0x100, "tail-call")]
    # The dependent on the leaf names the tail-calling function it is reached through.
    assert {(d.callee, d.via) for d in report.dependents} == {(0x300, ()), (0x100, (0x300,))}


def test_a_function_preserving_a_register_shields_its_callees() -> None:
    # 0x500 saves rcx, calls 0x250 and restores rcx: what 0x250 does to rcx never reaches the
    # caller that keeps rcx across 0x500, so 0x250 has no dependent (before: one via 0x500).
    thunk = [
        insn(0x500, "rcx", saves="rcx"),
        insn(0x501, "", "rcx"),
        insn(0x502, flow="call", target=0x250),
        insn(0x503, "", "rcx", restores="rcx"),
        insn(0x504, flow="return"),
    ]
    leaf = [insn(0x250, "rdi", "rax"), insn(0x251, flow="return")]
    caller = [insn(0x10, flow="call", target=0x500), insn(0x11, "rcx"), insn(0x12, flow="return")]
    check(
        {0x10: caller, 0x250: leaf, 0x500: thunk},
        {(0x10, 0x500): "custom-convention"},
        {(0x500, 0x10, 0x10, ("rcx",))},
    )


def test_trampoline_outside_the_group() -> None:
    # Like `call __SCT__preempt_schedule` (`jmp preempt_schedule_thunk`): the trampoline and
    # its target are asm code the index decodes on demand, outside the caller's group.
    abi = get_abi("x86_64")
    tramp = FunctionCode("tramp", ((0x700, 0x701),), (insn(0x700, flow="jump", target=0x800),))
    target = FunctionCode("target", ((0x800, 0x802),), tuple(LEAF_AT_0x800))
    outside = {
        a: analyse_function("x86_64", a, c, resolve=lambda x: x)
        for a, c in ((0x700, tramp), (0x800, target))
    }
    caller = [insn(0x10, flow="call", target=0x700), insn(0x11, "rcx"), insn(0x12, flow="return")]
    facts = {
        0x10: analyse_function(
            "x86_64", 0x10, FunctionCode("c", ((0x10, 0x13),), tuple(caller)), resolve=lambda x: x
        )
    }
    clobbers = {0x10: abi.call_clobbered, 0x700: frozenset({"rax"}), 0x800: frozenset({"rax"})}
    found, _, _ = find_register_dependents(
        "x86_64",
        facts,
        clobbers,
        reason_for=lambda _c, _e: "custom-convention",
        arg_registers_of=lambda _f: (),
        return_registers_of=lambda _f: ("rax",),
        outside=outside,
    )
    assert {(d.callee, d.registers, d.via) for d in found} == {
        (0x700, ("rcx",), ()),
        (0x800, ("rcx",), (0x700,)),
    }


LEAF_AT_0x800 = [insn(0x800, "rdi", "rax"), insn(0x801, flow="return")]


def test_partial_write_keeps_the_rest_of_the_register() -> None:
    # xor ecx, ecx; call leaf; setne cl; mov [rax], ecx: bits 8-31 of rcx cross the call.
    setne_cl = insn(0x12, "", "rcx", lanes=(("rcx", 0, LANE_LOW),))
    caller = [
        insn(0x10, "", "rcx"),
        insn(0x11, flow="call", target=0x100),
        setne_cl,
        insn(0x13, "rcx rax"),
        insn(0x14, flow="return"),
    ]
    check({0x10: caller, 0x100: LEAF}, {(0x10, 0x100): "ipa-ra"}, {(0x100, 0x10, 0x11, ("rcx",))})


def test_zero_extended_byte_needs_only_that_byte() -> None:
    # call leaf; setne cl; movzx ecx, cl: the old upper bits of rcx are never read.
    caller = [
        insn(0x10, "", "rcx"),
        insn(0x11, flow="call", target=0x100),
        insn(0x12, "", "rcx", lanes=(("rcx", 0, LANE_LOW),)),
        insn(0x13, "rcx", "rcx", lanes=(("rcx", LANE_LOW, ALL_LANES),)),
        insn(0x14, "rcx rax"),
        insn(0x15, flow="return"),
    ]
    check({0x10: caller, 0x100: LEAF}, {(0x10, 0x100): "ipa-ra"}, set())


def test_lanes_follow_lanewise_copies() -> None:
    # sete r10b; mov edi, r10d; test dil, dil (xa_get_mark): only the low byte of r10 is used,
    # so its old upper bits, from before the call, matter to nothing.
    def caller(test: str) -> list[Insn]:
        return [
            insn(0x10, flow="call", target=0x100),
            insn(0x11, "", "r10", lanes=(("r10", 0, LANE_LOW),)),
            Insn(
                0x12,
                1,
                "mov",
                "",
                frozenset({"r10"}),
                frozenset({"rdi"}),
                "fallthrough",
                copies=(("rdi", "r10"),),
            ),
            insn(0x13, "rdi", lanes=(("rdi", LANE_LOW, 0),))
            if test == "dil"
            else insn(0x13, "rdi"),
            insn(0x14, flow="return"),
        ]

    check({0x10: caller("dil"), 0x100: LEAF}, {(0x10, 0x100): "ipa-ra"}, set())
    # Read whole in edi, the upper bits of r10 do come from before the call.
    check(
        {0x10: caller("edi"), 0x100: LEAF},
        {(0x10, 0x100): "ipa-ra"},
        {(0x100, 0x10, 0x10, ("r10",))},
    )


def test_a_bool_result_uses_only_al() -> None:
    # mov eax, edx; call f; sete al; ret from a function returning bool
    # (copy_fpstate_to_sigframe): the old upper bits of rax are no result.
    caller = [
        insn(0x10, "rdx", "rax"),
        insn(0x11, flow="call", target=0x200),
        insn(0x12, "", "rax", lanes=(("rax", 0, LANE_LOW),)),
        insn(0x13, flow="return"),
    ]
    functions = {
        0x10: FunctionCode("c", ((0x10, 0x14),), tuple(caller)),
        0x200: FunctionCode(
            "f", ((0x200, 0x202),), (insn(0x200, "rdi", "rcx"), insn(0x201, flow="return"))
        ),
    }

    def dependents(result: tuple[str, ...]) -> set[tuple[int, tuple[str, ...]]]:
        report = analyse_registers(
            "x86_64",
            functions,
            resolve=lambda a: a if a in functions else None,
            reason_for=lambda _c, _e: "ipa-ra",
            arg_registers_of=lambda _f: (),
            return_registers_of=lambda f: result if f == 0x10 else ("rcx",),
        )
        return {(d.callee, d.registers) for d in report.dependents}

    assert dependents(("al",)) == set()
    assert dependents(("rax",)) == {(0x200, ("rax",))}  # a long result would keep them


def test_high_byte_write_keeps_the_low_byte() -> None:
    # mov ch, 1 after the call: cl (bits 0-7) still comes from before it.
    caller = [
        insn(0x10, "", "rcx"),
        insn(0x11, flow="call", target=0x100),
        insn(0x12, "", "rcx", lanes=(("rcx", 0, LANE_HIGH_BYTE),)),
        insn(0x13, "rcx", "rax", lanes=(("rcx", LANE_LOW | LANE_HIGH_BYTE, 0),)),
        insn(0x14, flow="return"),
    ]
    check({0x10: caller, 0x100: LEAF}, {(0x10, 0x100): "ipa-ra"}, {(0x100, 0x10, 0x11, ("rcx",))})


def test_entry_arguments() -> None:
    # Reads rdi and rsi (passed on to the leaf) before writing them; rdx is written first.
    code = [
        insn(0x10, "rdi", "rax"),
        insn(0x11, "", "rdx"),
        insn(0x12, "rdx rsi", "rcx"),
        insn(0x13, flow="call", target=0x100),
        insn(0x14, flow="return"),
    ]
    facts = {
        0x10: analyse_function(
            "x86_64", 0x10, FunctionCode("f", ((0x10, 0x15),), tuple(code)), resolve=lambda x: x
        )
    }
    found = find_entry_arguments(
        "x86_64", facts, {0x100: frozenset({"rax"})}, [0x10], arg_registers_of=lambda _f: ("rsi",)
    )
    assert found == {0x10: frozenset({"rdi", "rsi"})}


def test_noreturn_call_has_no_successor() -> None:
    # Without the noreturn fact the read of rdx after the call would look like a dependency.
    caller = [
        insn(0x10, flow="call", target=0x100),
        insn(0x11, flow="call", target=0x400),
        insn(0x12, "rdx"),
        insn(0x13, flow="return"),
    ]
    never = [insn(0x400, flow="trap")]
    code = {0x10: caller, 0x100: LEAF, 0x400: never}
    reasons: dict[tuple[int, int], DependencyReason] = {
        (0x10, 0x100): "ipa-ra",
        (0x10, 0x400): "ipa-ra",
    }
    check(code, reasons, {(0x100, 0x10, 0x10, ("rdx",)), (0x400, 0x10, 0x11, ("rdx",))})
    check(code, reasons, set(), noreturn=frozenset({0x400}))


def test_unknown_callee_clobbers_everything() -> None:
    caller = [insn(0x10, "rax", flow="indirect-call"), insn(0x11, flow="return")]
    report = check({0x10: caller}, {}, set())
    assert report.uses[0x10].clobbers == get_abi("x86_64").call_clobbered
    assert report.abi_argument_fallbacks == (0x10,)


def test_callee_saved_written_without_save() -> None:
    custom = [insn(0x10, "rax", "rbx"), insn(0x11, flow="return")]
    saved = [
        insn(0x20, "rbx", saves="rbx"),
        insn(0x21, "", "rbx rdx", saves="rdx"),
        insn(0x22, "", "rbx rdx", restores="rbx rdx"),
        insn(0x23, flow="return"),
    ]
    report = check({0x10: custom, 0x20: saved}, {}, set())
    assert report.uses[0x10].callee_saved_clobbers == {"rbx"}
    assert not report.uses[0x20].callee_saved_clobbers
    # rdx is pushed and popped: preserved, like rdi/rdx in __sw_hweight64.
    assert report.uses[0x20].clobbers == frozenset()


def test_thunk_saving_everything_preserves_callee_clobbers() -> None:
    # Like preempt_schedule_thunk: push every call-clobbered register, call C code, pop.
    regs = "rcx rdx rsi rdi"
    thunk = [
        insn(0x500, regs, saves=regs),
        insn(0x501, flow="call", target=0x200),
        insn(0x502, "", regs, restores=regs),
        insn(0x503, flow="return"),
    ]
    caller = [insn(0x10, flow="call", target=0x500), insn(0x11, "rcx"), insn(0x12, flow="return")]
    report = check(
        {0x10: caller, 0x200: WRITES_RCX, 0x500: thunk},
        {(0x10, 0x500): "custom-convention"},
        {(0x500, 0x10, 0x10, ("rcx",))},
    )
    assert report.uses[0x500].clobbers == {"rax"}


def test_restore_through_a_stub_and_tail_calls() -> None:
    # preempt_schedule_thunk saves, calls C code, and tail-calls __thunk_restore to pop.
    regs = "rcx rdx rsi rdi"
    thunk = [
        insn(0x500, regs, saves=regs),
        insn(0x501, flow="call", target=0x200),
        insn(0x502, flow="jump", target=0x600),
    ]
    stub = [insn(0x600, "", regs, restores=regs), insn(0x601, flow="return")]
    # Restores rdi, then tail-calls a function that writes it: rdi is not preserved.
    leaky = [
        insn(0x700, "rdi", saves="rdi"),
        insn(0x701, "", "rdi", restores="rdi"),
        insn(0x702, flow="jump", target=0x800),
    ]
    writes_rdi = [insn(0x800, "", "rdi"), insn(0x801, flow="return")]
    report = check(
        {0x200: WRITES_RCX, 0x500: thunk, 0x600: stub, 0x700: leaky, 0x800: writes_rdi}, {}, set()
    )
    assert report.uses[0x500].clobbers == {"rax"}  # the only register it does not save
    assert report.uses[0x700].clobbers == {"rdi"}


def test_restores_count_in_the_blocks_that_follow() -> None:
    # xen_hypercall_hvm: saves everything, calls C code, pops everything, then `je` to one
    # tail call or falls through to another. Both exits are after the restores.
    regs = "rax rcx rdx rsi rdi r8 r9 r10 r11"
    hvm = [
        insn(0x500, regs, saves=regs),
        insn(0x501, flow="call", target=0x200),
        insn(0x502, "", regs, restores=regs),
        insn(0x503, flow="cond-jump", target=0x600),
        insn(0x504, flow="jump", target=0x700),
    ]
    amd = [insn(0x600, flow="return")]
    intel = [insn(0x700, flow="return")]
    report = check({0x200: WRITES_RCX, 0x500: hvm, 0x600: amd, 0x700: intel}, {}, set())
    assert report.uses[0x500].clobbers == frozenset()


def test_a_call_after_the_restore_undoes_it() -> None:
    body = [
        insn(0x500, "rcx", saves="rcx"),
        insn(0x501, "", "rcx", restores="rcx"),
        insn(0x502, flow="call", target=0x200),
        insn(0x503, flow="return"),
    ]
    report = check({0x200: WRITES_RCX, 0x500: body}, {}, set())
    assert "rcx" in report.uses[0x500].clobbers


def test_tail_call_after_restore_still_adds_the_target_writes() -> None:
    # Restoring rcx before the jump does not hide what the tail-called function writes.
    body = [
        insn(0x500, "rcx", saves="rcx"),
        insn(0x501, "", "rcx", restores="rcx"),
        insn(0x502, flow="jump", target=0x200),
    ]
    report = check({0x200: WRITES_RCX, 0x500: body}, {}, set())
    assert report.uses[0x500].clobbers == {"rax", "rcx"}


def analyse_unknown_returns(arch: str, code: dict[int, list[Insn]]) -> RegisterReport:
    """Like `check`, with nothing known of return types (as the index builder does)."""
    functions = {
        start: FunctionCode(f"f{start:x}", ((start, start + len(body)),), tuple(body))
        for start, body in code.items()
    }
    return analyse_registers(
        arch,
        functions,
        resolve=lambda a: a if a in code else None,
        reason_for=lambda caller, callee: "ipa-ra",
        arg_registers_of=lambda f: (),
    )


def test_rax_kept_across_a_callee_that_never_writes_it() -> None:
    # A callee that never writes rax cannot return a value in it (x86-64: rax is no argument
    # register), so the caller's rax is a kept value; across LEAF (writes rax) it is a result.
    void = [insn(0x100, "rdi", "rcx"), insn(0x101, flow="return")]
    caller = [
        insn(0x10, "", "rax"),
        insn(0x11, flow="call", target=0x100),
        insn(0x12, "rax", "rdx"),
        insn(0x13, flow="call", target=0x200),
        insn(0x14, "rax", "rax"),
        insn(0x15, flow="return"),
    ]
    report = analyse_unknown_returns("x86_64", {0x10: caller, 0x100: void, 0x200: LEAF})
    assert {(d.callee, d.site, d.registers) for d in report.dependents} == {(0x100, 0x11, ("rax",))}


def test_arm64_x0_is_a_result_even_when_unwritten() -> None:
    # memset returns its first argument unchanged: x0 read after `bl memset` is its result.
    # The call's own write of x30 is no kept value either.
    memset = [insn(0x100, "x0 x1 x2", "x7 x8"), insn(0x101, flow="return")]
    caller = [
        insn(0x10, "", "x0 x3"),
        insn(0x11, "", "x30", flow="call", target=0x100),
        insn(0x12, "x0 x3 x30"),
        insn(0x13, flow="return"),
    ]
    report = analyse_unknown_returns("aarch64", {0x10: caller, 0x100: memset})
    assert {(d.callee, d.site, d.registers) for d in report.dependents} == {(0x100, 0x11, ("x3",))}


# --- the Debian kernel (opt-in) -------------------------------------------------------------

CORPUS = os.environ.get("KLP_CORPUS_DIR")
corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")


def analyse_corpus(
    arch_dir: str, names: list[str], reasons: dict[tuple[str, str], DependencyReason]
) -> tuple[RegisterReport, dict[str, int], dict[int, str]]:
    """Analyse a few named functions of a corpus vmlinux; other callees get the ABI set."""
    assert CORPUS is not None
    arch = "x86_64" if arch_dir == "amd64" else "aarch64"
    with (Path(CORPUS) / arch_dir / "vmlinux").open("rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        base, offset = text["sh_addr"], text["sh_offset"]
        symbols: dict[str, tuple[int, int]] = {}
        thunks: dict[int, str] = {}
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s.name in ("__fentry__", "__x86_return_thunk") or s.name.startswith(
                "__x86_indirect_thunk_"
            ):
                thunks[s["st_value"]] = s.name
            # Asm code labels such as __thunk_restore are NOTYPE symbols with a size.
            if s["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE") and s["st_size"] > 0:
                symbols.setdefault(s.name, (s["st_value"], s["st_size"]))
        decoder = Decoder(arch, thunks)
        functions = {}
        for name in names:
            start, size = symbols[name]
            f.seek(offset + start - base)
            insns = decoder.decode(f.read(size), start)
            functions[start] = FunctionCode(name, ((start, start + size),), insns)
    by_start = {start: name for name, (start, _) in symbols.items()}
    starts = sorted(by_start)

    def resolve(address: int) -> int | None:
        i = bisect.bisect_right(starts, address) - 1
        return starts[i] if i >= 0 else None

    report = analyse_registers(
        arch,
        functions,
        resolve=resolve,
        reason_for=lambda c, g: reasons.get((by_start[c], by_start.get(g, ""))),
    )
    return report, {n: symbols[n][0] for n in names}, by_start


@corpus
def test_corpus_bitmap_weight_relies_on_sw_hweight64() -> None:
    report, addr, _ = analyse_corpus(
        "amd64",
        ["__bitmap_weight", "__sw_hweight64"],
        {("__bitmap_weight", "__sw_hweight64"): "custom-convention"},
    )
    assert report.uses[addr["__sw_hweight64"]].clobbers == {"rax"}
    found = {d.site: d.registers for d in report.dependents}
    # KERNEL_FACTS' block-local scan saw r8, rdx, r9; the loop exit also reads rcx, rsi, r10.
    assert found[0xFFFFFFFF815971DD] == ("rcx", "rdx", "rsi", "r8", "r9", "r10")
    assert found[0xFFFFFFFF81597201] == ("r8",)


@corpus
def test_corpus_static_call_thunk_preserves_everything() -> None:
    # sg_miter_stop calls preempt_schedule through the static call trampoline, which jumps to
    # preempt_schedule_thunk (saves all, restores in __thunk_restore): sg_miter_skip, in the
    # same IPA-RA CU (lib/scatterlist.c), keeps rsi, rdi, r9, r10 across sg_miter_stop.
    names = [
        "sg_miter_skip",
        "sg_miter_stop",
        "__SCT__preempt_schedule",
        "preempt_schedule_thunk",
        "__thunk_restore",
    ]
    report, addr, _ = analyse_corpus("amd64", names, {("sg_miter_skip", "sg_miter_stop"): "ipa-ra"})
    assert report.uses[addr["preempt_schedule_thunk"]].clobbers == frozenset()
    skip = addr["sg_miter_skip"]
    relied = {(d.callee, d.registers) for d in report.dependents if d.caller == skip}
    assert (addr["sg_miter_stop"], ("rsi", "rdi", "r9", "r10")) in relied


@corpus
def test_corpus_arm64_mast_fill_bnode() -> None:
    report, _, _ = analyse_corpus(
        "arm64",
        ["mast_fill_bnode", "mas_leaf_max_gap"],
        {("mast_fill_bnode", "mas_leaf_max_gap"): "ipa-ra"},
    )
    found = {d.site: d.registers for d in report.dependents}
    # x13 is set at ...28fc and read at ...2aec, after `bl mas_leaf_max_gap` at ...2ae4.
    assert "x13" in found[0xFFFF800008B82AE4]


def test_direct_clobbers_exclude_registers_restored_at_returns() -> None:
    prog = program("regs-x86_64-O2")
    start = prog.addr("sw_weight")
    facts = analyse_function("x86_64", start, prog.functions[start], resolve=lambda a: None)
    assert facts.direct_clobbers == {"rax"} and facts.writes == {"rax", "rdx", "rdi"}
