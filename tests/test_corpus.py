"""Opt-in: facts of Debian's 6.1 cloud kernels, checked by hand with readelf and objdump.

Run with `KLP_CORPUS_DIR=~/.cache/klp-corpus/debian-6.1.192-2` after
`../shared/corpus/get-debian-kernel --arch all`. Only the CUs that hold the checked functions are
indexed (the facts of a CU do not depend on other CUs), which keeps the test under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from klp_fixtures import corpus_dir

from klp_lsp.index.builder import build_index
from klp_lsp.index.query import IndexSet
from klp_lsp.model import FunctionReport

CORPUS = corpus_dir()
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus"),
]

AMD64_CUS = [
    "kernel/sched/core.c",
    "kernel/fork.c",
    "lib/bitmap.c",
    "init/main.c",
    "net/ipv4/ipmr.c",
    "net/ipv6/ioam6.c",
    "net/ipv6/ip6mr.c",
    # An asm CU: its DW_AT_name is absolute; selection goes by the tree-relative name.
    "arch/x86/lib/hweight.S",
]
ARM64_CUS = ["lib/maple_tree.c", "kernel/sched/core.c", "kernel/fork.c"]


def _open(tmp: Path, binary: Path, cus: list[str] | None) -> IndexSet:
    return IndexSet.open([build_index(binary, tmp, cu_names=cus).index_path])


@pytest.fixture(scope="module")
def amd64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSet]:
    assert CORPUS is not None
    s = _open(tmp_path_factory.mktemp("amd64"), CORPUS / "amd64" / "vmlinux", AMD64_CUS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexSet]:
    assert CORPUS is not None
    s = _open(tmp_path_factory.mktemp("arm64"), CORPUS / "arm64" / "vmlinux", ARM64_CUS)
    yield s
    s.close()


def one(reports: list[FunctionReport]) -> FunctionReport:
    assert len(reports) == 1, [(r.name, r.decl_file) for r in reports]
    return reports[0]


def test_isra_and_constprop_clones(amd64: IndexSet) -> None:
    # readelf -sW: __rhashtable_remove_fast_one.constprop.0 (ipmr.c, ip6mr.c), .isra.0 (ioam6.c)
    r = one(amd64.reports("__rhashtable_remove_fast_one"))
    assert r.decl_file == "include/linux/rhashtable.h"
    kinds = sorted(c.clone_kinds for c in r.clones)
    assert kinds == [("constprop",), ("constprop",), ("isra",)]
    assert r.symbols == ()


def test_static_function_inlined_into_several_callers(amd64: IndexSet) -> None:
    # KERNEL_FACTS: enqueue_task has 12 callers in kernel/sched/core.c and no symbol.
    r = one(amd64.reports("enqueue_task"))
    assert r.decl_file == "kernel/sched/core.c" and not r.out_of_line
    assert len(r.inlined_into) == 12
    assert {"activate_task", "ttwu_do_activate", "__sched_setscheduler"} <= {
        i.function for i in r.inlined_into
    }


def test_fully_inlined_not_declared_inline(amd64: IndexSet) -> None:
    r = one(amd64.reports("find_process_by_pid"))
    assert not r.out_of_line and r.not_patchable_reasons == ("fully inlined",)
    assert len({(i.function, i.call_line) for i in r.inlined_into}) == 11


def test_init_text(amd64: IndexSet) -> None:
    r = one(amd64.reports("start_kernel"))
    (s,) = r.symbols
    assert (s.address, s.section, s.size) == (0xFFFFFFFF8304EE41, ".init.text", 1788)
    assert not r.patchable and "in .init.text" in r.not_patchable_reasons


@pytest.mark.parametrize("which", ["amd64", "arm64"])
def test_jhash_sympos(which: str, request: pytest.FixtureRequest) -> None:
    indexes: IndexSet = request.getfixturevalue(which)
    o = indexes.objects[0]
    symbols = o.symbols_named("jhash")
    assert len(symbols) == 17  # readelf -sW | awk '$4=="FUNC" && $8=="jhash"'
    assert sorted(s.sympos for s in symbols) == list(range(1, 18))
    assert [s.sympos for s in symbols] == list(range(1, 18))  # kallsyms (address) order


def test_syscall_aliases(amd64: IndexSet) -> None:
    r = one(amd64.reports("__do_sys_fork"))
    (s,) = r.symbols
    assert s.address == 0xFFFFFFFF810948B0
    assert set(r.aliases) == {"__ia32_sys_fork", "__x64_sys_fork"}
    assert r.patchable


def test_sw_hweight64_custom_convention(amd64: IndexSet) -> None:
    # KERNEL_FACTS: in __bitmap_weight, after `call __sw_hweight64` at 0xffffffff815971dd,
    # r8, rdx and r9 are still used. __sw_hweight64 saves rdi and rdx and writes only rax.
    deps = amd64.objects[0].index.query(
        "SELECT registers, reason FROM register_dependents WHERE site = ?",
        (0xFFFFFFFF815971DD - (1 << 64),),
    )
    assert len(deps) == 1
    registers, reason = deps[0]
    assert reason == "custom-convention"
    assert {"r8", "rdx", "r9"} <= set(registers.split())
    assert "rax" not in registers.split()
    helper = one(amd64.reports("__sw_hweight64"))
    assert helper.clobbers == ("rax",)
    assert not helper.patchable  # asm: no ftrace record


def test_arm64_ipa_ra_in_libfdt_style_cu(arm64: IndexSet) -> None:
    # KERNEL_FACTS: mast_fill_bnode keeps x13 across `bl mas_leaf_max_gap` (lib/maple_tree.c,
    # a CU without ftrace flags); checked with aarch64-linux-gnu-objdump -d.
    r = one(arm64.reports("mas_leaf_max_gap"))
    assert r.compiler is not None and r.compiler.ipa_ra
    callers = {(d.caller, d.site): d for d in r.register_dependents}
    d = callers[("mast_fill_bnode", 0xFFFF800008B82AE4)]
    assert "x13" in d.registers and d.reason == "ipa-ra"
    assert "x0" not in d.registers
    # The symbol starts 8 bytes before the CU's ranges (two patchable-entry NOPs) and still
    # belongs to its CU: 2,243 arm64 symbols had no CU before that was handled.
    (s,) = r.symbols
    assert s.not_patchable_reasons == ("its CU is built without ftrace flags",)
    rows = arm64.objects[0].index.query("SELECT count(*) FROM symbols WHERE cu_id IS NULL")
    assert rows[0][0] < 10


def test_xfs_module(tmp_path: Path) -> None:
    assert CORPUS is not None
    xfs = CORPUS / "amd64" / "modules" / "fs" / "xfs" / "xfs.ko"
    s = _open(tmp_path, xfs, ["fs/xfs/libxfs/xfs_alloc.c"])
    try:
        r = one(s.reports("xfs_alloc_ag_vextent_exact"))
        assert r.object == "xfs" and r.decl_file == "fs/xfs/libxfs/xfs_alloc.c"
        assert [(c.name, c.size, c.has_mcount) for c in r.clones] == [
            ("xfs_alloc_ag_vextent_exact.constprop.0", 768, True)
        ]
        assert len(s.objects[0].symbols_named("xfs_alloc_ag_vextent_exact.constprop.0")) == 1
    finally:
        s.close()


def test_module_callers_of_vmlinux_asm_helpers(amd64: IndexSet, tmp_path: Path) -> None:
    # openvswitch.ko calls __sw_hweight64 from inline asm (arch_hweight.h) in
    # ovs_nla_copy_actions and keeps rdx across it (objdump -dr openvswitch.ko).
    from klp_lsp.index.regfacts import read_known_callees

    assert CORPUS is not None
    known = read_known_callees(amd64.objects[0].index)
    assert known["__sw_hweight64"].clobbers == frozenset({"rax"})
    ovs = CORPUS / "amd64" / "modules" / "net" / "openvswitch" / "openvswitch.ko"
    module = build_index(ovs, tmp_path, known_callees=known)
    both = IndexSet([amd64.objects[0].index, IndexSet.open([module.index_path]).objects[0].index])
    r = one([x for x in both.reports("__sw_hweight64") if x.object == "vmlinux"])
    from_module = [d for d in r.register_dependents if d.object == "openvswitch"]
    assert [(d.caller, d.registers, d.reason) for d in from_module] == [
        ("ovs_nla_copy_actions", ("rdx",), "custom-convention")
    ]
