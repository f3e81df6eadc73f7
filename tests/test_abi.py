"""ABI tables and register folding."""

from __future__ import annotations

import pytest

from klp_lsp.binary.abi import fold_register, get_abi, sort_registers
from klp_lsp.errors import UnsupportedArchitecture


@pytest.mark.parametrize(
    ("arch", "name", "full"),
    [
        ("x86_64", "eax", "rax"),
        ("x86_64", "ax", "rax"),
        ("x86_64", "al", "rax"),
        ("x86_64", "ah", "rax"),
        ("x86_64", "r8d", "r8"),
        ("x86_64", "r8w", "r8"),
        ("x86_64", "r8b", "r8"),
        ("x86_64", "sil", "rsi"),
        ("x86_64", "rip", None),
        ("x86_64", "eflags", None),
        ("x86_64", "xmm0", None),
        ("aarch64", "w3", "x3"),
        ("aarch64", "x3", "x3"),
        ("aarch64", "lr", "x30"),
        ("aarch64", "fp", "x29"),
        ("aarch64", "wzr", None),
        ("aarch64", "xzr", None),
        ("aarch64", "nzcv", None),
        ("aarch64", "v0", None),
    ],
)
def test_fold_register(arch: str, name: str, full: str | None) -> None:
    assert fold_register(arch, name) == full


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_roles_are_consistent(arch: str) -> None:
    abi = get_abi(arch)
    assert not abi.call_clobbered & abi.callee_saved
    assert set(abi.arg_registers) <= abi.call_clobbered
    assert set(abi.return_registers) <= abi.call_clobbered
    assert abi.stack_pointer in abi.callee_saved


def test_tables() -> None:
    x86 = get_abi("x86_64")
    assert x86.call_clobbered == {"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"}
    assert x86.arg_registers == ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
    assert x86.return_registers == ("rax", "rdx")
    a64 = get_abi("aarch64")
    assert a64.call_clobbered == {f"x{i}" for i in range(19)} | {"x30"}
    assert a64.callee_saved == {f"x{i}" for i in range(19, 30)} | {"sp"}
    assert a64.return_registers == ("x0", "x1")


def test_sort_registers() -> None:
    assert sort_registers("x86_64", {"r10", "rax", "r8", "rsi"}) == ("rax", "rsi", "r8", "r10")
    assert sort_registers("aarch64", {"x10", "x2", "x30"}) == ("x2", "x10", "x30")


def test_unsupported_arch() -> None:
    with pytest.raises(UnsupportedArchitecture, match="riscv"):
        get_abi("riscv64")
    with pytest.raises(UnsupportedArchitecture):
        fold_register("mips", "v0")
