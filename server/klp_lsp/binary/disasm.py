"""Disassemble one function into `Insn` records: folded register reads/writes and control flow.

`Decoder` owns two capstone handles and a cache keyed by the instruction text with its numbers
masked (`mov rax, qword ptr [rbp - #]`): register accesses depend only on the mnemonic and the
registers named, so the slow detail decode with `regs_access()` runs once per distinct form and
every other instruction comes from the fast `disasm_lite` pass. Decode per function: capstone's
detail mode on a whole `.text` section takes gigabytes of memory.

`Insn` is a `NamedTuple`, the one record here that is not a frozen dataclass: an index build
creates one per instruction (~2.7 million for the amd64 vmlinux), and a frozen dataclass sets each
field through `object.__setattr__` (8.4 s of a full amd64 index, docs/performance.md). Derive
a changed copy with `insn._replace(...)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import capstone
from capstone import arm64 as cs_arm64
from capstone import x86 as cs_x86

from klp_lsp.binary.abi import fold_register, get_abi
from klp_lsp.errors import BinaryFormatError

FlowKind = Literal[
    "fallthrough",
    "jump",
    "cond-jump",
    "call",
    "return",
    "indirect-jump",
    "indirect-call",
    "trap",
]


class Insn(NamedTuple):
    """One decoded instruction with full-width register reads and writes."""

    address: int
    size: int
    mnemonic: str
    op_str: str
    reads: frozenset[str]
    writes: frozenset[str]
    flow: FlowKind
    target: int | None = None  # direct branch or call target
    # For x86 `jmp [index*scale + disp]` (a jump table in non-PIC code): (disp, index, scale).
    table: tuple[int, str, int] | None = None
    # Registers stored to / loaded from the stack frame (`push`/`pop`, `stp`/`ldp` with an
    # sp or x29 base): how save and restore pairs are recognised.
    saves: frozenset[str] = frozenset()
    restores: frozenset[str] = frozenset()

    @property
    def end(self) -> int:
        return self.address + self.size


_EMPTY: frozenset[str] = frozenset()

# What capstone's fast pass gives per instruction: (address, size, mnemonic, operands).
LiteInsn = tuple[int, int, str, str]
_NUMBER = re.compile(r"0x[0-9a-f]+|(?<![\w.])\d+")

# x86 idioms that write a register without depending on its old value (`xor eax, eax`).
_X86_ZERO_IDIOMS = frozenset(("xor", "sub", "sbb"))
_X86_CONST_IDIOMS = frozenset(("or", "and"))
_X86_COND_JUMPS_EXTRA = frozenset(("jrcxz", "jecxz", "jcxz", "loop", "loope", "loopne"))
_X86_RETURNS = frozenset(("ret", "retf", "iret", "iretd", "iretq", "sysret", "sysretq"))
_X86_TRAPS = frozenset(("ud2", "int3", "ud1", "ud0"))

# Capstone 5 reports the destination of these AArch64 instructions as read and written (and
# the first operand of the compares as written): they are aliases of SBFM/UBFM, whose
# destination is write-only, and flag-setting compares with no destination at all.
_A64_DEST_WRITE_ONLY = frozenset(
    (
        "sxtb", "sxth", "sxtw", "uxtb", "uxth", "uxtw",
        "sbfx", "ubfx", "sbfiz", "ubfiz", "sbfm", "ubfm",
        "lsl", "lsr", "asr",
    )
)  # fmt: skip
_A64_NO_DEST = frozenset(("cmp", "cmn", "tst", "ccmp", "ccmn"))
_A64_COND_JUMPS = frozenset(("cbz", "cbnz", "tbz", "tbnz"))
_A64_RETURNS = frozenset(("ret", "retaa", "retab", "eret", "eretaa", "eretab"))
_A64_INDIRECT_CALLS = frozenset(("blr", "blraa", "blraaz", "blrab", "blrabz"))
_A64_INDIRECT_JUMPS = frozenset(("br", "braa", "braaz", "brab", "brabz"))
_A64_TRAPS = frozenset(("brk", "udf", "hlt"))


@dataclass(frozen=True, slots=True)
class _Encoding:
    reads: frozenset[str]
    writes: frozenset[str]
    table: tuple[int, str, int] | None
    saves: frozenset[str]
    restores: frozenset[str]
    plain: bool  # neither a branch, call, return nor trap: flow is "fallthrough"


def _base_mnemonic(mnemonic: str) -> str:
    """`jmp` for `notrack jmp`, `ret` for `repz ret`/`bnd ret`: prefixes do not change flow."""
    return mnemonic.rpartition(" ")[2]


def _is_plain(arch: str, mnemonic: str) -> bool:
    if arch == "x86_64":
        mnemonic = _base_mnemonic(mnemonic)
        return not (
            mnemonic.startswith("j")
            or mnemonic in ("call", "ud2", "int3", "ud1", "ud0")
            or mnemonic in _X86_RETURNS
            or mnemonic in _X86_COND_JUMPS_EXTRA
        )
    return not (
        mnemonic in ("b", "bl")
        or mnemonic.startswith("b.")
        or mnemonic in _A64_COND_JUMPS
        or mnemonic in _A64_RETURNS
        or mnemonic in _A64_INDIRECT_CALLS
        or mnemonic in _A64_INDIRECT_JUMPS
        or mnemonic in _A64_TRAPS
    )


def _constant_operand(mnemonic: str, imm: int, size: int) -> bool:
    """True when `or`/`and` with `imm` on a `size`-byte register ignores its old value.

    Only 32- and 64-bit writes replace the whole register (a 32-bit write zero-extends); `or
    ax, 0xffff` keeps the upper bits of rax, so it still reads them.
    """
    if size not in (4, 8):
        return False
    if mnemonic == "and":
        return imm == 0
    mask = (1 << (8 * size)) - 1
    return (imm & mask) == mask


def _parse_target(op_str: str) -> int | None:
    """The direct target printed as the last operand (`0x401000`, `x1, #0x1084`)."""
    last = op_str.rsplit(",", 1)[-1].strip().lstrip("#")
    if not last.startswith("0x"):
        return None
    try:
        return int(last, 16)
    except ValueError:
        return None


# Names of callee-saved registers (and their sub-registers) as operands print them: a word
# not preceded by a letter or digit, so `x20` in `x20, [sp]` but not in `#-0x20`.
_CALLEE_SAVED_NAMES = {
    "x86_64": re.compile(r"(?<![\w#])(?:[re]?bx|b[lh]|[re]?bp|bpl|r1[2-5][dwb]?)\b"),
    "aarch64": re.compile(r"(?<![\w#])(?:[xw](?:19|2\d|30)|fp|lr)\b"),
}
_X86_IMPLICIT_CALLEE_SAVED_WRITERS = frozenset(("cpuid", "leave", "enter"))
_A64_FRAME_STORES = frozenset(("stp", "str", "stur"))
_A64_FRAME_LOADS = frozenset(("ldp", "ldr", "ldur"))
_X30 = frozenset(("x30",))
# Flows that end a basic block (a call ends one only when its callee does not return).
BLOCK_ENDING_FLOWS: frozenset[FlowKind] = frozenset(
    ("jump", "cond-jump", "return", "indirect-jump", "trap")
)


# Instructions that certainly write the register named by their first operand (the second
# too for `ldp`), for `scan_flow`'s kill events. Only sure writes: a missed write keeps a
# register "restored" for longer, which can only send a function to the full analysis.
_A64_WRITES_FIRST = frozenset(
    (
        "mov", "movz", "movn", "movk", "mvn", "neg", "negs", "add", "adds", "sub", "subs",
        "and", "ands", "orr", "orn", "eor", "eon", "bic", "bics", "lsl", "lsr", "asr", "ror",
        "mul", "madd", "msub", "smull", "umull", "smulh", "umulh", "udiv", "sdiv", "adc",
        "sbc", "csel", "csinc", "csinv", "csneg", "cset", "csetm", "cinc", "cneg", "ubfx",
        "sbfx", "ubfiz", "sbfiz", "bfi", "bfxil", "sxtb", "sxth", "sxtw", "uxtb", "uxth",
        "adr", "adrp", "mrs", "clz", "rev", "rbit", "extr", "ldr", "ldur", "ldrb", "ldrh",
        "ldrsb", "ldrsh", "ldrsw", "ldp", "ldar", "ldxr", "ldaxr",
    )
)  # fmt: skip
_A64_WRITES_SECOND = frozenset(("ldp",))
_A64_WRITES_X30 = frozenset(("autiasp", "autibsp", "paciasp", "pacibsp", "xpaclri"))
_X86_WRITES_FIRST = frozenset(
    (
        "mov", "movzx", "movsx", "movsxd", "movabs", "lea", "xor", "add", "sub", "and", "or",
        "shl", "shr", "sar", "inc", "dec", "neg", "not",
    )
)  # fmt: skip


def _operand_names(regs: set[str]) -> tuple[str, ...]:
    """How arm64 operands start when they name one of `regs` (x-registers) first."""
    return tuple(f"{w}{r[1:]}," for r in sorted(regs) if r.startswith("x") for w in "xw")


# Register events of `FlowScan.trace`.
RESTORE, KILL, FLOW, GAP = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class FlowScan:
    """One function's control flow from the fast decode alone, with what decides its registers.

    `Decoder.scan_flow` builds it without the per-encoding register tables: only branches,
    calls, returns and traps become `Insn`s (with empty reads and writes), and the rest of
    the code is summarised by names. The index uses it for functions whose clobber set is
    the whole ABI set by their calls alone (index/regfacts.py says when).
    """

    insns: tuple[Insn, ...]  # control-flow instructions only, sorted by address
    # Registers stored to the frame (`push`, `stp`/`str` with an sp or x29 base) from the
    # entry up to the first instruction that ends a block: a superset of the entry block's.
    entry_saves: frozenset[str]
    saves: frozenset[str]  # registers stored to the frame anywhere
    named: frozenset[str]  # callee-saved registers named in an operand, folded
    # An instruction that writes a callee-saved register without naming it (x86 `cpuid`
    # writes rbx, `leave`/`enter` write rbp).
    implicit_writes: bool
    # In address order: (address, RESTORE, registers) for a load from the frame (`pop`,
    # `ldp`/`ldr` with an sp or x29 base), (address, KILL, registers) for a sure write of a
    # call-clobbered register saved at entry (after the entry run only those are kept),
    # (address, FLOW, ()) for each of `insns`, (address, GAP, ()) where a range starts that
    # does not continue the previous one.
    trace: tuple[tuple[int, int, frozenset[str]], ...]


# Register accesses of each instruction form (`Decoder._cache`), per architecture.
_ENCODINGS: dict[str, dict[str, _Encoding]] = {}


def clear_encoding_cache() -> None:
    """Forget every instruction form decoded so far (for tests and benchmarks that count or
    time the detail decodes from a cold start)."""
    _ENCODINGS.clear()


class Decoder:
    """Decodes functions of one architecture; reuse one instance to share its encoding cache.

    `thunks` maps the addresses of the kernel's return and indirect-branch thunks to their
    names (`__x86_return_thunk`, `__x86_indirect_thunk_rax`, ...): a jump to the return thunk
    is a return, a call or jump to `__x86_indirect_thunk_<reg>` is an indirect call or jump
    through `<reg>`; a call to `__fentry__` preserves every register and is not a call.
    arm64 kernels have no such thunks (their ftrace entries are nops).
    """

    def __init__(self, arch: str, thunks: Mapping[int, str] | None = None) -> None:
        self.arch = arch
        self.abi = get_abi(arch)
        if arch == "x86_64":
            cs_arch, cs_mode = capstone.CS_ARCH_X86, capstone.CS_MODE_64
        else:
            cs_arch, cs_mode = capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM
        self._lite = capstone.Cs(cs_arch, cs_mode)
        self._detail = capstone.Cs(cs_arch, cs_mode)
        self._detail.detail = True
        # Shared by every decoder of the architecture in this process: a module's index starts
        # with the forms the modules before it needed (1,121 amd64 modules in one worker).
        self._cache = _ENCODINGS.setdefault(arch, {})
        self._thunks: dict[int, str] = dict(thunks or {})
        self.detail_decodes = 0  # how many encodings needed the slow path
        self._folded: dict[str, frozenset[str]] = {}
        self._plain: dict[str, bool] = {}

    def lite(self, code: bytes, address: int) -> list[LiteInsn]:
        """capstone's fast pass over `code` loaded at `address`, for `decode` and `scan_flow`."""
        return list(self._lite.disasm_lite(code, address))

    def decode(
        self, code: bytes, address: int, lite: Sequence[LiteInsn] | None = None
    ) -> tuple[Insn, ...]:
        """Decode `code` loaded at `address`; stops at the first undecodable byte.

        `lite`: `self.lite(code, address)`, when the caller has it already.
        """
        out: list[Insn] = []
        make = self._make_x86 if self.arch == "x86_64" else self._make_a64
        cache = self._cache
        if lite is None:
            lite = self.lite(code, address)
        for addr, size, mnemonic, op_str in lite:
            # Register accesses depend on the mnemonic and the registers named, never on the
            # numbers (displacements, immediates, targets), so those are masked in the key.
            # Except for `or`/`and`, where an immediate of -1/0 makes the old value unused.
            masked = op_str if mnemonic in _X86_CONST_IDIOMS else _NUMBER.sub("#", op_str)
            key = f"{mnemonic} {masked}"
            enc = cache.get(key)
            if enc is None:
                offset = addr - address
                enc = self._encode(code[offset : offset + size], addr)
                if enc.table is None:  # A table's address is a number: not shareable.
                    cache[key] = enc
            if enc.plain:
                out.append(
                    Insn(
                        addr,
                        size,
                        mnemonic,
                        op_str,
                        enc.reads,
                        enc.writes,
                        "fallthrough",
                        None,
                        None,
                        enc.saves,
                        enc.restores,
                    )
                )
            else:
                out.append(make(addr, size, mnemonic, op_str, enc))
        return tuple(out)

    def scan_flow(self, ranges: Sequence[Sequence[LiteInsn]]) -> FlowScan:
        """The control flow of a function's ranges (`self.lite` of each, in address order).

        The fast path of the index: no per-encoding register table, so no detail decode and
        no `Insn` for the ~75% of instructions that neither branch nor call.
        """
        x86 = self.arch == "x86_64"
        make = self._make_x86 if x86 else self._make_a64
        blank = _Encoding(_EMPTY, _EMPTY, None, _EMPTY, _EMPTY, False)
        fold = self._fold_cached
        plain_of = self._plain
        clobbered = self.abi.call_clobbered
        writes_first = _X86_WRITES_FIRST if x86 else _A64_WRITES_FIRST
        out: list[Insn] = []
        trace: list[tuple[int, int, frozenset[str]]] = []
        operands: list[str] = []
        entry_saves: set[str] = set()
        watched: set[str] = set()  # call-clobbered registers saved in the entry run
        saves: set[str] = set()
        implicit = False
        in_entry = True
        # After the entry run, an arm64 write is a kill event only if its first operand is a
        # watched register (`x2, ...`, `w2, ...`): the string test is cheaper than parsing.
        watched_names: tuple[str, ...] = ()
        end = None
        for lite in ranges:
            if lite and lite[0][0] != end:
                trace.append((lite[0][0], GAP, _EMPTY))
            for addr, size, mnemonic, op_str in lite:
                operands.append(op_str)
                end = addr + size
                if x86:
                    if mnemonic == "push":
                        saved = fold(op_str)
                        saves |= saved
                        if in_entry:
                            entry_saves |= saved
                            watched |= saved & clobbered
                    elif mnemonic == "pop":
                        trace.append((addr, RESTORE, fold(op_str)))
                    elif mnemonic in writes_first and (in_entry or watched):
                        written = fold(op_str.partition(",")[0])
                        if written and (in_entry or written <= watched):
                            trace.append((addr, KILL, written))
                    elif mnemonic in _X86_IMPLICIT_CALLEE_SAVED_WRITERS:
                        implicit = True
                else:
                    frame = False
                    if mnemonic in _A64_FRAME_STORES or mnemonic in _A64_FRAME_LOADS:
                        named, bracket, base = op_str.partition("[")
                        frame = bool(bracket) and base.split(",", 1)[0].rstrip("]!") in (
                            "sp",
                            "x29",
                            "fp",
                        )
                    if frame:
                        regs = frozenset(r for n in named.split(",") for r in fold(n.strip()))
                        if mnemonic in _A64_FRAME_LOADS:
                            trace.append((addr, RESTORE, regs))
                        else:
                            saves |= regs
                            if in_entry:
                                entry_saves |= regs
                                watched |= regs & clobbered
                    elif mnemonic in writes_first and (
                        in_entry
                        or mnemonic in _A64_WRITES_SECOND
                        or (watched_names and op_str.startswith(watched_names))
                    ):
                        parts = op_str.split(",", 2)
                        written = fold(parts[0].strip())
                        if mnemonic in _A64_WRITES_SECOND and len(parts) > 1:
                            written = written | fold(parts[1].strip())
                        if written and (in_entry or written & watched):
                            trace.append((addr, KILL, written))
                    elif mnemonic in _A64_WRITES_X30:
                        trace.append((addr, KILL, _X30))
                plain = plain_of.get(mnemonic)
                if plain is None:
                    plain = plain_of[mnemonic] = _is_plain(self.arch, mnemonic)
                if plain:
                    continue
                insn = make(addr, size, mnemonic, op_str, blank)
                if in_entry and insn.flow in BLOCK_ENDING_FLOWS:
                    in_entry = False
                    watched_names = _operand_names(watched)
                trace.append((addr, FLOW, _EMPTY))
                out.append(insn)
            if in_entry:
                in_entry = False
                watched_names = _operand_names(watched)
        named_regs: set[str] = set()
        for token in set(_CALLEE_SAVED_NAMES[self.arch].findall(" ".join(operands))):
            named_regs |= fold(token)
        return FlowScan(
            tuple(out),
            frozenset(entry_saves),
            frozenset(saves),
            frozenset(named_regs),
            implicit,
            tuple(trace),
        )

    def _fold_cached(self, name: str) -> frozenset[str]:
        found = self._folded.get(name)
        if found is None:
            found = self._fold({name})
            self._folded[name] = found
        return found

    def _encode(self, raw: bytes, addr: int) -> _Encoding:
        self.detail_decodes += 1
        try:
            insn = next(self._detail.disasm(raw, addr, 1))
        except (StopIteration, capstone.CsError) as e:
            raise BinaryFormatError(f"capstone cannot re-decode {raw.hex()} at {addr:#x}") from e
        regs_read, regs_write = insn.regs_access()
        reads = self._fold({insn.reg_name(r) for r in regs_read})
        writes = self._fold({insn.reg_name(r) for r in regs_write})
        table = None
        if self.arch == "x86_64":
            reads, writes, table = self._fix_x86(insn, reads, writes)
        else:
            reads, writes = self._fix_a64(insn, reads, writes)
        saves, restores = self._stack_transfers(insn)
        plain = _is_plain(self.arch, insn.mnemonic)
        return _Encoding(reads, writes, table, saves, restores, plain)

    def _stack_transfers(self, insn: capstone.CsInsn) -> tuple[frozenset[str], frozenset[str]]:
        """Registers this instruction saves to or restores from the stack frame."""
        mnemonic = insn.mnemonic
        if self.arch == "x86_64":
            if mnemonic not in ("push", "pop"):
                return _EMPTY, _EMPTY
            ops = insn.operands
            if len(ops) != 1 or ops[0].type != cs_x86.X86_OP_REG:
                return _EMPTY, _EMPTY
            regs = self._fold({insn.reg_name(ops[0].reg)})
            return (regs, _EMPTY) if mnemonic == "push" else (_EMPTY, regs)
        is_store = mnemonic in ("stp", "str", "stur")
        if not is_store and mnemonic not in ("ldp", "ldr", "ldur"):
            return _EMPTY, _EMPTY
        regs_named: set[str] = set()
        frame_base = False
        for op in insn.operands:
            if op.type == cs_arm64.ARM64_OP_REG:
                regs_named.add(insn.reg_name(op.reg))
            elif op.type == cs_arm64.ARM64_OP_MEM:
                base = insn.reg_name(op.mem.base) if op.mem.base else None
                frame_base = base in ("sp", "x29", "fp")
        if not frame_base:
            return _EMPTY, _EMPTY
        regs = self._fold(regs_named)
        return (regs, _EMPTY) if is_store else (_EMPTY, regs)

    def _fold(self, names: set[str]) -> frozenset[str]:
        folded = {fold_register(self.arch, n) for n in names}
        folded.discard(None)
        folded.discard(self.abi.stack_pointer)
        return frozenset(r for r in folded if r is not None)

    def _fix_x86(
        self, insn: capstone.CsInsn, reads: frozenset[str], writes: frozenset[str]
    ) -> tuple[frozenset[str], frozenset[str], tuple[int, str, int] | None]:
        ops = insn.operands
        mnemonic = _base_mnemonic(insn.mnemonic)
        if mnemonic == "nop":
            # Multi-byte nops (`nop dword ptr [rax]`) name a register but never read it.
            return _EMPTY, _EMPTY, None
        if (
            mnemonic in _X86_ZERO_IDIOMS
            and len(ops) == 2
            and ops[0].type == cs_x86.X86_OP_REG
            and ops[1].type == cs_x86.X86_OP_REG
            and ops[0].reg == ops[1].reg
        ):
            reads = reads - self._fold({insn.reg_name(ops[0].reg)})
        if (
            mnemonic in _X86_CONST_IDIOMS
            and len(ops) == 2
            and ops[0].type == cs_x86.X86_OP_REG
            and ops[1].type == cs_x86.X86_OP_IMM
            and _constant_operand(mnemonic, ops[1].imm, ops[0].size)
        ):
            # `or rsi, -1`, `or r8d, 0xffffffff` and `and eax, 0` set a constant: the old value
            # is not used.
            reads = reads - self._fold({insn.reg_name(ops[0].reg)})
        table = None
        if mnemonic == "jmp" and len(ops) == 1 and ops[0].type == cs_x86.X86_OP_MEM:
            mem = ops[0].mem
            if mem.base == 0 and mem.index != 0 and mem.scale == 8:
                index = fold_register("x86_64", insn.reg_name(mem.index))
                if index is not None:
                    table = (mem.disp & 0xFFFFFFFFFFFFFFFF, index, mem.scale)
        return reads, writes, table

    def _fix_a64(
        self, insn: capstone.CsInsn, reads: frozenset[str], writes: frozenset[str]
    ) -> tuple[frozenset[str], frozenset[str]]:
        mnemonic = insn.mnemonic
        if mnemonic in _A64_NO_DEST or mnemonic in _A64_DEST_WRITE_ONLY:
            regs = [
                fold_register("aarch64", insn.reg_name(op.reg))
                for op in insn.operands
                if op.type == cs_arm64.ARM64_OP_REG
            ]
            named = [r for r in regs if r is not None]
            if mnemonic in _A64_NO_DEST:
                return frozenset(named), _EMPTY
            if regs and regs[0] is not None:
                return frozenset(r for r in regs[1:] if r is not None), frozenset((regs[0],))
        if mnemonic in _A64_RETURNS:
            reads = reads | {"x30"}
        return reads, writes

    def _thunk_reg(self, target: int | None) -> tuple[str | None, str | None]:
        """(thunk kind, register) for a branch target that is a known thunk."""
        if target is None:
            return None, None
        name = self._thunks.get(target)
        if name is None:
            return None, None
        if name.startswith("__x86_return_thunk"):
            return "return", None
        if name == "__fentry__":
            return "fentry", None
        prefix = "__x86_indirect_thunk_"
        if name.startswith(prefix):
            return "indirect", fold_register("x86_64", name[len(prefix) :])
        return None, None

    def _make_x86(self, addr: int, size: int, mnemonic: str, op_str: str, enc: _Encoding) -> Insn:
        flow: FlowKind = "fallthrough"
        target = None
        reads, writes = enc.reads, enc.writes
        base = _base_mnemonic(mnemonic)
        if base == "jmp" or base == "call":
            target = _parse_target(op_str) if op_str.startswith("0x") else None
            kind, reg = self._thunk_reg(target)
            is_call = base == "call"
            if kind == "return" and not is_call:
                flow, target = "return", None
            elif kind == "fentry":
                # ftrace patches `call __fentry__` to a nop or to a trampoline that saves and
                # restores every register (arch/x86/kernel/ftrace_64.S): no call at all.
                flow, target = "fallthrough", None
            elif kind == "indirect":
                flow = "indirect-call" if is_call else "indirect-jump"
                target = None
                if reg is not None:
                    reads = reads | {reg}
            elif target is None:
                flow = "indirect-call" if is_call else "indirect-jump"
            else:
                flow = "call" if is_call else "jump"
        elif base.startswith("j") or base in _X86_COND_JUMPS_EXTRA:
            flow = "cond-jump"
            target = _parse_target(op_str)
        elif base in _X86_RETURNS:
            flow = "return"
        elif base in _X86_TRAPS:
            flow = "trap"
        return Insn(
            addr,
            size,
            mnemonic,
            op_str,
            reads,
            writes,
            flow,
            target,
            enc.table,
            enc.saves,
            enc.restores,
        )

    def _make_a64(self, addr: int, size: int, mnemonic: str, op_str: str, enc: _Encoding) -> Insn:
        flow: FlowKind = "fallthrough"
        target = None
        if mnemonic == "b":
            flow, target = "jump", _parse_target(op_str)
        elif mnemonic.startswith("b.") or mnemonic in _A64_COND_JUMPS:
            flow, target = "cond-jump", _parse_target(op_str)
        elif mnemonic == "bl":
            flow, target = "call", _parse_target(op_str)
        elif mnemonic in _A64_INDIRECT_CALLS:
            flow = "indirect-call"
        elif mnemonic in _A64_INDIRECT_JUMPS:
            flow = "indirect-jump"
        elif mnemonic in _A64_RETURNS:
            flow = "return"
        elif mnemonic in _A64_TRAPS:
            flow = "trap"
        return Insn(
            addr,
            size,
            mnemonic,
            op_str,
            enc.reads,
            enc.writes,
            flow,
            target,
            None,
            enc.saves,
            enc.restores,
        )


def find_thunks(symbols: Iterable[tuple[str, int, str | None]]) -> dict[int, str]:
    """Address -> name of the x86 return and indirect-branch thunks among (name, address,
    section) symbols. They are NOTYPE symbols in Debian's vmlinux (arch/x86/lib/retpoline.S
    uses SYM_CODE_START), so every symbol type counts."""
    return {
        address: name
        for name, address, section in symbols
        if section is not None
        and (name == "__x86_return_thunk" or name.startswith("__x86_indirect_thunk_"))
    }


def decode_function(
    arch: str, code: bytes, address: int, thunks: Mapping[int, str] | None = None
) -> tuple[Insn, ...]:
    """Decode one function's bytes; for many functions reuse a `Decoder` instead."""
    return Decoder(arch, thunks).decode(code, address)
