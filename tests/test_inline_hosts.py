"""Inline hosts: dead copies of overridden `__weak` functions, and hosts with several names.

Facts of the committed fixture kernels (tests/fixtures/README.md, "Added CUs" and "Inline sites"),
checked with `readelf -sW` and `readelf --debug-dump=info`: mm/demo_percpu.c's `__weak
demo_populate_pte` is
overridden by mm/demo_percpu_arch.c's; the linker keeps the weak body in .init.text without a
symbol (no FUNC symbol covers its DW_AT_low_pc), and `demo_pgd_none` is inlined into it, into the
strong copy and into `arch_demo_ops_list_func`, whose address also carries the global alias
`demo_ops_list_func`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from klp_fixtures import FIXTURES, fixture_binary

from klp_lsp.index.query import IndexSet
from klp_lsp.patch.check import Checker

KERNEL = FIXTURES / "kernel"


def _pgd_none(indexes: IndexSet) -> list[tuple[str, bool, str | None, tuple[str, ...]]]:
    (r,) = [x for x in indexes.reports("demo_pgd_none") if x.object == "vmlinux"]
    return [(i.function, i.dead, i.reason, i.aliases) for i in r.inlined_into]


def test_dead_weak_copy_is_named_after_its_dwarf_subprogram(indexes: IndexSet) -> None:
    hosts = _pgd_none(indexes)
    assert ("demo_populate_pte", True, "overridden __weak copy, no symbol", ()) in hosts
    assert ("demo_populate_pte", False, None, ()) in hosts
    assert not any(name.startswith("0x") for name, *_ in hosts)


def test_host_with_an_alias_is_named_after_its_dwarf_definition(indexes: IndexSet) -> None:
    assert ("arch_demo_ops_list_func", False, None, ("demo_ops_list_func",)) in _pgd_none(indexes)


def test_the_weak_definition_reports_its_dead_copy(indexes: IndexSet) -> None:
    weak = [r for r in indexes.reports("demo_populate_pte") if r.decl_file == "mm/demo_percpu.c"]
    (r,) = weak
    assert not r.patchable and r.symbols == ()
    assert [why for _a, why in r.dead_copies] == ["overridden __weak copy, no symbol"]
    assert r.not_patchable_reasons == ("overridden __weak copy, no symbol",)


def test_check_keeps_dead_hosts_out_of_the_replace_set(arch: str, indexes: IndexSet) -> None:
    patch = (FIXTURES / "patches" / "pgtable.patch").read_text()
    result = Checker(indexes).check_patches([("pgtable.patch", patch)], KERNEL)
    replaced = {(e.symbol, e.sympos) for e in result.replace if e.object == "vmlinux"}
    assert ("demo_populate_pte", 0) in replaced  # the strong copy, in .init.text
    assert ("arch_demo_ops_list_func", 0) in replaced  # its DWARF name, not the alias
    assert not any(name.startswith("0x") for name, _ in replaced)
    (inlined,) = [f for f in result.findings if f.kind == "inlined"]
    assert "never runs" in inlined.message and "overridden __weak copy" in inlined.message
    dead = [r for r in inlined.related if r.message.startswith("dead code")]
    assert [r.name for r in dead] == ["demo_populate_pte"]


def test_show_json_marks_dead_hosts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "klp_lsp", "show", "demo_pgd_none", "--json", "--index-dir",
         str(tmp_path), "--binary", str(fixture_binary("x86_64"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (m,) = json.loads(done.stdout)["matches"]
    dead = [i for i in m["inlined_into"] if i["dead"]]
    assert [(i["function"], i["reason"]) for i in dead] == [
        ("demo_populate_pte", "overridden __weak copy, no symbol")
    ]
    assert all(i["reason"] is None for i in m["inlined_into"] if not i["dead"])
