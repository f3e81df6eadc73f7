"""The pure checks behind `verify`, with plain values (analysis/livepatch.py)."""

from __future__ import annotations

import pytest

from klp_lsp.analysis.livepatch import (
    compare_parameters,
    compare_returns,
    resolve_kallsyms,
    resolve_sympos,
    same_magic,
)
from klp_lsp.model import Param, SymbolFact, TypeShape


def sym(name: str, address: int, sympos: int) -> SymbolFact:
    return SymbolFact(name, "vmlinux", address, 16, ".text", "local", sympos, (), True, True, ())


@pytest.mark.parametrize(
    ("candidates", "sympos", "status", "address", "message"),
    [
        ([], 0, "not-found", None, "symbol 'f' not found in symbol table"),
        ([], 2, "not-found", None, "symbol 'f' not found in symbol table"),
        ([sym("f", 1, 0)], 0, "ok", 1, None),
        ([sym("f", 1, 0)], 1, "ok", 1, None),  # count 1 == pos 1: accepted
        ([sym("f", 1, 0)], 2, "bad-position", None,
         "symbol position 2 for symbol 'f' in object 'vmlinux' not found"),
        ([sym("f", 1, 1), sym("f", 2, 2)], 0, "ambiguous", None,
         "unresolvable ambiguity for symbol 'f' in object '(null)'"),
        ([sym("f", 1, 1), sym("f", 2, 2)], 2, "ok", 2, None),
        # A data symbol holds position 1: the only function is the second f.
        ([sym("f", 2, 2)], 0, "ambiguous", None,
         "unresolvable ambiguity for symbol 'f' in object '(null)'"),
        ([sym("f", 2, 2)], 1, "bad-position", None,
         "symbol position 1 for symbol 'f' in object 'vmlinux' not found"),
    ],
)  # fmt: skip
def test_resolve_sympos(
    candidates: list[SymbolFact], sympos: int, status: str, address: int | None, message: str | None
) -> None:
    r = resolve_sympos("vmlinux", "f", sympos, candidates)
    assert r.status == status and r.kernel_message == message
    assert (r.symbol.address if r.symbol else None) == address


def test_resolve_kallsyms_and_module_names() -> None:
    assert resolve_kallsyms("demo", "f", 0, [5]) == ("ok", 5, None)
    assert resolve_kallsyms("demo", "f", 0, [5, 6])[2] == (
        "unresolvable ambiguity for symbol 'f' in object 'demo'"
    )
    assert resolve_kallsyms("demo", "f", 2, [5, 6]) == ("ok", 6, None)
    assert resolve_kallsyms("demo", "f", 3, [5, 6])[0] == "bad-position"


def test_same_magic() -> None:
    kernel = "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions "
    assert same_magic(kernel, kernel, False)
    other = "6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions "
    assert not same_magic(other, kernel, False)
    assert same_magic(other, kernel, True)  # with CRCs the release is ignored
    assert not same_magic("6.1.0-56-cloud-amd64 SMP mod_unload ", kernel, True)


P = Param


@pytest.mark.parametrize(
    ("original", "kinds", "replacement", "received", "expected"),
    [
        # Same layout.
        ([P("a", "rdi"), P("b", "rsi")], (), [P("a", "rdi"), P("b", "rsi")], None, []),
        # Renamed parameter in the same register: fine.
        ([P("a", "rdi")], (), [P("x", "rdi")], None, []),
        # Swapped.
        ([P("a", "rdi"), P("b", "rsi")], (), [P("b", "rdi"), P("a", "rsi")], None,
         [("b", "error"), ("a", "error")]),
        # Unused by a plain function: callers still pass it in its C ABI register.
        ([P("a", "optimized-out"), P("b", "rsi")], (), [P("a", "rdi"), P("b", "rsi")], None, []),
        # An IPA-SRA clone that dropped `a`, written for the C prototype.
        ([P("a", "optimized-out"), P("b", "rsi")], ("isra",), [P("a", "rdi"), P("b", "rsi")],
         frozenset({"rsi"}), [("a", "error")]),
        # ... and replaced it (a DWARF expression): the clone reads rdi, a derived value.
        ([P("a", "unknown"), P("b", "rsi")], ("isra",), [P("a", "rdi"), P("b", "rsi")],
         frozenset({"rdi", "rsi"}), [("a", "error")]),
        # The clone's own signature: a value in rdi under another name.
        ([P("a", "unknown"), P("b", "rsi")], ("isra",), [P("len", "rdi"), P("b", "rsi")],
         frozenset({"rdi", "rsi"}), []),
        # DWARF lost a kept parameter: the clone reads its register: a warning only.
        ([P("info", "optimized-out")], ("isra",), [P("info", "rdi")], frozenset({"rdi"}),
         [("info", "warning")]),
        # Reads a register the clone never receives.
        ([P("a", "rdi")], ("constprop",), [P("a", "rdi"), P("b", "rsi")], frozenset({"rdi"}),
         [("b", "error")]),
    ],
)  # fmt: skip
def test_compare_parameters(
    original: list[Param],
    kinds: tuple[str, ...],
    replacement: list[Param],
    received: frozenset[str] | None,
    expected: list[tuple[str, str]],
) -> None:
    got = compare_parameters("x86_64", "f", original, kinds, replacement, received)
    assert [(d.parameter, d.severity) for d in got] == expected


def test_compare_returns() -> None:
    int_ = TypeShape("integer", 4, "int")
    long_ = TypeShape("integer", 8, "long")
    void = TypeShape("void", 0, "void")
    big = TypeShape("aggregate", 24, "struct big")
    assert compare_returns("x86_64", "f", int_, int_, False) is None
    assert compare_returns("x86_64", "f", void, int_, False) is None
    d = compare_returns("x86_64", "f", int_, void, False)
    assert d is not None and d.severity == "error"
    d = compare_returns("x86_64", "f", int_, void, True)
    assert d is not None and d.severity == "warning"  # IPA-SRA may have dropped the return
    d = compare_returns("x86_64", "f", big, long_, False)
    assert d is not None and "hidden pointer in rdi" in d.message
    d = compare_returns("x86_64", "f", long_, int_, False)
    assert d is not None and d.severity == "warning"
