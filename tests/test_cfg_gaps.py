"""Two CFG facts GCC leaves implicit: `__builtin_unreachable()` at a function's end, and
functions it inferred noreturn (`never_returns`). Plain values, plus (opt-in) the Debian
vmlinux functions that showed them.

`__kvm_nvhe___vgic_v3_read_ap0rn` (arch/arm64/kvm/hyp/vgic-v3-sr.c, a `switch` on `n` whose
`default: unreachable();`), `aarch64-linux-gnu-objdump -d`:

    ffff800008bcb190: cmp  w0, #0x3
    ffff800008bcb194: b.ne ffff800008bcb1bc   // the end of the function: only a padding nop
    ffff800008bcb198: mrs  x0, ich_ap0r3_el2
    ...
    ffff800008bcb1b8: ret
    ffff800008bcb1bc: nop                     // not part of the symbol (size 76)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from klp_fixtures import corpus_dir

from klp_lsp.analysis.cfg import Cfg, build_cfg, never_returns, tail_call_target
from klp_lsp.binary.disasm import Decoder, Insn
from klp_lsp.binary.elf import ElfBinary


def insn(address: int, flow: str = "fallthrough", target: int | None = None) -> Insn:
    return Insn(address, 1, "op", "", frozenset(), frozenset(), flow, target)  # type: ignore[arg-type]


def cfg_of(
    body: list[Insn],
    *,
    starts: frozenset[int] | None = None,
    noreturn: frozenset[int] = frozenset(),
) -> Cfg:
    """CFG of a function [first, last + 1) whose neighbours start at `starts`."""
    ranges = ((body[0].address, body[-1].end),)
    known = None if starts is None else starts.__contains__
    return build_cfg(body, ranges, noreturn=noreturn, is_function_start=known)


# --- jumps to the end of the function -----------------------------------------------------

# The vgic shape: `b.ne end` where `end` is the first byte after the function.
UNREACHABLE_END = [
    insn(0x10, "cond-jump", 0x14),
    insn(0x11),
    insn(0x12, "return"),
    insn(0x13, "return"),
]


def test_jump_to_the_end_where_no_function_starts_never_runs() -> None:
    cfg = cfg_of(UNREACHABLE_END, starts=frozenset({0x10, 0x20}))
    block = cfg.blocks[0x10]
    assert block.tail_call is None and block.successors == (0x11,)


def test_jump_to_a_function_right_after_is_a_tail_call() -> None:
    # `jmp rdtgroup_exit` as the last instruction of `resctrl_exit` (amd64).
    cfg = cfg_of(UNREACHABLE_END, starts=frozenset({0x10, 0x14}))
    assert cfg.blocks[0x10].tail_call == 0x14


def test_without_function_starts_every_jump_out_is_a_tail_call() -> None:
    assert cfg_of(UNREACHABLE_END).blocks[0x10].tail_call == 0x14


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, None),
        (0x105, None),  # inside
        (0x110, None),  # the end of the first range: unreachable
        (0x210, None),  # the end of the second (a `.cold` part)
        (0x114, 0x114),  # past the end: a tail call
        (0x300, 0x300),  # a function start
        (0x0F0, 0x0F0),
    ],
)
def test_tail_call_target(target: int | None, expected: int | None) -> None:
    ranges = ((0x100, 0x110), (0x200, 0x210))
    assert tail_call_target(target, ranges, lambda a: a in (0x300, 0x0F0)) == expected


# --- never_returns ------------------------------------------------------------------------

PANIC = 0x900


@pytest.mark.parametrize(
    ("body", "noreturn", "expected"),
    [
        # `skb_panic`: prints, then BUG(): the trap is the last instruction.
        ([insn(0x10, "call", 0x800), insn(0x11, "trap")], (), True),
        # Ends in a call to a declared noreturn function (`panic`).
        ([insn(0x10, "call", 0x800), insn(0x11, "call", PANIC)], (PANIC,), True),
        # The same call without the fact: it may return, and it is the last instruction.
        ([insn(0x10, "call", 0x800), insn(0x11, "call", PANIC)], (), False),
        # Two paths, one returns.
        ([insn(0x10, "cond-jump", 0x12), insn(0x11, "trap"), insn(0x12, "return")], (), False),
        # A WARN: the kernel resumes after the trap, at the return.
        ([insn(0x10, "trap"), insn(0x11, "return")], (), False),
        # A tail call returns for its caller, unless it goes to a noreturn function.
        ([insn(0x10, "jump", 0x800)], (), False),
        ([insn(0x10, "jump", PANIC)], (PANIC,), True),
        # Runs off the decoded code: taken as a way out.
        ([insn(0x10), insn(0x11)], (), False),
        # An indirect jump nothing resolves: an indirect tail call.
        ([insn(0x10, "indirect-jump")], (), False),
        # An unresolved indirect jump with an unreached trap after it: the trap is taken as
        # its one case, but the jump may be an indirect tail call (a retpoline `jmp`).
        ([insn(0x10, "indirect-jump"), insn(0x11, "trap")], (), False),
        # A return no decoded edge reaches: an alternative's `b` patched at boot still counts.
        ([insn(0x10, "jump", 0x12), insn(0x11, "return"), insn(0x12, "trap")], (), False),
        # A loop with no exit (a halt loop).
        ([insn(0x10), insn(0x11, "jump", 0x10)], (), True),
    ],
)
def test_never_returns(body: list[Insn], noreturn: tuple[int, ...], expected: bool) -> None:
    cfg = cfg_of(
        body, starts=frozenset({body[0].address, 0x800, PANIC}), noreturn=frozenset(noreturn)
    )
    assert never_returns(cfg, frozenset(noreturn)) is expected


def test_unreachable_end_ends_a_path() -> None:
    # Every path but the `b.ne` to the end traps: the function never returns.
    body = [insn(0x10, "cond-jump", 0x13), insn(0x11, "call", PANIC), insn(0x12, "trap")]
    cfg = cfg_of(body, starts=frozenset({0x10}), noreturn=frozenset({PANIC}))
    assert never_returns(cfg, frozenset({PANIC}))
    # Unknown function starts: the jump is a tail call, so the function may return.
    assert not never_returns(cfg_of(body, noreturn=frozenset({PANIC})), frozenset({PANIC}))


def test_empty_cfg_returns() -> None:
    assert not never_returns(build_cfg([], ((0x10, 0x20),)))


# --- the Debian vmlinux (opt-in) ----------------------------------------------------------

CORPUS = corpus_dir()
corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian corpus")


def _debian_cfg(arch: str, name: str) -> tuple[Cfg, dict[str, int]]:
    assert CORPUS is not None
    binary = ElfBinary.open(Path(CORPUS) / arch / "vmlinux")
    symbols = binary.iter_function_symbols()
    starts = frozenset(s.address for s in symbols)
    (sym,) = [s for s in symbols if s.name == name]
    insns = Decoder(binary.arch).decode(binary.read_code(sym.address, sym.size), sym.address)
    ranges = ((sym.address, sym.address + sym.size),)
    names = {s.name: s.address for s in symbols}
    return build_cfg(insns, ranges, is_function_start=starts.__contains__), names


@corpus
@pytest.mark.parametrize(
    ("name", "branch", "fall"),
    [
        ("__kvm_nvhe___vgic_v3_read_ap0rn", 0xFFFF800008BCB194, 0xFFFF800008BCB198),
        ("__kvm_nvhe___vgic_v3_read_ap1rn", 0xFFFF800008BCB1E4, 0xFFFF800008BCB1E8),
    ],
)
def test_debian_vgic_unreachable_default(name: str, branch: int, fall: int) -> None:
    cfg, _names = _debian_cfg("arm64", name)
    (block,) = [b for b in cfg.blocks.values() if b.insns[-1].address == branch]
    assert block.tail_call is None and block.successors == (fall,)
    # Four cases, four returns, nothing leaves the function.
    assert all(b.tail_call is None and not b.indirect_tail_call for b in cfg.blocks.values())
    assert not never_returns(cfg)


@corpus
def test_debian_vhe_unreachable_default_at_the_next_function() -> None:
    """The VHE copy of `__vgic_v3_read_ap1rn` ends where `__kvm_skip_instr` starts, so its
    `b.ne` to the end looks like a tail call and stays one: only the address says otherwise."""
    cfg, _names = _debian_cfg("arm64", "__vgic_v3_read_ap1rn")
    (block,) = [b for b in cfg.blocks.values() if b.insns[-1].address == 0xFFFF80000808556C]
    assert block.tail_call == 0xFFFF800008085594  # the local `__kvm_skip_instr` of its CU


@corpus
def test_debian_tail_call_to_the_next_function() -> None:
    cfg, names = _debian_cfg("amd64", "resctrl_exit")
    assert [b.tail_call for b in cfg.blocks.values() if b.tail_call] == [names["rdtgroup_exit"]]


@corpus
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # `pr_emerg(...); BUG();`: ends in `brk #0x800` (net/core/skbuff.c).
        ("skb_panic", True),
        # `BUG()` only (kernel/sched/idle.c).
        ("prio_changed_idle", True),
        # Alternatives: the image's `b` leads only to a `brk`, but the kernel patches it.
        ("__kvm_nvhe___tlb_switch_to_host", False),
        ("__kvm_nvhe___vgic_v3_read_ap0rn", False),
    ],
)
def test_debian_arm64_never_returns(name: str, expected: bool) -> None:
    cfg, _names = _debian_cfg("arm64", name)
    assert never_returns(cfg) is expected


@corpus
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("skb_panic", True),
        # `BUG()` only: `ud2` (arch/x86/kernel/paravirt.c).
        ("paravirt_BUG", True),
        # `jmp __x86_indirect_thunk_array` (an indirect tail call) before unreached blocks.
        ("__sysvec_thermal", False),
        ("deactivate_task", False),
    ],
)
def test_debian_amd64_never_returns(name: str, expected: bool) -> None:
    cfg, _names = _debian_cfg("amd64", name)
    assert never_returns(cfg) is expected
