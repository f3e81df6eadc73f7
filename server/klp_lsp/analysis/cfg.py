"""Control-flow graph of one function's machine code: basic blocks, successors, exits.

Pure: input is the function's decoded `Insn`s (all of its ranges, e.g. `foo` and `foo.cold`
given together), output plain values. Decisions, each chosen so that liveness never invents a
register dependency that the code does not have:

- A direct jump to exactly the end of one of the function's ranges, where no function starts
  (`is_function_start`), is GCC's `__builtin_unreachable()`: the label after the last
  instruction, which the `default: unreachable();` of a compare-tree switch branches to
  (`b.ne` to the alignment `nop` after `__kvm_nvhe___vgic_v3_read_ap0rn`, arch/arm64/kvm/hyp/
  vgic-v3-sr.c). The path never runs, so the block gets no successor and no tail call; taken
  as a tail call to an unknown function it gave the function the whole ABI clobber set. A jump
  to a function that starts right at the end (`jmp rdtgroup_exit` at the end of
  `resctrl_exit`) stays a tail call; without `is_function_start` every such jump does.
- A direct jump that leaves the function's ranges is a tail call (block exit); the index
  builder should give a `.cold` part as a range of its parent so that the jump into it and the
  jump back are intra-function flow. A `.cold` part analysed on its own sees its jumps back as
  tail calls, so registers live only on its path are missed, never added.
- x86 `jmp [index*8 + table]` with a `cmp index, N; ja` bound is resolved through `read_pointer`.
- arm64 GCC switch tables are resolved through `read_pointer` too: `adrp xT, table; add xT, xT,
  #lo12; ldrb/ldrh/ldr wE, [xT, wN, uxtw #s]; adr xB, base; add xD, xB, wE, sxtb/sxth/sxtw #2;
  br xD`, each case at `base + 4 * entry`, bounded by `cmp wN, #K` with `b.hi`/`b.hs` falling
  through to the load or `b.ls`/`b.lo` jumping to a straight run that reaches it. A table whose
  address or bound is not in that shape (base hoisted into a callee-saved register, bound on
  another path) is left unresolved.
  Any other indirect jump: if the function has blocks that no known edge reaches, it is taken
  as a jump-table dispatch to exactly those blocks; otherwise it is an indirect tail call.
  Treating an unknown jump as "every register live" would make every call before it look like
  a dependency; the orphan-block rule only adds liveness of code nothing else can reach.
- A call to a callee in `noreturn` ends its block; `ud2`/`int3`/`brk` end their block with no
  successor (the kernel resumes after a WARN's trap, but GCC then also jumps back from the
  warning block, so the registers live there are live on the normal path as well).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from klp_lsp.binary.disasm import BLOCK_ENDING_FLOWS, Insn


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
    noreturn: Collection[int],
) -> tuple[int, ...] | None:
    insn = insns[at]
    if read_pointer is None:
        return None
    if insn.table is None:
        return _resolve_a64_table(insns, at, ranges, read_pointer, noreturn)
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


_A64_REG = re.compile(r"^[wx](\d+)$")
_A64_LOAD = re.compile(r"^([wx]\d+), \[(x\d+), ([wx]\d+)(?:, (uxtw|lsl)(?: #(\d))?)?\]$")
_A64_ADD_EXT = re.compile(r"^(x\d+), (x\d+), (w\d+), (sxtb|sxth|sxtw|uxtb|uxth|uxtw) #2$")
_A64_ADDR = re.compile(r"^(x\d+), #(0x[0-9a-f]+|\d+)$")
_A64_ADD_IMM = re.compile(r"^(x\d+), (x\d+), #(0x[0-9a-f]+|\d+)$")
_A64_ENTRY_SIZES = {"ldrb": 1, "ldrh": 2, "ldr": 4, "ldrsb": 1, "ldrsh": 2, "ldrsw": 4}
_A64_ADD_EXT_BITS = {"sxtb": 8, "sxth": 16, "sxtw": 32, "uxtb": 8, "uxth": 16, "uxtw": 32}
# Branch after `cmp idx, #K`: (taken when the index is out of range, entries for K).
_A64_BOUND_BRANCHES = {"b.hi": (True, 1), "b.hs": (True, 0), "b.ls": (False, 1), "b.lo": (False, 0)}
_A64_SCAN = 64  # instructions searched back from the dispatch for its table and bound


def _a64_reg(name: str) -> str | None:
    """Full-width name of an integer register operand (`w3` -> `x3`)."""
    m = _A64_REG.match(name)
    return f"x{m.group(1)}" if m else None


def _a64_imm(text: str) -> int:
    return int(text, 0)


def _a64_find_def(insns: Sequence[Insn], at: int, reg: str, stop: int) -> int | None:
    """Index of the last instruction before insns[at] (not before `stop`) that writes reg."""
    for i in range(at - 1, max(stop, -1), -1):
        if reg in insns[i].writes:
            return i
        if insns[i].flow != "fallthrough":
            return None
    return None


def _a64_table_address(insns: Sequence[Insn], load: int, base: str, stop: int) -> int | None:
    """Address in `base` at insns[load], from `adrp base, #page; add base, base, #lo12`."""
    i = _a64_find_def(insns, load, base, stop)
    if i is None or insns[i].mnemonic != "add":
        return None
    m = _A64_ADD_IMM.match(insns[i].op_str)
    if m is None or m.group(1) != base or m.group(2) != base:
        return None
    j = _a64_find_def(insns, i, base, stop)
    if j is None or insns[j].mnemonic != "adrp":
        return None
    page = _A64_ADDR.match(insns[j].op_str)
    if page is None or page.group(1) != base:
        return None
    return _a64_imm(page.group(2)) + _a64_imm(m.group(3))


def _a64_cmp_bound(insns: Sequence[Insn], branch: int, index: str) -> int | None:
    """Entries allowed by `cmp index, #K` right before the bound branch at insns[branch]."""
    if branch < 1 or insns[branch].mnemonic not in _A64_BOUND_BRANCHES:
        return None
    cmp = insns[branch - 1]
    parts = [p.strip() for p in cmp.op_str.split(",")]
    if cmp.mnemonic != "cmp" or len(parts) != 2 or _a64_reg(parts[0]) != index:
        return None
    if not parts[1].startswith("#"):
        return None
    try:
        k = _a64_imm(parts[1][1:])
    except ValueError:
        return None
    return k + _A64_BOUND_BRANCHES[insns[branch].mnemonic][1]


def _a64_bound(
    insns: Sequence[Insn], load: int, index: str, noreturn: Collection[int]
) -> int | None:
    """Entries of the table loaded at insns[load], from its `cmp index, #K; b.hi/b.ls` check.

    The check guards the straight run that ends at the load and leaves the index unchanged:
    either it falls through into the run (`b.hi`/`b.hs` taken out of range) or it jumps into it
    (`b.ls`/`b.lo` taken in range). Every way into the run must be such a check, and all must
    agree; a path that reaches the load unchecked leaves the table unresolved.
    """
    run = load
    in_run = {insns[load].address: index}  # address -> the index register there
    while run > 0 and load - run < _A64_SCAN:
        prev = insns[run - 1]
        if prev.flow != "fallthrough":
            break
        if index in prev.writes:
            # `mov w7, w5`: the check is on the copied register.
            parts = [p.strip() for p in prev.op_str.split(",")]
            source = _a64_reg(parts[1]) if prev.mnemonic == "mov" and len(parts) == 2 else None
            if source is None or _a64_reg(parts[0]) != index:
                break
            index = source
        run -= 1
        in_run[insns[run].address] = index
    if run == 0:
        return None  # Reached from the function's entry unchecked.
    bounds: set[int | None] = set()
    prev = insns[run - 1]
    ends = prev.flow in ("jump", "return", "indirect-jump", "trap")
    if not ends and not (prev.flow == "call" and prev.target in noreturn):
        fall = _a64_cmp_bound(insns, run - 1, index)
        bounds.add(fall if fall is not None and _A64_BOUND_BRANCHES[prev.mnemonic][0] else None)
    for n, insn in enumerate(insns):
        if insn.flow in ("jump", "cond-jump") and insn.target in in_run:
            taken = _a64_cmp_bound(insns, n, in_run[insn.target])
            in_range = taken is not None and not _A64_BOUND_BRANCHES[insn.mnemonic][0]
            bounds.add(taken if in_range else None)
    # Every way into the run is a check, and they agree.
    return bounds.pop() if len(bounds) == 1 else None


def _read_entry(read_pointer: Callable[[int], int | None], address: int, size: int) -> int | None:
    """A little-endian `size`-byte value at address, through the 8-byte reader."""
    value = read_pointer(address)
    if value is not None:
        return value & ((1 << (8 * size)) - 1)
    # The last entries of a section: read the 8 bytes that end with this entry.
    value = read_pointer(address + size - 8)
    return None if value is None else value >> (8 * (8 - size))


def _resolve_a64_table(
    insns: Sequence[Insn],
    at: int,
    ranges: Sequence[tuple[int, int]],
    read_pointer: Callable[[int], int | None],
    noreturn: Collection[int],
) -> tuple[int, ...] | None:
    """Cases of the GCC switch table dispatched by `br` at insns[at] (module docstring)."""
    parts = [p.strip() for p in insns[at].op_str.split(",")]
    if insns[at].mnemonic != "br" or len(parts) != 1:
        return None
    stop = at - _A64_SCAN
    add = _a64_find_def(insns, at, parts[0], stop)
    m = _A64_ADD_EXT.match(insns[add].op_str) if add is not None else None
    if add is None or m is None or insns[add].mnemonic != "add":
        return None
    base_reg, entry_reg, extend = m.group(2), _a64_reg(m.group(3)), m.group(4)
    adr = _a64_find_def(insns, add, base_reg, stop)
    if adr is None or insns[adr].mnemonic != "adr":
        return None
    base = _A64_ADDR.match(insns[adr].op_str)
    load = _a64_find_def(insns, add, entry_reg, stop) if entry_reg is not None else None
    if base is None or base.group(1) != base_reg or load is None:
        return None
    size = _A64_ENTRY_SIZES.get(insns[load].mnemonic)
    ld = _A64_LOAD.match(insns[load].op_str)
    if size is None or ld is None or _a64_reg(ld.group(1)) != entry_reg:
        return None
    shift = int(ld.group(5) or 0)
    index = _a64_reg(ld.group(3))
    if (1 << shift) != size or index is None:
        return None
    table = _a64_table_address(insns, load, ld.group(2), stop)
    count = _a64_bound(insns, load, index, noreturn)
    if table is None or count is None or count <= 0 or count > 4096:
        return None
    bits = _A64_ADD_EXT_BITS[extend]
    signed = extend.startswith("s")
    origin = _a64_imm(base.group(2))
    targets: list[int] = []
    for n in range(count):
        entry = _read_entry(read_pointer, table + size * n, size)
        if entry is None:
            return None
        entry &= (1 << bits) - 1
        if signed and entry >> (bits - 1):
            entry -= 1 << bits
        target = (origin + 4 * entry) & 0xFFFFFFFFFFFFFFFF
        if not _in_ranges(target, ranges):
            return None
        targets.append(target)
    return tuple(dict.fromkeys(targets))


def tail_call_target(
    target: int | None,
    ranges: Sequence[tuple[int, int]],
    is_function_start: Callable[[int], bool] | None = None,
) -> int | None:
    """The function a direct jump to `target` tail-calls; None when the jump stays inside the
    ranges or goes to `__builtin_unreachable()` at the end of one (module docstring)."""
    if target is None or _in_ranges(target, ranges):
        return None
    if (
        is_function_start is not None
        and any(target == hi for _lo, hi in ranges)
        and not is_function_start(target)
    ):
        return None
    return target


def build_cfg(
    insns: Sequence[Insn],
    ranges: Sequence[tuple[int, int]],
    *,
    noreturn: Collection[int] = frozenset(),
    read_pointer: Callable[[int], int | None] | None = None,
    is_function_start: Callable[[int], bool] | None = None,
) -> Cfg:
    """Split a function's instructions (sorted by address) into blocks and link them."""
    if not insns:
        return Cfg(entry=ranges[0][0] if ranges else 0, blocks={})
    by_address = {insn.address: i for i, insn in enumerate(insns)}
    leaders: set[int] = {insns[0].address}
    tables: dict[int, tuple[int, ...]] = {}
    for i, insn in enumerate(insns):
        ends = insn.flow in BLOCK_ENDING_FLOWS or (insn.flow == "call" and insn.target in noreturn)
        if ends and i + 1 < len(insns):
            leaders.add(insns[i + 1].address)
        if insn.flow in ("jump", "cond-jump") and insn.target in by_address:
            leaders.add(insn.target)
        if insn.flow == "indirect-jump":
            resolved = _resolve_table(insns, i, ranges, read_pointer, noreturn)
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
            else:
                tail_call = tail_call_target(last.target, ranges, is_function_start)
        elif last.flow == "cond-jump":
            if last.target in raw:
                succ.append(last.target)
            else:
                tail_call = tail_call_target(last.target, ranges, is_function_start)
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


def never_returns(cfg: Cfg, noreturn: Collection[int] = frozenset()) -> bool:
    """True when no block of the function returns or leaves it (GCC infers noreturn).

    GCC's ipa-pure-const marks a function that cannot return (every path ends in `panic()`,
    `BUG()` or another noreturn call) as noreturn without `DW_AT_noreturn`, and then emits
    nothing after the calls to it in the same CU. `noreturn` holds the starts of callees known
    not to return: a call to one ends a path, and so does a tail call to one.

    Every block counts, reached by a decoded edge or not: the image holds code that only
    run-time patching reaches. `asm goto` branches of alternatives and static keys
    (arch/arm64/include/asm/alternative-macros.h) are a `b` or a `nop` in the image, so in
    `__kvm_nvhe___tlb_switch_to_host` the decoded edges lead only to a `brk` while the kernel
    patches the `b` away and returns; the code after a WARN's `ud2`/`brk` runs too. An indirect
    jump whose targets were guessed (`guessed_targets`) may be an indirect tail call (`jmp
    __x86_indirect_thunk_rax` in a function with unreached blocks after an `int3`), and a
    block that runs off the decoded code, or ends in an instruction the CFG cannot follow,
    counts as a way out: when in doubt, the function returns.
    """
    if not cfg.blocks:
        return False
    for block in cfg.blocks.values():
        last = block.insns[-1]
        if last.flow == "return" or block.indirect_tail_call or block.guessed_targets:
            return False
        if block.tail_call is not None and block.tail_call not in noreturn:
            return False
        if not block.successors and block.tail_call is None and not _ends_path(last, noreturn):
            return False
    return True


def _ends_path(last: Insn, noreturn: Collection[int]) -> bool:
    """Whether a block with no successor ends a path that never comes back: a trap, a call to
    `noreturn`, or a jump to `__builtin_unreachable()` at the end of the function (a direct
    jump that is neither a successor nor a tail call, `tail_call_target`)."""
    if last.flow == "trap":
        return True
    if last.flow == "call":
        return last.target in noreturn
    return last.flow == "jump"
