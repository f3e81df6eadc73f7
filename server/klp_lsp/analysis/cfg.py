"""Control-flow graph of one function's machine code: basic blocks, successors, exits.

Pure: input is the function's decoded `Insn`s (all of its ranges, e.g. `foo` and `foo.cold`
given together), output plain values. Decisions, each chosen so that liveness never invents a
register dependency that the code does not have:

- A direct jump that leaves the function's ranges is a tail call (block exit); the index
  builder should give a `.cold` part as a range of its parent so that the jump into it and the
  jump back are intra-function flow. A `.cold` part analysed on its own sees its jumps back as
  tail calls, so registers live only on its path are missed, never added.
- x86 `jmp [index*8 + table]` with a `cmp index, N; ja` bound is resolved through `read_pointer`.
  Any other indirect jump: if the function has blocks that no known edge reaches, it is taken
  as a jump-table dispatch to exactly those blocks; otherwise it is an indirect tail call.
  Treating an unknown jump as "every register live" would make every call before it look like
  a dependency; the orphan-block rule only adds liveness of code nothing else can reach.
- A call to a callee in `noreturn` ends its block; `ud2`/`int3`/`brk` end their block with no
  successor (the kernel resumes after a WARN's trap, but GCC then also jumps back from the
  warning block, so the registers live there are live on the normal path as well).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from klp_lsp.binary.disasm import Insn

_ENDS_BLOCK = frozenset(("jump", "cond-jump", "return", "indirect-jump", "trap"))


@dataclass(frozen=True, slots=True)
class Block:
    """A straight-line run of instructions with its intra-function successors."""

    start: int
    insns: tuple[Insn, ...]
    successors: tuple[int, ...]  # block starts inside the function
    # Direct tail-call target (a jump out of the function's ranges), if the block ends in one.
    tail_call: int | None = None
    # Ends in an indirect jump taken as an indirect tail call.
    indirect_tail_call: bool = False
    # Ends in an indirect jump resolved as a jump table (successors are its cases).
    jump_table: bool = False
    # Ends in an indirect jump whose targets were guessed as the orphan blocks.
    guessed_targets: bool = False


@dataclass(frozen=True, slots=True)
class Cfg:
    """The blocks of one function, keyed by start address."""

    entry: int
    blocks: dict[int, Block]

    def iter_blocks(self) -> list[Block]:
        return [self.blocks[a] for a in sorted(self.blocks)]


def _in_ranges(address: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= address < hi for lo, hi in ranges)


def _parse_cmp_bound(insn: Insn, index: str) -> int | None:
    """N for `cmp <index>, N` (Intel syntax), when the compare is on the table index."""
    if insn.mnemonic != "cmp" or index not in insn.reads:
        return None
    parts = [p.strip() for p in insn.op_str.split(",")]
    if len(parts) != 2:
        return None
    try:
        return int(parts[1], 0)
    except ValueError:
        return None


def _table_bound(insns: Sequence[Insn], at: int, index: str) -> int | None:
    """Number of entries of the table used at insns[at], from a preceding bounds check."""
    for i in range(at - 1, max(at - 10, -1), -1):
        insn = insns[i]
        if index in insn.writes and insn.mnemonic != "mov":
            return None
        bound = _parse_cmp_bound(insn, index)
        if bound is None:
            continue
        nxt = insns[i + 1] if i + 1 < len(insns) else None
        if nxt is not None and nxt.mnemonic == "ja":
            return bound + 1
        if nxt is not None and nxt.mnemonic == "jae":
            return bound
        return None
    return None


def _resolve_table(
    insns: Sequence[Insn],
    at: int,
    ranges: Sequence[tuple[int, int]],
    read_pointer: Callable[[int], int | None] | None,
) -> tuple[int, ...] | None:
    insn = insns[at]
    if insn.table is None or read_pointer is None:
        return None
    disp, index, scale = insn.table
    count = _table_bound(insns, at, index)
    if count is None or count <= 0 or count > 4096:
        return None
    targets: list[int] = []
    for i in range(count):
        value = read_pointer(disp + scale * i)
        if value is None or not _in_ranges(value, ranges):
            return None
        targets.append(value)
    return tuple(dict.fromkeys(targets))


def build_cfg(
    insns: Sequence[Insn],
    ranges: Sequence[tuple[int, int]],
    *,
    noreturn: Collection[int] = frozenset(),
    read_pointer: Callable[[int], int | None] | None = None,
) -> Cfg:
    """Split a function's instructions (sorted by address) into blocks and link them."""
    if not insns:
        return Cfg(entry=ranges[0][0] if ranges else 0, blocks={})
    by_address = {insn.address: i for i, insn in enumerate(insns)}
    leaders: set[int] = {insns[0].address}
    tables: dict[int, tuple[int, ...]] = {}
    for i, insn in enumerate(insns):
        ends = insn.flow in _ENDS_BLOCK or (insn.flow == "call" and insn.target in noreturn)
        if ends and i + 1 < len(insns):
            leaders.add(insns[i + 1].address)
        if insn.flow in ("jump", "cond-jump") and insn.target in by_address:
            leaders.add(insn.target)
        if insn.flow == "indirect-jump":
            resolved = _resolve_table(insns, i, ranges, read_pointer)
            if resolved is not None:
                tables[insn.address] = resolved
                leaders.update(t for t in resolved if t in by_address)
        # Gaps between ranges (or padding skipped by the caller) start new blocks.
        if i + 1 < len(insns) and insns[i + 1].address != insn.end:
            leaders.add(insns[i + 1].address)

    starts = sorted(leaders)
    raw: dict[int, tuple[Insn, ...]] = {}
    for n, start in enumerate(starts):
        lo = by_address[start]
        hi = by_address[starts[n + 1]] if n + 1 < len(starts) else len(insns)
        raw[start] = tuple(insns[lo:hi])

    blocks: dict[int, Block] = {}
    unresolved: list[int] = []
    for start, body in raw.items():
        last = body[-1]
        idx = by_address[last.address]
        following = insns[idx + 1].address if idx + 1 < len(insns) else None
        fall = following if following is not None and following == last.end else None
        succ: list[int] = []
        tail_call = None
        table = False
        if last.flow == "jump":
            if last.target in raw:
                succ.append(last.target)
            elif last.target is not None and not _in_ranges(last.target, ranges):
                tail_call = last.target
        elif last.flow == "cond-jump":
            if last.target in raw:
                succ.append(last.target)
            elif last.target is not None and not _in_ranges(last.target, ranges):
                tail_call = last.target
            if fall is not None:
                succ.append(fall)
        elif last.flow == "indirect-jump":
            if last.address in tables:
                succ.extend(t for t in tables[last.address] if t in raw)
                table = True
            else:
                unresolved.append(start)
        elif last.flow in ("return", "trap") or (last.flow == "call" and last.target in noreturn):
            pass  # No successor inside the function.
        elif fall is not None:
            succ.append(fall)
        blocks[start] = Block(
            start, body, tuple(dict.fromkeys(succ)), tail_call=tail_call, jump_table=table
        )

    if unresolved:
        reached = {s for b in blocks.values() for s in b.successors} | {insns[0].address}
        orphans = tuple(s for s in starts if s not in reached and _reachable_code(raw[s]))
        for start in unresolved:
            old = blocks[start]
            if orphans:
                blocks[start] = Block(start, old.insns, orphans, guessed_targets=True)
            else:
                blocks[start] = Block(start, old.insns, (), indirect_tail_call=True)
    return Cfg(entry=insns[0].address, blocks=blocks)


def _reachable_code(body: tuple[Insn, ...]) -> bool:
    """False for alignment padding that only follows a block end (nops, int3)."""
    return not all(_is_padding(i) for i in body)


def _is_padding(insn: Insn) -> bool:
    return insn.mnemonic in ("nop", "int3") or (insn.mnemonic == "xchg" and insn.op_str == "ax, ax")
