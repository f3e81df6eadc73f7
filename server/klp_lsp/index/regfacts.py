"""Register facts of a group of CUs: decode their functions and run the register analysis.

This is the glue between the binary readers (symbols, code bytes, relocations) and the pure
analysis in `analysis/registers.py`, with the index's knowledge of compile units:

- A callee in another C compile unit is modelled with the ABI clobber set: without LTO, GCC
  compiled the caller knowing nothing better, so no caller can rely on more.
- A callee without C DWARF (hand-written asm such as `__sw_hweight64`, `__put_user_4`) is
  decoded on demand and modelled with its actual clobber set: its callers were written or
  compiled against its custom convention.
- A dependency is "ipa-ra" when caller and callee share a CU built with IPA-RA, and
  "custom-convention" when the callee is asm; anything else is an analysis artefact.
- The ftrace entry call (`call __fentry__`, arm64 needs none: NOPs) is not a call for this
  purpose: ftrace replaces it with NOPs at boot, and its trampolines save every register.
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from klp_lsp.analysis.cfg import tail_call_target
from klp_lsp.analysis.clones import is_cold_part, parse_clone_name
from klp_lsp.analysis.registers import (
    FunctionCode,
    FunctionFacts,
    analyse_function,
    compute_clobbers,
    find_entry_arguments,
    find_register_dependents,
)
from klp_lsp.analysis.symbols import CuLocator, find_symbol_start
from klp_lsp.binary.abi import MAX_REGISTER_RESULT, get_abi, result_registers
from klp_lsp.binary.disasm import (
    GAP,
    KILL,
    RESTORE,
    Decoder,
    FlowScan,
    Insn,
    LiteInsn,
    find_thunks,
)
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import BinaryFormatError
from klp_lsp.index.store import CuRow, Index, from_db
from klp_lsp.limits import MAX_FUNCTION_BYTES, NO_DEADLINE, Deadline
from klp_lsp.model import (
    CallEdge,
    CallKind,
    CuFacts,
    DependencyReason,
    ElfSymbol,
    RegisterDependent,
    RegisterUse,
)

# Calls that ftrace turns into NOPs at boot (x86 -mfentry / -pg).
_FTRACE_ENTRY_CALLS = frozenset({"__fentry__", "mcount", "_mcount", "__mcount"})

# Synthetic addresses for functions a module calls but does not define (resolved at load time):
# far above any real kernel or synthetic-layout address, one per name.
_EXTERNAL_BASE = 0xFFFF_FFFF_F000_0000

_STATIC_CALL_TRAMP_PREFIX = "__SCT__"

# Clones whose arguments may differ from their C prototype's (IPA-SRA removes and splits
# parameters, IPA-CP fixes them, ipa-split passes what the inlined head computed).
_SIGNATURE_CLONES = frozenset({"isra", "constprop", "part"})

# Called by code GCC generates (-fstack-protector), so no CU declares it in DWARF; it panics
# (kernel/panic.c). Without this the bytes after the call look like its continuation.
_NORETURN_BUILTINS = frozenset({"__stack_chk_fail"})

# Bounds of the asm code `_actual_clobbers` decodes for one callee: one region's bytes and
# the number of regions reached through calls and tail calls (larger: the ABI set).
_MAX_ASM_REGION = 1 << 16
_MAX_ASM_GROUP = 64

_X86_PC_RELOCS = frozenset({2, 4})  # R_X86_64_PC32, R_X86_64_PLT32
_A64_BRANCH_RELOCS = frozenset({282, 283})  # R_AARCH64_JUMP26, R_AARCH64_CALL26


@dataclass(frozen=True, slots=True)
class KnownCallee:
    """A function of another binary (the vmlinux) that a module calls, with its clobber set."""

    name: str
    address: int  # in its own binary: dependents on it are stored under this address
    clobbers: frozenset[str]


def read_known_callees(index: Index) -> dict[str, KnownCallee]:
    """The vmlinux functions whose callers rely on their actual clobber set, by name.

    Global functions of asm CUs (`__put_user_4`, `__sw_hweight64`): modules call them through
    the same inline asm as vmlinux code, so their dependents in a module are as real. A C
    function's module callers were compiled against the ABI set and are left out.
    """
    rows = index.query(
        "SELECT s.name, s.address, r.clobbers FROM symbols s"
        " JOIN register_use r ON r.address = s.address JOIN cus c ON c.id = s.cu_id"
        " WHERE c.is_asm = 1 AND s.binding != 'local'"
    )
    return {r[0]: KnownCallee(r[0], from_db(r[1]), frozenset(r[2].split())) for r in rows}


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One code range of a function: its bytes and capstone's fast pass over them."""

    lo: int
    code: bytes
    lite: list[LiteInsn]

    @property
    def hi(self) -> int:
        return self.lo + len(self.code)


@dataclass(frozen=True, slots=True)
class _Func:
    name: str
    start: int
    size: int
    cu: int | None


class RegisterAnalyser:
    """Analyses the functions of some CUs of one binary; reused across batches in a worker."""

    def __init__(
        self,
        binary: ElfBinary,
        units: Sequence[CuRow],
        function_symbols: Sequence[ElfSymbol] | None = None,
        known_callees: Mapping[str, KnownCallee] | None = None,
        *,
        exhaustive: bool = False,
    ) -> None:
        """`function_symbols`: `binary.iter_function_symbols()`, when the caller has it already.

        `known_callees` (a module's analysis, from `read_known_callees` on the vmlinux index):
        calls to these undefined names are modelled with their clobber sets and their
        dependents kept, under the vmlinux address. Without it (no vmlinux index) every call
        out of the module gets the ABI set and no dependents, as before.

        `exhaustive` runs the whole analysis on every function, without the fast path for
        functions whose calls alone decide their facts (`_quick_calls`): the reference the
        differential tests compare the fast path with.
        """
        self.exhaustive = exhaustive
        self.fast_path_functions = 0  # how many `_quick_calls` decided
        if function_symbols is None:
            function_symbols = binary.iter_function_symbols()
        self.binary = binary
        self.arch = binary.arch
        self.abi = get_abi(binary.arch)
        self.units = {u.unit.offset: u for u in units}
        locator = CuLocator((lo, hi, u.unit.offset) for u in units for lo, hi in u.ranges)
        funcs: dict[int, _Func] = {}
        names: dict[str, int] = {}
        for s in function_symbols:
            if is_cold_part(s.name):
                continue
            old = funcs.get(s.address)
            # Prefer the sized, global name at an address (aliases share one body).
            if (
                old is None
                or (old.size == 0 and s.size)
                or (old.size == s.size and s.binding != "local" and not old.name.startswith("__"))
            ):
                funcs[s.address] = _Func(
                    s.name, s.address, s.size, locator.find_function(s.address, s.size, self.arch)
                )
            if s.binding != "local" or s.name not in names:
                names[s.name] = s.address
        self.funcs = funcs
        self._funcs_by_cu: dict[int, list[int]] = {}
        for start, f in funcs.items():
            if f.cu is not None:
                self._funcs_by_cu.setdefault(f.cu, []).append(start)
        self._cu_members = {cu: frozenset(starts) for cu, starts in self._funcs_by_cu.items()}
        self.names = names
        self._starts = sorted(funcs)
        self._start_set = frozenset(s.address for s in function_symbols)
        self._externals: dict[str, int] = {}
        self._external_names: dict[int, str] = {}
        # Not the ftrace entry (NOPs at run time) nor the thunks (returns, indirect branches).
        self._known_by_name = {
            name: k
            for name, k in (known_callees or {}).items()
            if name not in _FTRACE_ENTRY_CALLS and not name.startswith("__x86_")
        }
        self._known = {k.address: k for k in self._known_by_name.values()}
        thunks = find_thunks((s.name, s.address, s.section) for s in binary.iter_symbols())
        self.decoder = Decoder(binary.arch, thunks)
        self._thunk_names = set(thunks.values())
        self._ftrace_entry = {names[n] for n in _FTRACE_ENTRY_CALLS if n in names}
        self._asm_clobbers: dict[int, frozenset[str]] = {}
        # The facts of the asm code `_actual_clobbers` decoded, for the dependents it reaches
        # (a static-call trampoline tail-calling its asm target).
        self._asm_facts: dict[int, FunctionFacts] = {}
        self._relocatable = binary.elf_type == "ET_REL"
        self._relocations: dict[int, dict[int, tuple[int, str, int]]] = {}
        # Code symbols of any type, for decoding asm: hand-written code jumps to NOTYPE labels
        # (`bad_get_user`, `__thunk_restore`) and to unnamed fixup code between FUNC symbols
        # (`.Lbad_put_user_clac` in arch/x86/lib/putuser.S), which `iter_function_symbols`
        # does not list. Boundaries are the starts of FUNC and sized symbols; a zero-sized
        # label inside asm code (`__put_user_nocheck_4`) is fallen through, not a boundary.
        exec_sections = {s.name for s in binary.sections if s.is_exec}
        code_sizes: dict[int, int] = {}
        bounds: set[int] = set()
        for raw in binary.iter_symbols():
            if raw.section not in exec_sections or raw.type not in (0, 2, 10):
                continue
            if not raw.name or raw.name.startswith("$"):
                continue
            code_sizes[raw.address] = max(raw.size, code_sizes.get(raw.address, 0))
            if raw.type != 0 or raw.size:
                bounds.add(raw.address)
        self._code_sizes = code_sizes
        self._code_bounds = sorted(bounds)

    # --- addresses -------------------------------------------------------------------------

    def resolve(self, address: int) -> int | None:
        """The start of the function containing `address`."""
        if address in self._external_names or address in self._known:
            return address
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        f = self.funcs[self._starts[i]]
        if address == f.start or address < f.start + max(f.size, 1):
            return f.start
        return None

    def _is_function_start(self, address: int) -> bool:
        """Whether a function or a code label (FUNC or NOTYPE symbol) starts at `address`."""
        return address in self._code_sizes or self.resolve(address) == address

    def _is_c_function(self, start: int) -> bool:
        cu = self.funcs[start].cu if start in self.funcs else None
        return cu is not None and not self.units[cu].unit.is_asm

    # --- decoding --------------------------------------------------------------------------

    def _external(self, name: str) -> int:
        address = self._externals.get(name)
        if address is None:
            address = _EXTERNAL_BASE + 16 * len(self._externals)
            self._externals[name] = address
            self._external_names[address] = name
        return address

    def _read(self, ranges: Sequence[tuple[int, int]]) -> list[_Chunk]:
        """The code of each range with capstone's fast pass over it (unreadable ones left out).

        A range larger than `MAX_FUNCTION_BYTES` is corrupt (a size or high_pc that spans a
        whole section) and left out too: decoding it could take minutes and gigabytes.
        """
        chunks = []
        for lo, hi in ranges:
            if hi - lo > MAX_FUNCTION_BYTES:
                continue
            try:
                code = self.binary.read_code(lo, hi - lo)
            except BinaryFormatError:
                continue
            chunks.append(_Chunk(lo, code, self.decoder.lite(code, lo)))
        return chunks

    def _decode(self, chunks: Sequence[_Chunk]) -> tuple[Insn, ...]:
        insns: list[Insn] = []
        for c in chunks:
            decoded = self.decoder.decode(c.code, c.lo, c.lite)
            if self._relocatable:
                decoded = self._apply_relocations(decoded, c.lo, c.hi)
            insns.extend(decoded)
        insns.sort(key=lambda i: i.address)
        return tuple(self._drop_ftrace_entry(insns))

    def _apply_relocations(self, insns: tuple[Insn, ...], lo: int, hi: int) -> tuple[Insn, ...]:
        """Give a module's calls and tail calls their targets from the relocations."""
        relocs = self._relocations_of_section_at(lo)
        if not relocs:
            return insns
        out = []
        for insn in insns:
            if insn.flow in ("call", "jump") and insn.target is not None:
                if self.arch == "x86_64":
                    found = relocs.get(insn.end - 4)
                    ok = found is not None and found[0] in _X86_PC_RELOCS
                    delta = 4
                else:
                    found = relocs.get(insn.address)
                    ok = found is not None and found[0] in _A64_BRANCH_RELOCS
                    delta = 0
                if ok and found is not None:
                    _rtype, name, value = found
                    if name and name not in self.names and name in self._known_by_name:
                        target = self._known_by_name[name].address
                    elif name and name not in self.names:
                        target = self._external(name)
                    else:
                        target = value + delta
                    if self.arch == "x86_64" and name == "__x86_return_thunk":
                        insn = insn._replace(target=None, flow="return")
                    else:
                        insn = insn._replace(target=target)
            out.append(insn)
        return tuple(out)

    def _relocations_of_section_at(self, address: int) -> dict[int, tuple[int, str, int]]:
        """Relocations of the whole code section holding `address`, by address (memoised).

        `iter_relocations_at` reads every relocation of the section to find those of a range;
        asked once per function, that was 30% of indexing a module (py-spy, docs/performance.md).
        """
        section = self.binary.find_section_at(address)
        if section is None:
            return {}
        found = self._relocations.get(section.address)
        if found is None:
            found = {
                at: (rtype, name, value)
                for at, rtype, name, value in self.binary.iter_relocations_at(
                    section.address, section.size
                )
            }
            self._relocations[section.address] = found
        return found

    def _drop_ftrace_entry(self, insns: list[Insn]) -> list[Insn]:
        out = []
        for insn in insns:
            if (
                insn.flow == "call"
                and insn.target is not None
                and (
                    insn.target in self._ftrace_entry
                    or self._external_names.get(insn.target) in _FTRACE_ENTRY_CALLS
                )
            ):
                insn = insn._replace(flow="fallthrough", target=None)
            out.append(insn)
        return out

    def _read_pointer(self, address: int) -> int | None:
        try:
            value: int = struct.unpack("<Q", self.binary.read_code(address, 8))[0]
        except (BinaryFormatError, struct.error):
            return None
        return value

    def _ranges_of(
        self, f: _Func, instance_ranges: Mapping[int, tuple[tuple[int, int], ...]]
    ) -> tuple[tuple[int, int], ...]:
        ranges = instance_ranges.get(f.start)
        if not ranges:
            return ((f.start, f.start + max(f.size, 1)),)
        # The entry range first, as the analysis expects.
        return tuple(sorted(ranges, key=lambda r: (not (r[0] <= f.start < r[1]), r[0])))

    def _quick_calls(
        self,
        start: int,
        ranges: tuple[tuple[int, int], ...],
        chunks: Sequence[_Chunk],
        cu: int,
        noreturn: Collection[int],
    ) -> tuple[CallEdge, ...] | None:
        """The call edges of a function of a CU without IPA-RA, when they alone decide its facts.

        Most kernel functions are compiled with ftrace flags, so without IPA-RA, and call some
        function of another compile unit: their clobber set is then the whole ABI set, and no
        caller can rely on it. For those, the fast decode (`Decoder.scan_flow`) is enough and
        the CFG, the per-instruction register tables and the liveness are skipped. The result
        is the same as the full analysis's, by these conditions (compared with the full
        analysis on whole kernels by bench/register_analysis.py, and on the fixtures and a
        sample of Debian CUs by tests/test_register_fast_path.py):

        - a call, or a tail call, to a callee modelled with the ABI set (an indirect call, a C
          function of another CU, a thunk, a module's external) makes the clobber set the ABI
          set, unless the function saves call-clobbered registers at entry and restores them
          at every exit (`_preserved`, `_saved_through_exits`);
        - no callee-saved register is written without being saved: every one the code names
          is pushed (or stored to the frame), and no instruction writes one implicitly;
        - nothing is left for liveness: no call to asm code or to a `known_callees` helper
          (their callers can rely on their actual clobber sets), and no indirect jump (its
          edges depend on jump-table resolution in the CFG).
        None means: run the full analysis.
        """
        scan = self.decoder.scan_flow([c.lite for c in sorted(chunks, key=lambda c: c.lo)])
        abi = self.abi
        if scan.implicit_writes:
            return None
        named_callee_saved = scan.named & abi.callee_saved - {abi.stack_pointer}
        if not named_callee_saved <= scan.saves:
            return None
        insns = scan.insns
        if self._relocatable:
            relocated: list[Insn] = []
            for c in chunks:
                part = tuple(i for i in insns if c.lo <= i.address < c.hi)
                relocated.extend(self._apply_relocations(part, c.lo, c.hi))
            insns = tuple(relocated)
        insns = tuple(self._drop_ftrace_entry(list(insns)))

        first_lo, first_hi = ranges[0]

        def leaves(insn: Insn) -> bool:
            # A tail call, as the CFG decides it (`tail_call_target`).
            target = insn.target
            if target is None or first_lo <= target < first_hi:
                return False
            return tail_call_target(target, ranges, self._is_function_start) is not None

        group = self._cu_members.get(cu, frozenset())
        if self._saved_through_exits(scan, insns, leaves, group, noreturn):
            return None
        calls: list[CallEdge] = []
        decided = False
        for insn in insns:
            if insn.flow == "indirect-jump":
                return None
            if insn.flow == "indirect-call":
                calls.append(CallEdge(start, insn.address, None, "indirect-call"))
                decided = True
                continue
            if insn.flow == "call":
                kind: CallKind = "call"
            elif insn.flow in ("jump", "cond-jump") and leaves(insn):
                kind = "tail-call"
            else:
                continue
            callee = self.resolve(insn.target) if insn.target is not None else None
            calls.append(CallEdge(start, insn.address, callee, kind))
            if callee is None:
                decided = True
            elif callee in self._known or self._is_asm_code(callee):
                return None
            elif callee not in group:
                decided = True
        return tuple(calls) if decided else None

    def _saved_through_exits(
        self,
        scan: FlowScan,
        insns: Sequence[Insn],
        leaves: Callable[[Insn], bool],
        group: Collection[int],
        noreturn: Collection[int],
    ) -> bool:
        """Whether a call-clobbered register saved at entry may be restored at every exit.

        An upper bound of what the full analysis finds (`_restored_at_block_ends`, then
        `_preserved`), walked along the code in address order: the registers restored (loaded
        back from the frame) and not written since, on the path that falls through to each
        exit. A block's state is the intersection over its predecessors, so the fall-through
        predecessor alone bounds it; where there is none (after a jump, a return, a trap, a
        call that does not return, or a gap between ranges) the bound is every register. A
        call forgets everything, and only sure writes (`scan.trace`) remove a register; an
        exit tail-calling into the same CU may reach a restore stub (`_stub_restores`), so
        it bounds nothing. Pointer authentication makes this matter on arm64: `autiasp`
        rewrites x30 after `ldp x29, x30` restores it, so x30 is not preserved.
        """
        clobbered = self.abi.call_clobbered
        kept = scan.entry_saves & clobbered
        if not kept:
            return False
        by_address = {i.address: i for i in insns}
        anything = True  # the bound: every register but `killed`, or exactly `restored`
        killed: set[str] = set()
        restored: set[str] = set()
        exits = 0
        first = True
        for address, event, regs in scan.trace:
            if event == GAP:
                # The entry block starts with nothing restored; a later range with every
                # register possible.
                anything, killed, restored = not first, set(), set()
                first = False
            elif event == RESTORE:
                killed -= regs
                restored |= regs
            elif event == KILL:
                killed |= regs
                restored -= regs
            else:
                insn = by_address.get(address)
                if insn is None:
                    continue
                flow = insn.flow
                if flow == "return" or (flow in ("jump", "cond-jump") and leaves(insn)):
                    exits += 1
                    if flow == "return" or self.resolve(insn.target or 0) not in group:
                        kept &= clobbered - killed if anything else restored
                        if not kept:
                            return False
                if flow in ("call", "indirect-call"):
                    # What a call returns to starts with nothing restored; after one that
                    # does not return, the next block is reached only by jumps.
                    anything = flow == "call" and insn.target in noreturn
                    killed, restored = set(), set()
                elif flow in ("jump", "return", "indirect-jump", "trap"):
                    anything, killed, restored = True, set(), set()
        return exits > 0 and bool(kept)

    # --- custom conventions ----------------------------------------------------------------

    def _asm_region(self, address: int) -> tuple[int, int] | None:
        """[address, end) of asm code entered at `address`: up to the end of its symbol."""
        section = self.binary.find_section_at(address)
        if section is None or not section.is_exec:
            return None
        limit = min(section.address + section.size, address + _MAX_ASM_REGION)
        size = self._code_sizes.get(address, 0)
        if size:
            return address, min(address + size, limit)
        containing = self.resolve(address)
        if containing is not None and self.funcs[containing].size:
            f = self.funcs[containing]
            return address, min(f.start + f.size, limit)
        i = bisect.bisect_right(self._code_bounds, address)
        if i < len(self._code_bounds):
            limit = min(limit, self._code_bounds[i])
        return (address, limit) if limit > address else None

    def _asm_resolve(self, address: int) -> int | None:
        """Like `resolve`, but a branch into asm code that is not a function start is its own
        piece of code (a fixup label, a NOTYPE stub), so only the code that runs counts."""
        start = self.resolve(address)
        if start == address or (start is not None and self._is_c_function(start)):
            return start
        if self._asm_region(address) is not None:
            return address
        return start

    def _is_asm_code(self, start: int) -> bool:
        if start in self._external_names or start in self._known or self._is_c_function(start):
            return False
        if start in self.funcs and self.funcs[start].name in self._thunk_names:
            return False
        return self._asm_region(start) is not None

    def _actual_clobbers(self, start: int) -> frozenset[str]:
        """Clobber set of asm code without C DWARF, from its code (memoised).

        The asm reachable from `start` by calls and tail calls (stopping at C functions, whose
        callers can rely on nothing but the ABI) is analysed as one group, so a register saved
        at entry and restored in a tail-called stub (preempt_schedule_thunk restores through
        `__thunk_restore`, arch/x86/entry/thunk_64.S) is preserved, and a jump to an error
        label (`bad_get_user`) adds only what that label's code writes.
        """
        found = self._asm_clobbers.get(start)
        if found is not None:
            return found
        facts: dict[int, FunctionFacts] = {}
        # The whole closure every time, memoised or not: a member analysed without its
        # tail-called restore stub would lose the stub's restores, so the result would depend
        # on which function was asked for first (and the index on the batching).
        todo = [start]
        overflow = False
        while todo:
            address = todo.pop()
            if address in facts:
                continue
            if len(facts) == _MAX_ASM_GROUP:
                overflow = True
                break
            region = self._asm_region(address)
            if region is None:
                continue
            name = self.funcs[address].name if address in self.funcs else f"{address:#x}"
            code = FunctionCode(name, (region,), self._decode(self._read((region,))))
            facts[address] = analyse_function(
                self.arch,
                address,
                code,
                resolve=self._asm_resolve,
                read_pointer=self._read_pointer,
                is_function_start=self._is_function_start,
            )
            todo.extend(
                e.callee
                for e in facts[address].calls
                if e.callee is not None and e.callee not in facts and self._is_asm_code(e.callee)
            )

        if overflow:
            # Too much asm behind it: the ABI set.
            self._asm_clobbers[start] = self.abi.call_clobbered
            return self.abi.call_clobbered

        def outside(_callee: int) -> frozenset[str]:
            # C functions, thunks and externals: the ABI set.
            return self.abi.call_clobbered

        # The closure of each member lies inside this group, so every member's result is
        # exact and can be kept.
        self._asm_clobbers.update(compute_clobbers(self.arch, facts, outside))
        self._asm_facts.update(facts)
        return self._asm_clobbers.get(start, self.abi.call_clobbered)

    def _default_clobbers(self, callee: int) -> frozenset[str]:
        known = self._known.get(callee)
        if known is not None:
            return known.clobbers
        if not self._is_asm_code(callee):
            return self.abi.call_clobbered
        return self._actual_clobbers(callee)

    def _return_registers_of(
        self, callee: int, return_sizes: Mapping[int, int | None]
    ) -> tuple[str, ...] | None:
        """The result registers of a callee, None when unknown.

        A static-call trampoline (`__SCT__<name>`, include/linux/static_call_types.h) is
        retargeted at run time by static_call_update(), so the code in the image (often a
        bare `ret`) says nothing about the result its callers read in rax: the first return
        register. A C function of this CU: its DWARF return type (`abi.result_registers`),
        except a `.isra` clone's, since IPA-SRA may drop a result no caller uses. Otherwise
        None, and the analysis takes the return registers the callee writes.
        """
        f = self.funcs.get(callee)
        if f is not None and f.name.startswith(_STATIC_CALL_TRAMP_PREFIX):
            return self.abi.return_registers[:1]
        size = return_sizes.get(callee)
        if size is None or (size and f is not None and "isra" in parse_clone_name(f.name).kinds):
            return None
        if self.arch == "x86_64" and size in (1, 2):
            # A bool or char result is only al (`sete al; ret`): the rest of rax is undefined
            # (x86-64 psABI 3.2.3), so its old upper bits are no kept value.
            return ("al",) if size == 1 else ("ax",)
        return result_registers(self.arch, size)

    def _symbol_prefix(self, cu: CuFacts) -> str:
        """The prefix objcopy gave this CU's symbols, e.g. `__kvm_nvhe_` or `__efistub_`.

        arm64 links some objects with renamed symbols (`--prefix-symbols` in
        arch/arm64/kvm/hyp/nvhe/Makefile, arch/arm64/kernel/pi/Makefile and
        drivers/firmware/efi/libstub/Makefile), while their DWARF keeps the C names: a
        noreturn callee such as `__host_enter` is the symbol `__kvm_nvhe___host_enter`.
        """
        for sp in cu.subprograms:
            if not sp.name or not sp.ranges:
                continue
            f = self.funcs.get(min(r[0] for r in sp.ranges))
            if f is None or "." in f.name:  # Clones and absent symbols say nothing.
                continue
            head = f.name[: -len(sp.name)] if f.name.endswith(sp.name) else ""
            return head if head.startswith("__") and head.endswith("_") else ""
        return ""

    # --- the analysis ----------------------------------------------------------------------

    def analyse(
        self, facts: Sequence[CuFacts], deadline: Deadline = NO_DEADLINE
    ) -> tuple[list[RegisterUse], list[RegisterDependent]]:
        """Register uses and dependents of every function whose code lies in these CUs.

        Each CU is analysed on its own, as GCC compiled it: what a CU knows of another (its
        noreturn declarations, parameter locations, exact clobbers) must not leak into it just
        because both were sent in the same batch, or the index would depend on the batching.
        `deadline` is checked between functions.
        """
        uses: list[RegisterUse] = []
        deps: list[RegisterDependent] = []
        for cu in facts:
            cu_uses, cu_deps = self._analyse_cu(cu, deadline)
            uses.extend(cu_uses)
            deps.extend(cu_deps)
        return uses, deps

    def _analyse_cu(
        self, cu: CuFacts, deadline: Deadline = NO_DEADLINE
    ) -> tuple[list[RegisterUse], list[RegisterDependent]]:
        instance_ranges: dict[int, tuple[tuple[int, int], ...]] = {}
        params: dict[int, tuple[str, ...]] = {}
        return_sizes: dict[int, int | None] = {}
        noreturn_names: set[str] = set(_NORETURN_BUILTINS)
        by_die = {s.die_offset: s for s in cu.subprograms}
        for sp in cu.subprograms:
            if sp.noreturn and sp.name:
                noreturn_names.add(sp.name)
            if sp.abstract_origin is not None:
                origin = by_die.get(sp.abstract_origin)
                if origin is not None and origin.noreturn and sp.ranges:
                    noreturn_names.add(origin.name or "")
            if not sp.ranges:
                continue
            low = min(r[0] for r in sp.ranges)
            found = find_symbol_start(low, self._start_set, self.arch)
            entry = low if found is None else found
            # Include the patchable-entry NOPs (arm64) that precede DWARF's low_pc.
            instance_ranges[entry] = tuple(
                (entry, hi) if lo == low else (lo, hi) for lo, hi in sp.ranges
            )
            regs = tuple(p.location for p in sp.params if p.location in self.abi.call_clobbered)
            if sp.return_size is not None and sp.return_size > MAX_REGISTER_RESULT:
                # The address of the result: x8 on arm64, rdi on x86-64 (the C parameters'
                # locations already start at rsi there).
                regs = (*regs, self.abi.indirect_result)
            params[entry] = regs
            return_sizes[entry] = sp.return_size
        group = {a: self.funcs[a] for a in self._funcs_by_cu.get(cu.unit.offset, ())}
        prefix = self._symbol_prefix(cu)
        noreturn = {
            self.names[prefix + n] if prefix + n in self.names else self.names[n]
            for n in noreturn_names
            if prefix + n in self.names or n in self.names
        }
        ffacts: dict[int, FunctionFacts] = {}
        quick: dict[int, tuple[CallEdge, ...]] = {}
        flags = self.units[cu.unit.offset].flags
        plain = not cu.unit.is_asm and not flags.ipa_ra and not self.exhaustive
        # GCC clones get the registers they really receive (`RegisterUse.arguments`), which
        # needs their CFG: never the fast path.
        clones = {
            start
            for start, f in group.items()
            if not cu.unit.is_asm and set(parse_clone_name(f.name).kinds) & _SIGNATURE_CLONES
        }
        for start, f in group.items():
            deadline.check()
            ranges = self._ranges_of(f, instance_ranges)
            chunks = self._read(ranges)
            if plain and start not in clones:
                calls = self._quick_calls(start, ranges, chunks, cu.unit.offset, noreturn)
                if calls is not None:
                    quick[start] = calls
                    self.fast_path_functions += 1
                    continue
            code = FunctionCode(f.name, ranges, self._decode(chunks))
            ffacts[start] = analyse_function(
                self.arch,
                start,
                code,
                resolve=self.resolve,
                noreturn=noreturn,
                read_pointer=self._read_pointer,
                is_function_start=self._is_function_start,
            )
        deadline.check()
        clobbers = compute_clobbers(self.arch, ffacts, self._default_clobbers)
        clobbers.update((start, self.abi.call_clobbered) for start in quick)
        if cu.unit.is_asm:
            # What its callers see: the asm analysed with the labels it jumps to.
            clobbers.update((start, self._actual_clobbers(start)) for start in ffacts)

        def arg_registers_of(callee: int) -> tuple[str, ...] | None:
            return params.get(callee)

        def reason_for(caller: int, callee: int) -> DependencyReason | None:
            if callee in self._external_names:
                return None
            if callee in self._known:
                return "custom-convention"
            caller_cu = self.funcs[caller].cu if caller in self.funcs else None
            callee_cu = self.funcs[callee].cu if callee in self.funcs else None
            if callee_cu is None or self.units[callee_cu].unit.is_asm:
                return "custom-convention"
            if caller_cu == callee_cu and self.units[caller_cu].flags.ipa_ra:
                return "ipa-ra"
            return None

        def return_registers_of(callee: int) -> tuple[str, ...] | None:
            return self._return_registers_of(callee, return_sizes)

        dependents, _artefacts, _fallbacks = find_register_dependents(
            self.arch,
            ffacts,
            clobbers,
            reason_for=reason_for,
            arg_registers_of=arg_registers_of,
            return_registers_of=return_registers_of,
            default_clobbers=self._default_clobbers,
            dependents_only=True,
            outside=self._asm_facts,
        )
        arguments = find_entry_arguments(
            self.arch,
            ffacts,
            clobbers,
            sorted(clones),
            arg_registers_of=arg_registers_of,
            return_registers_of=return_registers_of,
            default_clobbers=self._default_clobbers,
        )

        def edges(calls: tuple[CallEdge, ...]) -> tuple[CallEdge, ...]:
            return tuple(
                dataclasses.replace(e, callee=None)
                if e.callee is not None
                and (e.callee in self._external_names or e.callee in self._known)
                else e
                for e in calls
            )

        uses = [
            RegisterUse(start, clobbers[start], frozenset(), edges(quick[start]))
            if start in quick
            else RegisterUse(
                start,
                clobbers[start],
                ffacts[start].callee_saved_clobbers,
                edges(ffacts[start].calls),
                arguments.get(start),
            )
            for start in group
        ]
        # Dependents reached through asm code may land on its fixup labels (`bad_get_user`,
        # the unnamed `.Lbad_put_user_clac`): only functions are kept, what a patch can name.
        deps = [
            d
            for d in dependents
            if d.callee not in self._external_names
            and (not d.via or d.callee in self.funcs or d.callee in self._known)
        ]
        return uses, deps
