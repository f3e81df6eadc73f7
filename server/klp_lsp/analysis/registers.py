"""Register usage: each function's clobber set and the callers that rely on it.

Pure: the index builder hands over, per function group, `{start: FunctionCode}` (decoded
instructions of all of a function's ranges) plus callbacks for what only the index knows, and
gets `RegisterUse` and `RegisterDependent` records back (`analyse_registers`). Works on any
subset of a kernel: callees outside the subset get `default_clobbers(callee)` (the ABI set
unless the caller knows better).

Why a dependency exists (`reason_for(caller, callee)`) is the caller's call: "ipa-ra" when
both are in one CU built with IPA-RA (GCC clears flag_ipa_ra under -pg and
-fpatchable-function-entry, toplev.cc), "custom-convention" when the callee is asm or
otherwise promises more than the ABI, None when the compiler could not have relied on it; a
register found live across such a call is an analysis artefact (e.g. a noreturn callee not in
`noreturn`) and is counted in `RegisterReport.artefacts`, not reported.

A dependency through another function is reported too: if caller C keeps `rcx` across a call
to G and G calls (or tail-calls) F, C relies on F not writing `rcx` either, so the report has a
dependent with callee F, caller C and the site of the call to G.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from klp_lsp.analysis.cfg import Block, Cfg, build_cfg
from klp_lsp.binary.abi import (
    ALL_LANES,
    Abi,
    fold_register,
    get_abi,
    register_lanes,
    sort_registers,
)
from klp_lsp.binary.disasm import Insn
from klp_lsp.model import CallEdge, DependencyReason, RegisterDependent, RegisterUse

Resolver = Callable[[int], int | None]
RegsOf = Callable[[int], tuple[str, ...] | None]
ReasonFor = Callable[[int, int], DependencyReason | None]


@dataclass(frozen=True, slots=True)
class FunctionCode:
    """One function's machine code as the index builder hands it over."""

    name: str
    ranges: tuple[tuple[int, int], ...]  # [lo, hi) ranges, the entry range first
    insns: tuple[Insn, ...]  # decoded instructions of all ranges, sorted by address


@dataclass(frozen=True, slots=True)
class FunctionFacts:
    """What one function's own code says, before looking at its callees."""

    address: int
    cfg: Cfg
    # Call-clobbered registers its own code writes and does not restore at a return (a
    # push/pop or stp/ldp pair); `compute_clobbers` also follows restores in tail-called stubs.
    direct_clobbers: frozenset[str]
    callee_saved_clobbers: frozenset[str]  # callee-saved registers written without a save
    calls: tuple[CallEdge, ...]
    # Call and tail-call instruction address -> resolved callee start (None: unknown).
    call_targets: dict[int, int | None]
    # Call-clobbered registers saved in the entry block (push, stp).
    entry_saves: frozenset[str] = frozenset()
    # One (tail-call target or None for a return, registers restored in that block) per exit.
    exits: tuple[tuple[int | None, frozenset[str]], ...] = ()
    # Every call-clobbered register its own code writes, restored or not.
    writes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Artefact:
    """A register found live across a call that no compiler guarantee explains."""

    caller: int
    site: int
    callee: int | None
    registers: tuple[str, ...]
    # "no-reason": reason_for() gave None; "clobbered": the callee writes the register, so
    # it is an output of a custom convention (`__get_user_4` returns in rdx) or imprecision.
    why: str


@dataclass(frozen=True, slots=True)
class RegisterReport:
    """Everything `analyse_registers` computes for one group of functions."""

    uses: dict[int, RegisterUse]
    dependents: tuple[RegisterDependent, ...]
    artefacts: tuple[Artefact, ...]
    # Call sites where the callee's argument registers were unknown (ABI argument registers
    # were assumed, which can only add liveness before the call).
    abi_argument_fallbacks: tuple[int, ...]


def analyse_function(
    arch: str,
    address: int,
    code: FunctionCode,
    *,
    resolve: Resolver,
    noreturn: Collection[int] = frozenset(),
    read_pointer: Callable[[int], int | None] | None = None,
    is_function_start: Callable[[int], bool] | None = None,
) -> FunctionFacts:
    """Build the CFG and the function's own writes and call edges.

    `is_function_start(address)`: whether some function or code label starts there, so that a
    jump to the end of the function where none does is `__builtin_unreachable()` (cfg.py).
    """
    abi = get_abi(arch)
    cfg = build_cfg(
        code.insns,
        code.ranges,
        noreturn=noreturn,
        read_pointer=read_pointer,
        is_function_start=is_function_start,
    )
    written: set[str] = set()
    saved: set[str] = set()
    for insn in code.insns:
        written |= insn.writes
        saved |= insn.saves
    entry = cfg.blocks.get(cfg.entry)
    entry_saves = {r for i in entry.insns for r in i.saves} if entry else set()
    direct = frozenset(written & abi.call_clobbered)
    # A callee-saved register needs only the save (a noreturn function never restores).
    callee_saved = frozenset((written & abi.callee_saved) - saved - {abi.stack_pointer})

    calls: list[CallEdge] = []
    targets: dict[int, int | None] = {}
    for insn in code.insns:
        if insn.flow == "call":
            callee = resolve(insn.target) if insn.target is not None else None
            targets[insn.address] = callee
            calls.append(CallEdge(address, insn.address, callee, "call"))
        elif insn.flow == "indirect-call":
            targets[insn.address] = None
            calls.append(CallEdge(address, insn.address, None, "indirect-call"))
    for block in cfg.iter_blocks():
        last = block.insns[-1]
        if block.tail_call is not None:
            callee = resolve(block.tail_call)
            targets[last.address] = callee
            calls.append(CallEdge(address, last.address, callee, "tail-call"))
        elif block.indirect_tail_call:
            targets[last.address] = None
            calls.append(CallEdge(address, last.address, None, "indirect-jump"))
    calls.sort(key=lambda e: e.site)
    exits: list[tuple[int | None, frozenset[str]]] = []
    restored = _restored_at_block_ends(cfg)
    for block in cfg.blocks.values():
        last = block.insns[-1]
        restores = restored.get(block.start, frozenset())
        if last.flow == "return":
            exits.append((None, restores))
        elif block.tail_call is not None or block.indirect_tail_call:
            # An unknown target is recorded as the function itself: never a restore stub.
            exits.append((targets.get(last.address) or address, restores))
    facts = FunctionFacts(
        address,
        cfg,
        direct,
        callee_saved,
        tuple(calls),
        targets,
        frozenset(entry_saves & abi.call_clobbered),
        tuple(exits),
        direct,
    )
    local = _preserved({address: facts})[address]
    return dataclasses.replace(facts, direct_clobbers=direct - local)


def _restored_at_block_ends(cfg: Cfg) -> dict[int, frozenset[str]]:
    """Registers restored (`pop`, `ldp` from the frame) and not written since, at each block end.

    A forward must-analysis over the CFG: a restore in one block still counts in the blocks
    that follow it (xen_hypercall_hvm pops everything, then `je` to one tail call or falls
    through to another), and any call forgets everything, as the callee may write anything.
    """
    preds: dict[int, list[int]] = {a: [] for a in cfg.blocks}
    for a, b in cfg.blocks.items():
        for succ in b.successors:
            preds.setdefault(succ, []).append(a)

    def transfer(block: Block, state: frozenset[str]) -> frozenset[str]:
        regs = set(state)
        for insn in block.insns:
            if insn.flow in _CALLS:
                regs.clear()
            else:
                regs -= insn.writes
                regs |= insn.restores
        return frozenset(regs)

    out: dict[int, frozenset[str]] = {}
    work = sorted(cfg.blocks, reverse=True)
    while work:
        a = work.pop()
        known = [out[p] for p in preds.get(a, ()) if p in out]
        if a == cfg.entry or not known:
            state: frozenset[str] = frozenset()
        else:
            state = frozenset.intersection(*known)
        new = transfer(cfg.blocks[a], state)
        if out.get(a) != new:
            out[a] = new
            work.extend(s for s in cfg.blocks[a].successors if s in cfg.blocks and s not in work)
    return out


def _stub_restores(facts: Mapping[int, FunctionFacts], target: int) -> frozenset[str]:
    """Registers a restore stub (`__thunk_restore`) restores: it saves nothing, calls nothing
    and only returns, so what it pops are the values its tail-calling caller saved."""
    f = facts.get(target)
    if f is None or f.entry_saves or f.calls or not f.exits:
        return frozenset()
    if any(t is not None for t, _ in f.exits):
        return frozenset()
    return frozenset.intersection(*(r for _, r in f.exits))


def _preserved(facts: Mapping[int, FunctionFacts]) -> dict[int, frozenset[str]]:
    """Call-clobbered registers each function saves at entry and restores at every exit.

    Such registers are not clobbered even when callees write them, like rdi/rdx in the
    kernel's __sw_hweight64 or everything in preempt_schedule_thunk, which restores through a
    tail call to the restore stub `__thunk_restore` (arch/x86/entry/thunk_64.S).
    """

    return {a: _preserved_by(facts, f) for a, f in facts.items()}


def _preserved_by(facts: Mapping[int, FunctionFacts], f: FunctionFacts) -> frozenset[str]:
    """`_preserved` of one function (`facts` for the restore stubs it tail-calls)."""
    kept: frozenset[str] = f.entry_saves
    if not f.exits:
        kept = frozenset()
    for target, restores in f.exits:
        # Registers restored before a tail call are the caller's values again when the
        # target starts; the target's own writes are added as a tail-call edge.
        kept &= restores if target is None else restores | _stub_restores(facts, target)
    return kept


def compute_clobbers(
    arch: str,
    facts: Mapping[int, FunctionFacts],
    default_clobbers: Callable[[int], frozenset[str]] | None = None,
) -> dict[int, frozenset[str]]:
    """Clobber set of every function: own writes plus its callees', to a fixpoint."""
    abi = get_abi(arch)
    default = default_clobbers or (lambda _callee: abi.call_clobbered)
    preserved = _preserved(facts)
    clobbers = {a: f.writes - preserved[a] for a, f in facts.items()}
    # Per edge, what the caller's saves hide of the callee's writes: everything it preserves
    # for a call; for a tail call (after the restores) only what a restore stub restores.
    hidden: dict[tuple[int, int], frozenset[str]] = {}
    callers: dict[int, set[int]] = {}
    for a, f in facts.items():
        for edge in f.calls:
            if edge.kind in ("tail-call", "indirect-jump"):
                hide = (
                    _stub_restores(facts, edge.callee) if edge.callee is not None else frozenset()
                )
            else:
                hide = preserved[a]
            if edge.callee is None:
                clobbers[a] = clobbers[a] | (abi.call_clobbered - hide)
                continue
            key = (a, edge.callee)
            hidden[key] = hidden[key] & hide if key in hidden else hide
            if edge.callee in facts:
                callers.setdefault(edge.callee, set()).add(a)
        for edge in f.calls:
            if edge.callee is not None and edge.callee not in facts:
                clobbers[a] = clobbers[a] | (default(edge.callee) - hidden[(a, edge.callee)])
    work = list(facts)
    while work:
        callee = work.pop()
        for caller in callers.get(callee, ()):
            merged = clobbers[caller] | (clobbers[callee] - hidden[(caller, callee)])
            if merged != clobbers[caller]:
                clobbers[caller] = merged
                work.append(caller)
    return clobbers


class _Masks:
    """Register sets as int bit masks: liveness runs on ints, results go back to names.

    Each register has one bit per lane (`abi.register_lanes`): bit `lane * n + i` for the
    i-th register, so an x86 8- or 16-bit write kills only its lanes and the rest of the
    register stays live. A register is live when any of its lanes is.
    """

    def __init__(self, abi: Abi) -> None:
        self.arch = abi.arch
        self.names = sort_registers(abi.arch, abi.call_clobbered | abi.callee_saved)
        self.count = len(self.names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.bit = {name: 1 << i for i, name in enumerate(self.names)}
        self._masks: dict[frozenset[str], int] = {}
        self._sets: dict[int, frozenset[str]] = {}
        self._insns: dict[tuple[object, ...], tuple[int, int, tuple[tuple[int, int], ...]]] = {}

    def _lanes(self, name: str, lanes: int) -> int:
        i = self.index.get(name)
        if i is None:
            return 0
        out = 0
        for lane in range(3):
            if lanes & (1 << lane):
                out |= 1 << (lane * self.count + i)
        return out

    def mask(self, regs: frozenset[str]) -> int:
        """Every lane of `regs`; of a sub-register name (`al`), only its lanes."""
        found = self._masks.get(regs)
        if found is None:
            found = 0
            narrow = 0
            for r in regs:
                if r in self.bit:
                    found |= self.bit[r]
                    continue
                full = fold_register(self.arch, r)
                if full is not None:
                    narrow |= self._lanes(full, register_lanes(self.arch, r))
            found |= (found << self.count) | (found << (2 * self.count)) | narrow
            self._masks[regs] = found
        return found

    def regs(self, mask: int) -> frozenset[str]:
        """The registers with a live lane in `mask`."""
        n = self.count
        mask = (mask | (mask >> n) | (mask >> (2 * n))) & ((1 << n) - 1)
        found = self._sets.get(mask)
        if found is None:
            found = frozenset(name for name in self.names if mask & self.bit[name])
            self._sets[mask] = found
        return found

    def insn(
        self, insn: Insn, partial: Collection[str] = ()
    ) -> tuple[int, int, tuple[tuple[int, int], ...]]:
        """(kill, gen, copies) of one instruction that is not a call.

        `copies` holds (mask, shift) per `Insn.copies` pair whose source is in `partial` (the
        registers the function writes in part; for the others lanes never differ): the live
        lanes of the destination (`live & mask`) make the same lanes of the source live
        (shifted by `shift` bits, from the destination's bit to the source's); the source is
        then not in `gen`.
        """
        used = tuple((d, src) for d, src in insn.copies if src in partial)
        key = (insn.reads, insn.writes, insn.lanes, used)
        found = self._insns.get(key)
        if found is None:
            kill, gen = self.mask(insn.writes), self.mask(insn.reads)
            for reg, read, written in insn.lanes:
                whole = self.mask(frozenset((reg,)))
                if reg in insn.reads:
                    gen = (gen & ~whole) | self._lanes(reg, read)
                if reg in insn.writes:
                    kill = (kill & ~whole) | self._lanes(reg, written)
            copies: list[tuple[int, int]] = []
            for dest, src in used:
                if dest not in self.index or src not in self.index:
                    continue
                gen &= ~self.mask(frozenset((src,)))
                # The lanes the instruction writes; the others pass through unchanged.
                written = self.mask(frozenset((dest,))) & kill
                copies.append((written, self.index[src] - self.index[dest]))
            found = (kill, gen, tuple(copies))
            self._insns[key] = found
        return found


def _copied(live: int, copies: tuple[tuple[int, int], ...]) -> int:
    """The source lanes that live destination lanes of lane-wise copies make live."""
    out = 0
    for mask, shift in copies:
        lanes = live & mask
        out |= lanes << shift if shift >= 0 else lanes >> -shift
    return out


_CALLS = ("call", "indirect-call")


class _Liveness:
    """Backward liveness over one caller's CFG, calls modelled with actual clobber sets."""

    def __init__(
        self,
        masks: _Masks,
        facts: FunctionFacts,
        clobbers_of: Callable[[int | None], frozenset[str]],
        args_of: Callable[[int | None, int], frozenset[str]],
        returns_of_caller: frozenset[str],
    ) -> None:
        self.masks = masks
        self.facts = facts
        # Per block: (kill, gen, copies) of each instruction, the block's summary (None when a
        # lane-wise copy makes it depend on what is live after it) and its exit uses.
        self.steps: dict[int, list[tuple[int, int, tuple[tuple[int, int], ...]]]] = {}
        self.summary: dict[int, tuple[int, int] | None] = {}
        self.exit_uses: dict[int, int] = {}
        mask = masks.mask
        returns = mask(returns_of_caller)
        # Registers written in part somewhere: only their lanes can differ in liveness.
        partial = {
            reg
            for block in facts.cfg.blocks.values()
            for insn in block.insns
            for reg, _read, written in insn.lanes
            if written not in (0, ALL_LANES)
        }
        for start, block in facts.cfg.blocks.items():
            steps: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
            for insn in block.insns:
                if insn.flow in _CALLS:
                    callee = facts.call_targets.get(insn.address)
                    kill = mask(clobbers_of(callee)) | mask(insn.writes)
                    gen = mask(args_of(callee, insn.address)) | mask(insn.reads)
                    steps.append((kill, gen, ()))
                else:
                    steps.append(masks.insn(insn, partial))
            self.steps[start] = steps
            if any(copies for _k, _g, copies in steps):
                self.summary[start] = None
            else:
                block_gen = block_kill = 0
                for kill, gen, _copies in reversed(steps):
                    block_gen = gen | (block_gen & ~kill)
                    block_kill |= kill
                self.summary[start] = (block_kill, block_gen)
            last = block.insns[-1]
            uses = returns if last.flow == "return" else 0
            if block.tail_call is not None or block.indirect_tail_call:
                uses |= mask(args_of(facts.call_targets.get(last.address), last.address))
            self.exit_uses[start] = uses
        self.live_in: dict[int, int] = {}
        self._solve()

    def live_out(self, block: Block) -> int:
        out = self.exit_uses[block.start]
        for s in block.successors:
            out |= self.live_in.get(s, 0)
        return out

    def _solve(self) -> None:
        blocks = self.facts.cfg.blocks
        preds: dict[int, set[int]] = {a: set() for a in blocks}
        for a, b in blocks.items():
            for s in b.successors:
                preds.setdefault(s, set()).add(a)
        work = sorted(blocks, reverse=True)
        pending = set(work)
        while work:
            a = work.pop()
            pending.discard(a)
            summary = self.summary[a]
            if summary is None:
                live = self.live_out(blocks[a])
                for kill, gen, copies in reversed(self.steps[a]):
                    live = gen | _copied(live, copies) | (live & ~kill)
            else:
                kill, gen = summary
                live = gen | (self.live_out(blocks[a]) & ~kill)
            if live != self.live_in.get(a):
                self.live_in[a] = live
                for p in preds.get(a, ()):
                    if p not in pending:
                        pending.add(p)
                        work.append(p)

    def iter_call_sites(self) -> list[tuple[Insn, frozenset[str]]]:
        """Every call instruction with the registers live right after it."""
        out: list[tuple[Insn, frozenset[str]]] = []
        for start, block in self.facts.cfg.blocks.items():
            live = self.live_out(block)
            for insn, (kill, gen, copies) in zip(
                reversed(block.insns), reversed(self.steps[start]), strict=True
            ):
                if insn.flow in _CALLS:
                    out.append((insn, self.masks.regs(live)))
                live = gen | _copied(live, copies) | (live & ~kill)
        return out


def _argument_setup(abi: Abi, facts: FunctionFacts) -> dict[int, frozenset[str]]:
    """ABI argument registers (and the indirect result register) written in each call's block
    since the previous call."""
    out: dict[int, frozenset[str]] = {}
    args = frozenset((*abi.arg_registers, abi.indirect_result))
    for block in facts.cfg.blocks.values():
        written: set[str] = set()
        for insn in block.insns:
            if insn.flow in ("call", "indirect-call") or insn.address == block.insns[-1].address:
                out[insn.address] = frozenset(written & args)
            if insn.flow in ("call", "indirect-call"):
                written.clear()
            else:
                written |= insn.writes
    return out


class _CallModel:
    """What a caller's liveness assumes about each call: the callee's clobbers, its arguments
    and its results, from the clobber sets and what DWARF says (`find_register_dependents`)."""

    def __init__(
        self,
        abi: Abi,
        facts: Mapping[int, FunctionFacts],
        clobbers: Mapping[int, frozenset[str]],
        arg_registers_of: RegsOf | None,
        return_registers_of: RegsOf | None,
        default_clobbers: Callable[[int], frozenset[str]] | None,
    ) -> None:
        self.abi = abi
        self.clobbers = clobbers
        self.default = default_clobbers or (lambda _callee: abi.call_clobbered)
        self.arg_registers_of = arg_registers_of
        self.return_registers_of = return_registers_of
        self.fallbacks: set[int] = set()
        self.first_return_argument = frozenset(abi.return_registers[:1]) & frozenset(
            abi.arg_registers
        )
        self.setup: dict[int, frozenset[str]] = {}
        for f in facts.values():
            self.setup.update(_argument_setup(abi, f))

    def clobbers_of(self, callee: int | None) -> frozenset[str]:
        if callee is None:
            return self.abi.call_clobbered
        found = self.clobbers.get(callee)
        return found if found is not None else self.default(callee)

    def args_of(self, callee: int | None, site: int) -> frozenset[str]:
        known = self.arg_registers_of
        regs = known(callee) if (known and callee is not None) else None
        if regs is None:
            # Unknown parameters (asm, variadic, indirect): take the ABI argument registers
            # that the caller writes right before the call. All six/eight would make any
            # value the caller never passed look live across earlier calls, an invented
            # dependency; an argument computed before an earlier call can be missed instead.
            self.fallbacks.add(site)
            return self.setup.get(site, frozenset())
        return frozenset(regs)

    def returns_of(self, callee: int | None) -> frozenset[str]:
        known = self.return_registers_of
        regs = known(callee) if (known and callee is not None) else None
        if regs is not None:
            # A narrow result (`al`) still leaves the rest of the register undefined.
            return frozenset(fold_register(self.abi.arch, r) or r for r in regs)
        # Unknown: the return registers the callee writes, and the first one when it is also
        # an argument register (arm64 x0: memset returns its unchanged first argument). On
        # x86-64 a function that never writes rax cannot return a value in it, so a value
        # kept there is a dependency (a void callee); rdx counts when written.
        return (self.abi.return_set & self.clobbers_of(callee)) | self.first_return_argument

    def caller_returns(self, caller: int) -> frozenset[str]:
        known = self.return_registers_of
        regs = known(caller) if known else None
        if regs is not None:
            return frozenset(regs)
        # Unknown: rax when the caller or its callees write it, x0 always (it may be the
        # unchanged first argument); a second return register is not assumed, since rdx (x1)
        # live at every return would invent dependencies.
        first = frozenset(self.abi.return_registers[:1])
        return (first & self.clobbers_of(caller)) | self.first_return_argument

    def liveness(self, masks: _Masks, caller: int, f: FunctionFacts) -> _Liveness:
        return _Liveness(masks, f, self.clobbers_of, self.args_of, self.caller_returns(caller))


class _Reachable(Mapping[int, FunctionFacts]):
    """The facts of a group with those of the functions outside it that calls reach, and
    what each preserves (memoised: `_preserved_by`)."""

    def __init__(
        self, facts: Mapping[int, FunctionFacts], outside: Mapping[int, FunctionFacts] | None
    ) -> None:
        self.facts = facts
        self.outside = outside or {}
        self._preserved: dict[int, frozenset[str]] = {}

    def __getitem__(self, address: int) -> FunctionFacts:
        found = self.facts.get(address)
        return found if found is not None else self.outside[address]

    def __iter__(self) -> Iterator[int]:
        yield from self.facts
        yield from (a for a in self.outside if a not in self.facts)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def preserved(self, address: int) -> frozenset[str]:
        found = self._preserved.get(address)
        if found is None:
            f = self.get(address)
            found = frozenset() if f is None else _preserved_by(self, f)
            self._preserved[address] = found
        return found


def _reached(
    start: int, regs: tuple[str, ...], facts: _Reachable
) -> list[tuple[int, tuple[str, ...], tuple[int, ...]]]:
    """The functions a call to `start` runs, with the kept registers each must leave alone.

    (function, registers, via) for `start` itself (via ()) and every function it reaches by
    calls and tail calls through `facts`, breadth first, via naming the functions between.
    A register goes on through a call only if the calling function does not save and restore
    it around everything (`_preserved`: then the callee's writes never reach the caller that
    keeps it), and through a tail call always (the tail-calling function's restores come
    before the jump, so the target's writes reach that caller: __SCT__preempt_schedule is
    `jmp preempt_schedule_thunk`).
    """
    carried: dict[int, frozenset[str]] = {start: frozenset(regs)}
    vias: dict[int, tuple[int, ...]] = {start: ()}
    order = [start]
    todo = [start]
    while todo:
        address = todo.pop(0)
        f = facts.get(address)
        if f is None:
            continue
        for edge in f.calls:
            target = edge.callee
            if target is None or target == start:
                continue
            passed = carried[address]
            if edge.kind == "call":
                passed = passed - facts.preserved(address)
            old = carried.get(target, frozenset())
            if not passed or passed <= old:
                continue
            if target not in carried:
                vias[target] = (*vias[address], address)
                order.append(target)
            carried[target] = old | passed
            todo.append(target)
    return [(a, tuple(r for r in regs if r in carried[a]), vias[a]) for a in order]


def find_register_dependents(
    arch: str,
    facts: Mapping[int, FunctionFacts],
    clobbers: Mapping[int, frozenset[str]],
    *,
    reason_for: ReasonFor,
    arg_registers_of: RegsOf | None = None,
    return_registers_of: RegsOf | None = None,
    default_clobbers: Callable[[int], frozenset[str]] | None = None,
    dependents_only: bool = False,
    outside: Mapping[int, FunctionFacts] | None = None,
) -> tuple[tuple[RegisterDependent, ...], tuple[Artefact, ...], tuple[int, ...]]:
    """(dependents, artefacts, call sites using the ABI argument fallback) of `facts`.

    With `dependents_only`, callers whose every call goes to a callee that clobbers the whole
    ABI set are skipped: nothing can be kept across such calls, so they yield no dependent (only
    "clobbered" artefacts). In a distro kernel that is about nine callers in ten.

    `outside` holds the facts of functions of other groups that a dependency may reach (the
    asm code the index decodes on demand): a caller keeping registers across an asm
    trampoline relies on what the trampoline tail-calls too.
    """
    abi = get_abi(arch)
    model = _CallModel(
        abi, facts, clobbers, arg_registers_of, return_registers_of, default_clobbers
    )
    reachable = _Reachable(facts, outside)

    masks = _Masks(abi)
    dependents: list[RegisterDependent] = []
    artefacts: list[Artefact] = []
    for caller, f in facts.items():
        if dependents_only and all(
            model.clobbers_of(callee) >= abi.call_clobbered for callee in f.call_targets.values()
        ):
            continue
        liveness = model.liveness(masks, caller, f)
        for insn, live_after in liveness.iter_call_sites():
            callee = f.call_targets.get(insn.address)
            if callee is None:
                continue
            # The call's own writes (x30 for `bl`) are its outputs, not kept values.
            kept = (live_after & abi.call_clobbered) - model.returns_of(callee) - insn.writes
            if not kept:
                continue
            written = kept & model.clobbers_of(callee)
            if written:
                artefacts.append(
                    Artefact(
                        caller, insn.address, callee, sort_registers(arch, written), "clobbered"
                    )
                )
            relied = kept - written
            if not relied:
                continue
            regs = sort_registers(arch, relied)
            reason = reason_for(caller, callee)
            if reason is None:
                artefacts.append(Artefact(caller, insn.address, callee, regs, "no-reason"))
                continue
            for target, carried, via in _reached(callee, regs, reachable):
                # A function that already writes a register cannot break the caller by
                # writing it: someone between (a thunk saving everything) preserves it.
                own = (
                    carried
                    if target == callee
                    else tuple(r for r in carried if r not in model.clobbers_of(target))
                )
                if own:
                    dependents.append(
                        RegisterDependent(target, caller, insn.address, own, reason, via)
                    )
    dependents.sort(key=lambda d: (d.callee, d.caller, d.site))
    return tuple(dependents), tuple(artefacts), tuple(sorted(model.fallbacks))


def find_entry_arguments(
    arch: str,
    facts: Mapping[int, FunctionFacts],
    clobbers: Mapping[int, frozenset[str]],
    starts: Iterable[int],
    *,
    arg_registers_of: RegsOf | None = None,
    return_registers_of: RegsOf | None = None,
    default_clobbers: Callable[[int], frozenset[str]] | None = None,
) -> dict[int, frozenset[str]]:
    """The argument registers (and the indirect result register) each function of `starts`
    reads before writing them: what its callers must pass, whatever its C prototype says.

    For GCC clones: `foo.isra.0` takes a field of a struct instead of the pointer, in a
    register that no C parameter's DWARF location names. Liveness at the entry, with calls
    modelled as in `find_register_dependents` (a register passed on unchanged to a callee
    is read).
    """
    abi = get_abi(arch)
    model = _CallModel(
        abi, facts, clobbers, arg_registers_of, return_registers_of, default_clobbers
    )
    masks = _Masks(abi)
    wanted = frozenset((*abi.arg_registers, abi.indirect_result))
    out: dict[int, frozenset[str]] = {}
    for start in starts:
        f = facts.get(start)
        if f is None or f.cfg.entry not in f.cfg.blocks:
            continue
        liveness = model.liveness(masks, start, f)
        out[start] = masks.regs(liveness.live_in.get(f.cfg.entry, 0)) & wanted
    return out


def analyse_registers(
    arch: str,
    functions: Mapping[int, FunctionCode],
    *,
    resolve: Resolver,
    reason_for: ReasonFor,
    noreturn: Collection[int] = frozenset(),
    arg_registers_of: RegsOf | None = None,
    return_registers_of: RegsOf | None = None,
    default_clobbers: Callable[[int], frozenset[str]] | None = None,
    read_pointer: Callable[[int], int | None] | None = None,
    is_function_start: Callable[[int], bool] | None = None,
) -> RegisterReport:
    """Clobber sets and register dependents of one group of functions.

    `resolve(address)` gives the start of the function containing `address` (None if none);
    `noreturn` holds the starts of functions that never return; `arg_registers_of(f)` and
    `return_registers_of(f)` give the registers of f's DWARF parameters and return value
    (() for void, rax/x0 up to 8 bytes, rax+rdx/x0+x1 for 16, a sub-register such as `al`
    for a result that only fills it, which makes only its lanes live at f's returns;
    None: unknown, then the ABI
    argument registers written before the call are assumed, and the return registers that
    f's clobber set holds);
    `read_pointer(address)` reads a pointer-sized value of the image, for jump tables;
    `is_function_start(address)` tells a tail call from `__builtin_unreachable()` (cfg.py).
    """
    facts = {
        start: analyse_function(
            arch,
            start,
            code,
            resolve=resolve,
            noreturn=noreturn,
            read_pointer=read_pointer,
            is_function_start=is_function_start,
        )
        for start, code in functions.items()
    }
    clobbers = compute_clobbers(arch, facts, default_clobbers)
    dependents, artefacts, fallbacks = find_register_dependents(
        arch,
        facts,
        clobbers,
        reason_for=reason_for,
        arg_registers_of=arg_registers_of,
        return_registers_of=return_registers_of,
        default_clobbers=default_clobbers,
    )
    uses = {
        start: RegisterUse(
            start, clobbers[start], facts[start].callee_saved_clobbers, facts[start].calls
        )
        for start in facts
    }
    return RegisterReport(uses, dependents, artefacts, fallbacks)
