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
)


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
