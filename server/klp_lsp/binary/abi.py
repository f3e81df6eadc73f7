"""Calling-convention tables for x86-64 (SysV) and AArch64 (AAPCS64), and register-name folding.

The kernel is built without SSE/FP/SIMD registers in C code (x86 `-mno-sse -mno-mmx
-mno-80387`, arm64 `-mgeneral-regs-only`), so vector and floating-point registers are
deliberately absent: they never carry values across calls in kernel C code and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from klp_lsp.errors import UnsupportedArchitecture
from klp_lsp.model import Arch


@dataclass(frozen=True, slots=True)
class Abi:
    """The register roles of one architecture's C calling convention, full-width names."""

    arch: Arch
    # Registers a callee may write without restoring them (caller-saved).
    call_clobbered: frozenset[str]
    # Registers a callee must restore before returning (the stack pointer included).
    callee_saved: frozenset[str]
    # Integer argument registers, in order.
    arg_registers: tuple[str, ...]
    # Registers that can carry a return value (the second one only for 128-bit values).
    return_registers: tuple[str, ...]
    stack_pointer: str
    # Where the caller passes the address of a result returned in memory (a struct over 16
    # bytes): x86-64 a hidden first argument in rdi (the C parameters move one register on),
    # AAPCS64 the indirect result register x8, beside x0-x7.
    indirect_result: str

    @property
    def return_set(self) -> frozenset[str]:
        """The return registers as a set."""
        return frozenset(self.return_registers)


_X86_64 = Abi(
    arch="x86_64",
    call_clobbered=frozenset(
        ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"),
    ),
    callee_saved=frozenset(("rbx", "rbp", "r12", "r13", "r14", "r15", "rsp")),
    arg_registers=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
    return_registers=("rax", "rdx"),
    stack_pointer="rsp",
    indirect_result="rdi",
)

# x18 is a temporary in AAPCS64; with CONFIG_SHADOW_CALL_STACK it holds the shadow stack
# pointer, which callees never write, so treating it as call-clobbered only over-approximates
# clobber sets. x8 is the indirect-result register and call-clobbered; x30 (lr) is written by
# every `bl`.
_AARCH64 = Abi(
    arch="aarch64",
    call_clobbered=frozenset([f"x{i}" for i in range(19)] + ["x30"]),
    callee_saved=frozenset([f"x{i}" for i in range(19, 30)] + ["sp"]),
    arg_registers=tuple(f"x{i}" for i in range(8)),
    return_registers=("x0", "x1"),
    stack_pointer="sp",
    indirect_result="x8",
)


# The largest result returned in registers (two of them); larger ones are returned in memory
# (x86-64 psABI 3.2.3, AAPCS64 6.9). Kernel C has no floating-point results.
MAX_REGISTER_RESULT = 16


def result_registers(arch: str, return_size: int | None) -> tuple[str, ...] | None:
    """Registers that carry a result of `return_size` bytes (0: void; None: unknown).

    A result in memory comes back as its address in rax on x86-64, and in no register on
    arm64 (the caller keeps the address it passed in x8, if it needs it).
    """
    if return_size is None:
        return None
    abi = get_abi(arch)
    if return_size == 0:
        return ()
    if return_size > MAX_REGISTER_RESULT:
        return abi.return_registers[:1] if arch == "x86_64" else ()
    return abi.return_registers[: 1 if return_size <= 8 else 2]


def get_abi(arch: str) -> Abi:
    """Return the calling convention of `arch` ("x86_64" or "aarch64")."""
    if arch == "x86_64":
        return _X86_64
    if arch == "aarch64":
        return _AARCH64
    raise UnsupportedArchitecture(f"no register analysis for architecture {arch!r}")


def _x86_fold_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for full, r32, r16, low8, high8 in (
        ("rax", "eax", "ax", "al", "ah"),
        ("rbx", "ebx", "bx", "bl", "bh"),
        ("rcx", "ecx", "cx", "cl", "ch"),
        ("rdx", "edx", "dx", "dl", "dh"),
    ):
        for name in (full, r32, r16, low8, high8):
            table[name] = full
    for full, r32, r16, low8 in (
        ("rsi", "esi", "si", "sil"),
        ("rdi", "edi", "di", "dil"),
        ("rbp", "ebp", "bp", "bpl"),
        ("rsp", "esp", "sp", "spl"),
    ):
        for name in (full, r32, r16, low8):
            table[name] = full
    for i in range(8, 16):
        for suffix in ("", "d", "w", "b"):
            table[f"r{i}{suffix}"] = f"r{i}"
    return table


def _aarch64_fold_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for i in range(31):
        table[f"x{i}"] = f"x{i}"
        table[f"w{i}"] = f"x{i}"
    # Capstone prints the aliases of x29 and x30.
    table["fp"] = "x29"
    table["lr"] = "x30"
    table["x29"] = "x29"
    table["x30"] = "x30"
    table["sp"] = "sp"
    table["wsp"] = "sp"
    return table


_FOLD = {"x86_64": _x86_fold_table(), "aarch64": _aarch64_fold_table()}


# Lanes of an x86-64 general register that an 8- or 16-bit write leaves apart: bits 0-7,
# bits 8-15 (ah, bh, ch, dh) and bits 16-63. Only 32- and 64-bit writes replace the whole
# register (a 32-bit write zero-extends); `setne dl`, `mov al, [rdi]`, `mov ax, 1` and
# `cmovne dx, ax` keep the rest (Intel SDM vol. 1, 3.4.1.1). AArch64 writes of wN zero-extend.
LANE_LOW = 1
LANE_HIGH_BYTE = 2
LANE_UPPER = 4
ALL_LANES = LANE_LOW | LANE_HIGH_BYTE | LANE_UPPER


def _x86_lane_table() -> dict[str, int]:
    """Lanes of the 8- and 16-bit register names; every other name covers all lanes."""
    both = LANE_LOW | LANE_HIGH_BYTE
    table: dict[str, int] = {}
    for r16, low8, high8 in (("ax", "al", "ah"), ("bx", "bl", "bh"), ("cx", "cl", "ch"),
                             ("dx", "dl", "dh")):  # fmt: skip
        table.update({r16: both, low8: LANE_LOW, high8: LANE_HIGH_BYTE})
    for r16, low8 in (("si", "sil"), ("di", "dil"), ("bp", "bpl"), ("sp", "spl")):
        table.update({r16: both, low8: LANE_LOW})
    for i in range(8, 16):
        table.update({f"r{i}w": both, f"r{i}b": LANE_LOW})
    return table


_X86_LANES = _x86_lane_table()


def register_lanes(arch: str, name: str) -> int:
    """The lanes of its full register that an access to `name` touches (`dl`: the low byte)."""
    if arch != "x86_64":
        return ALL_LANES
    return _X86_LANES.get(name, ALL_LANES)


def fold_register(arch: str, name: str) -> str | None:
    """Map a (sub-)register name to its full-width general register, None if ignored.

    Ignored: flags (`eflags`, `nzcv`), the instruction pointer, the zero registers
    (`wzr`, `xzr`), segment, system, vector and floating-point registers.
    """
    table = _FOLD.get(arch)
    if table is None:
        raise UnsupportedArchitecture(f"no register analysis for architecture {arch!r}")
    return table.get(name)


_ORDER = {
    "x86_64": (
        "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
        "rbx", "rbp", "r12", "r13", "r14", "r15", "rsp",
    ),
    "aarch64": (*(f"x{i}" for i in range(31)), "sp"),
}  # fmt: skip


def sort_registers(arch: str, registers: frozenset[str] | set[str]) -> tuple[str, ...]:
    """Registers in the architecture's natural order (`rax rcx ... r11`, `x0 ... x30`)."""
    order = {name: i for i, name in enumerate(_ORDER.get(arch, ()))}
    return tuple(sorted(registers, key=lambda r: (order.get(r, len(order)), r)))
