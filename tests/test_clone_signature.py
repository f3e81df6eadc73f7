"""Compiled signatures of GCC clones, and `show` by any symbol name.

The fixture facts were read off `objdump -d` and `readelf --debug-dump=info,loc` of the committed
fixture kernels (tests/fixtures/README.md, "Clone signatures"):

- `demo_scale.constprop.0.isra.0` (kernel/demo_clone.c) takes `ctx->base` in rdi/x0 and
  `ctx->mask` in rsi/x1 instead of `ctx`, drops `unused`, and takes `v` in rdx/x2 (its DWARF
  location list says so); its callers load the two fields before the call
  (`mov (%rdi),%rdi; mov %r13,%rsi` in `demo_clone_apply`).
- `demo_req_cost.isra.0` takes `req->len` in edi/w0 instead of `req`; `ctx` and `req` have
  `DW_OP_GNU_parameter_ref` locations after the entry, `unused` and `mode` none at all.
"""

from __future__ import annotations

import pytest
from klp_fixtures import FIXTURES

from klp_lsp.analysis.signature import compiled_signature, prototype_registers
from klp_lsp.index.query import IndexSet, split_sympos
from klp_lsp.model import CompiledSignature, Param
from klp_lsp.patch.check import Checker

REG = {
    "x86_64": ("rdi", "rsi", "rdx", "rcx", "rax"),
    "arm64": ("x0", "x1", "x2", "x3", "x0"),
}


def signature(
    own: list[tuple[str, str]],
    kinds: tuple[str, ...] = ("isra",),
    *,
    arch: str = "x86_64",
    types: dict[str, str] | None = None,
    return_size: int | None = 8,
    arguments: set[str] | None = None,
    clobbers: set[str] | None = None,
) -> CompiledSignature:
    """A signature of plain values: `own` holds (name, location) in C order."""
    types = types or {}
    prototype = [Param(n, "optimized-out", types.get(n, "scalar")) for n, _ in own]
    return compiled_signature(
        arch,
        "f.clone",
        "vmlinux",
        0x1000,
        kinds,
        prototype,
        [Param(n, loc) for n, loc in own],
        return_size,
        None if arguments is None else frozenset(arguments),
        None if clobbers is None else frozenset(clobbers),
    )


def statuses(sig: CompiledSignature) -> list[tuple[str | None, str, str | None]]:
    return [(p.name, p.status, p.register) for p in sig.params]


def test_clone_that_keeps_the_c_abi() -> None:
    sig = signature([("req", "rdi"), ("key", "rsi")], ("part",), arguments={"rdi", "rsi"})
    assert statuses(sig) == [("req", "register", "rdi"), ("key", "register", "rsi")]
    assert sig.extra_registers == () and sig.returns == ("rax",)
    assert sig.matches_prototype


def test_isra_replaces_a_pointer_by_a_field() -> None:
    sig = signature(
        [("ctx", "removed"), ("unused", "removed"), ("v", "rdx")],
        ("constprop", "isra"),
        types={"ctx": "pointer"},
        arguments={"rdi", "rsi", "rdx"},
        clobbers={"rax", "rsi"},
    )
    assert statuses(sig) == [
        ("ctx", "replaced", None),
        ("unused", "dropped", None),
        ("v", "register", "rdx"),
    ]
    assert sig.extra_registers == ("rdi", "rsi")
    assert not sig.matches_prototype


def test_several_pointers_removed_are_not_attributed() -> None:
    sig = signature(
        [("a", "removed"), ("b", "removed")],
        types={"a": "pointer", "b": "aggregate"},
        arguments={"rdi"},
    )
    assert [p.status for p in sig.params] == ["removed", "removed"]


def test_removed_without_extra_registers_is_dropped() -> None:
    sig = signature([("d", "rdi"), ("running", "removed")], arguments={"rdi"}, clobbers={"rax"})
    assert statuses(sig) == [("d", "register", "rdi"), ("running", "dropped", None)]
    assert sig.extra_registers == () and not sig.matches_prototype


def test_a_copy_under_the_c_name_keeps_unused_parameters() -> None:
    # Not a clone: an optimised-out parameter still arrives in its ABI register.
    sig = signature([("used", "rdi"), ("ignored", "optimized-out")], (), arguments={"rdi"})
    assert statuses(sig) == [("used", "register", "rdi"), ("ignored", "unused", None)]
    assert sig.matches_prototype


def test_isra_dropped_result_on_x86() -> None:
    sig = signature([("a", "rdi")], arguments={"rdi"}, clobbers={"rdi"})
    assert sig.result_dropped and sig.returns == ()
    # arm64 may return x0 unchanged: a result is not taken as dropped there.
    arm = signature([("a", "x0")], arch="aarch64", arguments={"x0"}, clobbers={"x1"})
    assert not arm.result_dropped and arm.returns == ("x0",)


@pytest.mark.parametrize(
    ("arch", "size", "returns", "in_memory", "first"),
    [
        ("x86_64", 0, (), False, "rdi"),
        ("x86_64", 16, ("rax", "rdx"), False, "rdi"),
        ("x86_64", 40, ("rax",), True, "rsi"),  # the hidden result pointer takes rdi
        ("aarch64", 40, (), True, "x0"),  # x8 carries it
        ("aarch64", None, None, False, "x0"),
    ],
)
def test_results(
    arch: str,
    size: int | None,
    returns: tuple[str, ...] | None,
    in_memory: bool,
    first: str,
) -> None:
    sig = signature([("a", first)], (), arch=arch, return_size=size)
    assert sig.returns == returns and sig.returns_in_memory == in_memory
    assert prototype_registers(arch, 1, size) == (first,)


def test_results_in_memory_take_the_indirect_result_register() -> None:
    sig = signature(
        [("a", "x0")], ("isra",), arch="aarch64", return_size=40, arguments={"x0", "x8"}
    )
    assert sig.extra_registers == ()


def test_split_sympos() -> None:
    assert split_sympos("demo_hash,2") == ("demo_hash", 2)
    assert split_sympos("demo_hash") == ("demo_hash", None)
    assert split_sympos("a,b") == ("a,b", None)


# --- the fixture kernels ----------------------------------------------------------------------


def test_isra_clone_signature_differs_from_the_prototype(arch: str, indexes: IndexSet) -> None:
    (r,) = indexes.reports("demo_scale.constprop.0.isra.0")
    assert r.name == "demo_scale" and r.decl_file == "kernel/demo_clone.c"
    assert r.queried_symbol is not None
    assert r.queried_symbol.name == "demo_scale.constprop.0.isra.0"
    assert r.symbols == ()  # only the clone is out of line
    (sig,) = r.clone_signatures
    a, b, c, _, ret = REG[arch]
    assert statuses(sig) == [
        ("ctx", "replaced", None),
        ("unused", "dropped", None),
        ("v", "register", c),
    ]
    assert [p.abi_register for p in sig.params] == [a, b, c]
    assert sig.extra_registers == (a, b)
    assert sig.returns == (ret,) and not sig.result_dropped
    assert not sig.matches_prototype


def test_constprop_isra_chain(arch: str, indexes: IndexSet) -> None:
    (r,) = [x for x in indexes.reports("demo_req_mode") if x.object == "vmlinux"]
    (sig,) = r.clone_signatures
    a = REG[arch][0]
    # C order (req, mode), though the clone's DIE lists `mode` first.
    assert statuses(sig) == [("req", "replaced", None), ("mode", "dropped", None)]
    assert sig.extra_registers == (a,)


def test_part_clone_keeps_the_c_abi(arch: str, indexes: IndexSet) -> None:
    (r,) = [x for x in indexes.reports("demo_lookup.part.0") if x.object == "vmlinux"]
    assert r.name == "demo_lookup" and r.queried_symbol is not None
    (sig,) = r.clone_signatures  # the .cold part has none
    assert sig.symbol == "demo_lookup.part.0" and sig.matches_prototype
    assert [p.register for p in sig.params] == list(REG[arch][:2])


def test_signatures_of_any_symbol(arch: str, indexes: IndexSet) -> None:
    vmlinux = indexes.get_object("vmlinux")
    assert vmlinux is not None
    (sig,) = vmlinux.signatures_of("demo_req_cost.isra.0")
    assert [p.status for p in sig.params] == ["replaced"]
    (plain,) = vmlinux.signatures_of("demo_lookup")
    assert plain.matches_prototype and plain.extra_registers is None  # not a clone
    assert vmlinux.signatures_of("demo_hash,2")[0].symbol == "demo_hash"


@pytest.mark.parametrize(
    ("query", "name", "decl_file"),
    [
        ("demo_lookup.part.0", "demo_lookup", "kernel/demo_core.c"),
        ("demo_hash,2", "demo_hash", "kernel/demo_sched.c"),
        ("demo_hash,1", "demo_hash", "kernel/demo_core.c"),
        ("demo_entry_alias", "demo_entry", "kernel/demo_core.c"),
        ("demo_ops_list_func", "arch_demo_ops_list_func", "mm/demo_percpu.c"),
    ],
)
def test_show_by_any_symbol(indexes: IndexSet, query: str, name: str, decl_file: str) -> None:
    reports = [r for r in indexes.reports(query) if r.object == "vmlinux"]
    assert [(r.name, r.decl_file) for r in reports] == [(name, decl_file)]
    if query != name:
        assert reports[0].queried_symbol is not None


def test_show_by_cold_part(indexes: IndexSet, arch: str) -> None:
    if arch != "x86_64":
        pytest.skip("GCC splits no .cold parts on arm64")
    (r,) = indexes.reports("demo_check_len.isra.0.cold")
    assert r.name == "demo_check_len"
    assert r.queried_symbol is not None and r.queried_symbol.clone_kinds == ("isra", "cold")


def test_unknown_symbol(indexes: IndexSet) -> None:
    assert indexes.reports("demo_lookup.part.7") == []
    assert indexes.reports("demo_hash,3") == []


def test_check_names_the_clone_layout(arch: str, indexes: IndexSet) -> None:
    patch = (FIXTURES / "patches" / "clone.patch").read_text()
    result = Checker(indexes).check_patches([("clone.patch", patch)], FIXTURES / "kernel")
    (finding,) = [f for f in result.findings if f.kind == "signature-changed"]
    a, b, c, _, ret = REG[arch]
    assert (
        f"demo_scale.constprop.0.isra.0 (ctx: replaced, unused: dropped, v={c}) +{a} +{b} -> {ret}"
        in finding.message
    )
    assert [(e.symbol, e.sympos) for e in result.replace] == [("demo_scale.constprop.0.isra.0", 0)]
