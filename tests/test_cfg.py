"""arm64 switch tables in the CFG, on the arm64 fixture kernel and (opt-in) the Debian vmlinux.

`demo_op` (tests/fixtures/src/demo.c, `aarch64-linux-gnu-objdump -d`):

    ffff800008000528: cmp  w0, #0xf
    ffff80000800052c: b.ls ffff800008000538
    ffff800008000540: adrp x3, ffff800008001000
    ffff800008000548: add  x3, x3, #0x7c
    ffff80000800054c: ldrb w3, [x3, w0, uxtw]
    ffff800008000550: adr  x0, ffff80000800055c
    ffff800008000554: add  x3, x0, w3, sxtb #2
    ffff800008000558: br   x3

and the 16 table bytes at ffff80000800107c: 01 00 05 08 0b 0e 13 15 19 1c 1f 25 2a 2e 35 3b.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from klp_fixtures import corpus_dir, fixture_binary

from klp_lsp.analysis.cfg import Block, Cfg, build_cfg
from klp_lsp.binary.disasm import Decoder, Insn
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import BinaryFormatError

DEMO_BR = 0xFFFF800008000558
DEMO_BASE = 0xFFFF80000800055C
DEMO_TABLE = 0xFFFF80000800107C
DEMO_ENTRIES = (1, 0, 5, 8, 11, 14, 19, 21, 25, 28, 31, 37, 42, 46, 53, 59)


def _reader(binary: ElfBinary, limit: int | None = None) -> Callable[[int], int | None]:
    """8-byte little-endian reader of the image; `limit` makes bytes from it unreadable."""

    def read_pointer(address: int) -> int | None:
        if limit is not None and address + 8 > limit:
            return None
        try:
            value: int = struct.unpack("<Q", binary.read_code(address, 8))[0]
        except (BinaryFormatError, struct.error):
            return None
        return value

    return read_pointer


def _function(binary: ElfBinary, name: str) -> tuple[tuple[Insn, ...], tuple[tuple[int, int]]]:
    (sym,) = [s for s in binary.iter_function_symbols() if s.name == name]
    code = binary.read_code(sym.address, sym.size)
    return Decoder("aarch64").decode(code, sym.address), ((sym.address, sym.address + sym.size),)


def _dispatch(cfg: Cfg, address: int) -> Block:
    (block,) = [b for b in cfg.blocks.values() if b.insns[-1].address == address]
    return block


@pytest.fixture(scope="module")
def arm64() -> ElfBinary:
    return ElfBinary.open(fixture_binary("arm64"))


def test_demo_op_table_resolved(arm64: ElfBinary) -> None:
    insns, ranges = _function(arm64, "demo_op")
    block = _dispatch(build_cfg(insns, ranges, read_pointer=_reader(arm64)), DEMO_BR)
    assert block.jump_table and not block.guessed_targets and not block.indirect_tail_call
    assert block.successors == tuple(DEMO_BASE + 4 * e for e in DEMO_ENTRIES)


def test_demo_op_liveness_reaches_the_cases(arm64: ElfBinary) -> None:
    insns, ranges = _function(arm64, "demo_op")
    cfg = build_cfg(insns, ranges, read_pointer=_reader(arm64))
    # Every case block is reached from the dispatch and from nothing else.
    cases = set(_dispatch(cfg, DEMO_BR).successors)
    others = {
        s for b in cfg.blocks.values() if b.insns[-1].address != DEMO_BR for s in b.successors
    }
    assert cases.isdisjoint(others - cases) and len(cases) == 16
    assert all(c in cfg.blocks for c in cases)


def test_table_at_the_end_of_readable_bytes(arm64: ElfBinary) -> None:
    """The last entries are read through the 8 bytes that end with them."""
    insns, ranges = _function(arm64, "demo_op")
    reader = _reader(arm64, limit=DEMO_TABLE + len(DEMO_ENTRIES))
    block = _dispatch(build_cfg(insns, ranges, read_pointer=reader), DEMO_BR)
    assert block.successors == tuple(DEMO_BASE + 4 * e for e in DEMO_ENTRIES)


def _without(insns: Sequence[Insn], address: int) -> list[Insn]:
    """The function with the instruction at `address` made a `nop` that names no register."""
    return [
        i._replace(mnemonic="nop", op_str="", reads=frozenset(), writes=frozenset())
        if i.address == address
        else i
        for i in insns
    ]


def test_unresolved_without_reader_or_bound(arm64: ElfBinary) -> None:
    insns, ranges = _function(arm64, "demo_op")
    # No reader: the cases are the orphan blocks, as before.
    assert _dispatch(build_cfg(insns, ranges), DEMO_BR).guessed_targets
    # No `cmp w0, #0xf` before the `b.ls`: the table size is unknown, nothing is read.
    unbounded = _without(insns, 0xFFFF800008000528)
    block = _dispatch(build_cfg(unbounded, ranges, read_pointer=_reader(arm64)), DEMO_BR)
    assert not block.jump_table and block.guessed_targets
    # The index rewritten between the check and the load: not the checked value.
    rewritten = list(insns)
    at = next(n for n, i in enumerate(insns) if i.address == 0xFFFF800008000544)
    rewritten[at] = insns[at]._replace(op_str="x0, sp", writes=frozenset(("x0",)))
    block = _dispatch(build_cfg(rewritten, ranges, read_pointer=_reader(arm64)), DEMO_BR)
    assert not block.jump_table


def test_case_outside_the_function_is_not_a_table(arm64: ElfBinary) -> None:
    insns, ranges = _function(arm64, "demo_op")
    # Cut the function after its first case: later cases fall outside its ranges.
    short = ((ranges[0][0], DEMO_BASE + 8),)
    kept = [i for i in insns if i.address < short[0][1]]
    block = _dispatch(build_cfg(kept, short, read_pointer=_reader(arm64)), DEMO_BR)
    assert not block.jump_table


# --- the Debian arm64 vmlinux (opt-in) -----------------------------------------------------

CORPUS = corpus_dir()
corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian corpus")


@pytest.fixture(scope="module")
def debian() -> ElfBinary:
    assert CORPUS is not None
    return ElfBinary.open(Path(CORPUS) / "arm64" / "vmlinux")


@corpus
@pytest.mark.parametrize(
    ("name", "br", "cases"),
    [
        # ldrh table of 75 entries (49 distinct cases): `cmp w0, #0x4a; b.ls` jumps to the
        # `adrp` after a `ret`.
        ("sk_setsockopt", 0xFFFF800008925F58, 49),
        # `cmp w5, #0x1f; b.hi`, then `mov w7, w5` and the load indexed by w7.
        ("__arm64_sys_keyctl", 0xFFFF8000085239CC, 30),
        # `sub w3, w3, #1; cmp w3, #0xe; b.ls` far ahead of a second table after a `br`.
        ("__debug_save_state", 0xFFFF800008083830, 15),
        ("do_con_write", 0xFFFF8000087E7988, 25),
    ],
)
def test_debian_tables(debian: ElfBinary, name: str, br: int, cases: int) -> None:
    insns, ranges = _function(debian, name)
    block = _dispatch(build_cfg(insns, ranges, read_pointer=_reader(debian)), br)
    assert block.jump_table and len(block.successors) == cases


@corpus
@pytest.mark.parametrize(
    ("name", "br"),
    [
        # Table address spilled to the stack (`ldr x0, [sp, #96]`): not followed.
        ("apply_relocate_add", 0xFFFF80000802CE3C),
        # Also reached by `b ffff8000087e6620` from a path with no bound check.
        ("do_con_write", 0xFFFF8000087E6634),
    ],
)
def test_debian_tables_left_unresolved(debian: ElfBinary, name: str, br: int) -> None:
    insns, ranges = _function(debian, name)
    block = _dispatch(build_cfg(insns, ranges, read_pointer=_reader(debian)), br)
    assert not block.jump_table and block.guessed_targets
