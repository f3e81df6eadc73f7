"""Decoding: folded reads/writes, capstone's AArch64 fixes, flow kinds, thunks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from klp_lsp.binary.abi import ALL_LANES, LANE_HIGH_BYTE, LANE_LOW
from klp_lsp.binary.disasm import Decoder, Insn, clear_encoding_cache, decode_function

REGS = Path(__file__).parent / "fixtures" / "regs"


def a64(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


def one(arch: str, code: bytes, address: int = 0x1000) -> Insn:
    (insn,) = decode_function(arch, code, address)
    return insn


@pytest.mark.parametrize(
    ("word", "reads", "writes"),
    [
        # Capstone 5 reports these destinations as read too (SBFM/UBFM aliases).
        (0x93407C20, {"x1"}, {"x0"}),  # sxtw x0, w1
        (0xD343FC84, {"x4"}, {"x4"}),  # lsr x4, x4, #3: the source is the same register
        (0xD3442C62, {"x3"}, {"x2"}),  # ubfx x2, x3, #4, #8
        # ... and the first operand of compares as written.
        (0xEB02003F, {"x1", "x2"}, set()),  # cmp x1, x2
        (0xF240043F, {"x1"}, set()),  # tst x1, #3
        # A bit-field insert really reads its destination.
        (0xB37D0C41, {"x1", "x2"}, {"x1"}),  # bfi x1, x2, #3, #4
        (0xD65F03C0, {"x30"}, set()),  # ret reads the link register
        (0xAA0003F3, {"x0"}, {"x19"}),  # mov x19, x0
    ],
)
def test_aarch64_operand_access(word: int, reads: set[str], writes: set[str]) -> None:
    insn = one("aarch64", a64(word))
    assert (set(insn.reads), set(insn.writes)) == (reads, writes)


def test_aarch64_stack_saves() -> None:
    stp, ldp = decode_function("aarch64", a64(0xA90153F3, 0xA94153F3), 0x1000)
    assert stp.saves == {"x19", "x20"} and not stp.restores
    assert ldp.restores == {"x19", "x20"} and ldp.writes == {"x19", "x20"}


@pytest.mark.parametrize(
    ("word", "flow", "target"),
    [
        (0x94000040, "call", 0x1100),  # bl .+0x100
        (0xD63F0060, "indirect-call", None),  # blr x3
        (0xD61F0080, "indirect-jump", None),  # br x4
        (0xD4210000, "trap", None),  # brk #0x800
        (0xB4000041, "cond-jump", 0x1008),  # cbz x1, .+8
        (0xD65F03C0, "return", None),
    ],
)
def test_aarch64_flow(word: int, flow: str, target: int | None) -> None:
    insn = one("aarch64", a64(word))
    assert (insn.flow, insn.target) == (flow, target)


@pytest.mark.parametrize(
    ("code", "reads", "writes"),
    [
        ("31c0", set(), {"rax"}),  # xor eax, eax: a zeroing idiom reads nothing
        ("0f1f00", set(), set()),  # nop dword ptr [rax]
        ("4489c0", {"r8"}, {"rax"}),  # mov eax, r8d
        ("88c1", {"rax"}, {"rcx"}),  # mov cl, al
        ("4889c3", {"rax"}, {"rbx"}),  # mov rbx, rax
        ("c3", set(), set()),  # ret: rsp is never reported
    ],
)
def test_x86_access(code: str, reads: set[str], writes: set[str]) -> None:
    insn = one("x86_64", bytes.fromhex(code))
    assert (set(insn.reads), set(insn.writes)) == (reads, writes)


@pytest.mark.parametrize(
    ("code", "reads", "writes", "lanes"),
    [
        # setne dl: the low byte only; bits 8-63 of rdx keep their old value.
        ("0f95c2", set(), {"rdx"}, (("rdx", 0, LANE_LOW),)),
        # movzx edx, dl: reads the low byte, replaces the whole register.
        ("0fb6d2", {"rdx"}, {"rdx"}, (("rdx", LANE_LOW, ALL_LANES),)),
        # mov al, [rdi]; mov [rdi], al; mov ah, 1; mov ax, [rdi]
        ("8a07", {"rdi"}, {"rax"}, (("rax", 0, LANE_LOW),)),
        ("8807", {"rdi", "rax"}, set(), (("rax", LANE_LOW, 0),)),
        ("b401", set(), {"rax"}, (("rax", 0, LANE_HIGH_BYTE),)),
        ("668b07", {"rdi"}, {"rax"}, (("rax", 0, LANE_LOW | LANE_HIGH_BYTE),)),
        # xor dl, dl: a zeroing idiom on the low byte reads nothing and keeps the rest.
        ("30d2", set(), {"rdx"}, (("rdx", 0, LANE_LOW),)),
        # mov edx, eax and mov rdx, rax replace rdx whole: no lanes.
        ("89c2", {"rax"}, {"rdx"}, ()),
        # and r8d, 1: only the low byte of r8 is read; and eax, 0xff00 only bits 8-15.
        ("4183e001", {"r8"}, {"r8"}, (("r8", LANE_LOW, ALL_LANES),)),
        ("2500ff0000", {"rax"}, {"rax"}, (("rax", LANE_HIGH_BYTE, ALL_LANES),)),
        # bt ecx, edx: the bit offset modulo 32, from the low byte of rdx.
        ("0fa3d1", {"rcx", "rdx"}, set(), (("rdx", LANE_LOW, 0),)),
        # cmovne eax, edx: the old eax survives when the condition fails (a read).
        ("0f45c2", {"rdx", "rax"}, {"rax"}, ()),
        # cmovne ax, dx: and only the low 16 bits are written.
        ("660f45c2", {"rdx", "rax"}, {"rax"}, (("rax", 3, 3), ("rdx", 3, 0))),
        # lock cmpxchg [rdi], rdx: loads the old value into rax when the compare fails.
        ("f0480fb117", {"rax", "rdi", "rdx"}, {"rax"}, ()),
        # cmpxchg [rdi], dl: into al only.
        ("0fb017", {"rax", "rdi", "rdx"}, {"rax"}, (("rax", LANE_LOW, LANE_LOW), ("rdx", 1, 0))),
    ],
)
def test_x86_partial_and_conditional_writes(
    code: str, reads: set[str], writes: set[str], lanes: tuple[tuple[str, int, int], ...]
) -> None:
    insn = one("x86_64", bytes.fromhex(code))
    assert (set(insn.reads), set(insn.writes), insn.lanes) == (reads, writes, lanes)


@pytest.mark.parametrize(
    ("code", "copies"),
    [
        ("4489d7", (("rdi", "r10"),)),  # mov edi, r10d
        ("21d0", (("rax", "rdx"), ("rax", "rax"))),  # and eax, edx
        ("88c2", (("rdx", "rax"),)),  # mov dl, al
        ("88e2", ()),  # mov dl, ah: bits 8-15 to bits 0-7
        ("31c0", ()),  # xor eax, eax reads nothing
        ("4801d0", ()),  # add rax, rdx: carries cross lanes
        ("480fb6c2", ()),  # movzx rax, dl
    ],
)
def test_x86_lanewise_copies(code: str, copies: tuple[tuple[str, str], ...]) -> None:
    assert one("x86_64", bytes.fromhex(code)).copies == copies


def test_x86_flow_and_tables() -> None:
    push, pop, jmp, ud2 = decode_function("x86_64", bytes.fromhex("535bff24fd80a047000f0b"), 0)
    assert push.saves == {"rbx"} and pop.restores == {"rbx"}
    assert jmp.flow == "indirect-jump" and jmp.table == (0x47A080, "rdi", 8)
    assert ud2.flow == "trap"


def test_x86_thunks() -> None:
    # jmp rel32 / call rel32 to the thunks at 0x2000 and 0x3000.
    thunks = {0x2000: "__x86_return_thunk", 0x3000: "__x86_indirect_thunk_r11"}
    decoder = Decoder("x86_64", thunks)
    code = bytes.fromhex("e9fb0f0000") + bytes.fromhex("e8f61f0000") + bytes.fromhex("e9f11f0000")
    ret, icall, ijmp = decoder.decode(code, 0x1000)
    assert (ret.flow, ret.target) == ("return", None)
    assert (icall.flow, icall.target, "r11" in icall.reads) == ("indirect-call", None, True)
    assert (ijmp.flow, "r11" in ijmp.reads) == ("indirect-jump", True)


def test_cache_reuses_encodings() -> None:
    clear_encoding_cache()
    decoder = Decoder("x86_64")
    decoder.decode(bytes.fromhex("4889c3" * 50), 0)
    assert decoder.detail_decodes == 1


def _function_bytes(path: Path, name: str) -> tuple[int, bytes]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        (sym,) = elf.get_section_by_name(".symtab").get_symbol_by_name(name)
        text = elf.get_section_by_name(".text")
        lo = sym["st_value"] - text["sh_addr"]
        return sym["st_value"], text.data()[lo : lo + sym["st_size"]]


@pytest.mark.parametrize(
    ("binary", "objdump"),
    [("regs-x86_64-O2", "objdump"), ("regs-aarch64-O2", "aarch64-linux-gnu-objdump")],
)
def test_addresses_match_objdump(binary: str, objdump: str) -> None:
    if shutil.which(objdump) is None:
        pytest.skip(f"{objdump} is not installed")
    arch = "x86_64" if "x86_64" in binary else "aarch64"
    path = REGS / binary
    for name in ("chain", "dispatch", "bitmap_weight", "main"):
        start, code = _function_bytes(path, name)
        ours = [i.address for i in decode_function(arch, code, start)]
        out = subprocess.run(
            [objdump, "-d", f"--disassemble={name}", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        theirs = [
            int(line.split(":")[0], 16)
            for line in out.splitlines()
            if line.startswith("  ") and line.count("\t") >= 2
        ]
        assert ours == theirs, name


@pytest.mark.parametrize(
    ("code", "flow"),
    [
        ("3effe0", "indirect-jump"),  # notrack jmp rax
        ("f3c3", "return"),  # repz ret
        ("f2c3", "return"),  # bnd ret
        ("f30f1efa", "fallthrough"),  # endbr64
    ],
)
def test_x86_prefixes_do_not_hide_flow(code: str, flow: str) -> None:
    assert one("x86_64", bytes.fromhex(code)).flow == flow


def test_fentry_call_is_not_a_call() -> None:
    decoder = Decoder("x86_64", {0x2000: "__fentry__"})
    (insn,) = decoder.decode(bytes.fromhex("e8fb0f0000"), 0x1000)
    assert (insn.flow, insn.target) == ("fallthrough", None)


def test_cache_key_ignores_numbers() -> None:
    clear_encoding_cache()
    decoder = Decoder("x86_64")
    # mov rax, [rbp - 8]; mov rax, [rbp - 0x10]; mov rcx, [rbp - 8]
    a, b, c = decoder.decode(bytes.fromhex("488b45f8488b45f0488b4df8"), 0)
    assert decoder.detail_decodes == 2
    assert a.writes == b.writes == {"rax"} and c.writes == {"rcx"}
    assert a.reads == c.reads == {"rbp"}


def test_constant_idioms_do_not_read() -> None:
    decoder = Decoder("x86_64")
    # or rsi, 0x10; or rsi, -1; and eax, 0
    a, b, c = decoder.decode(bytes.fromhex("4883ce104883ceff83e000"), 0)
    assert a.reads == {"rsi"} and not b.reads and not c.reads
    assert a.writes == b.writes == {"rsi"} and c.writes == {"rax"}


def test_insn_record() -> None:
    """`Insn` (a NamedTuple for speed): named fields with defaults, immutable, `_replace`."""
    (call,) = Decoder("x86_64").decode(bytes.fromhex("e8fb0f0000"), 0x1000)
    assert (call.flow, call.target, call.end) == ("call", 0x2000, 0x1005)
    assert call.table is None and call.saves == call.restores == frozenset()
    ret = call._replace(flow="return", target=None)
    assert (ret.address, ret.end, ret.flow, ret.target) == (0x1000, 0x1005, "return", None)
    assert call.flow == "call"
    with pytest.raises(AttributeError):
        call.flow = "jump"  # type: ignore[misc]
    nop = Insn(0, 1, "nop", "", frozenset(), frozenset(), "fallthrough")
    assert nop.target is None and nop.table is None
    assert nop.saves == nop.restores == frozenset()


def test_decoders_of_one_architecture_share_their_encodings() -> None:
    clear_encoding_cache()
    code = bytes.fromhex("4889c3")  # mov rbx, rax
    first, second = Decoder("x86_64"), Decoder("x86_64")
    first.decode(code, 0)
    (insn,) = second.decode(code, 0)
    assert (first.detail_decodes, second.detail_decodes) == (1, 0)
    assert insn.writes == {"rbx"} and insn.reads == {"rax"}
