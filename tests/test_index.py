"""The index of the fixture kernels: facts checked by hand in tests/fixtures/README.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from klp_fixtures import fixture_binary

from klp_lsp.index.builder import build_index
from klp_lsp.index.query import IndexSet
from klp_lsp.index.store import Index
from klp_lsp.model import FunctionReport
from klp_lsp.progress import progress_title

# Addresses from tests/fixtures/README.md ("Call sites").
IPA_RA_SITE = {"x86_64": 0xFFFFFFFF810007C4, "arm64": 0xFFFF800008000908}
IPA_RA_LIVE = {
    "x86_64": {"rdx", "r8", "rcx", "r10", "r9"},
    "arm64": {"x2", "x3", "x4", "x5", "x6", "x7"},
}


def one(reports: list[FunctionReport], object_name: str = "vmlinux") -> FunctionReport:
    found = [r for r in reports if r.object == object_name]
    assert len(found) == 1, [(r.name, r.object, r.decl_file) for r in reports]
    return found[0]


def test_same_named_statics_get_sympos(indexes: IndexSet) -> None:
    reports = [r for r in indexes.reports("demo_hash") if r.object == "vmlinux"]
    by_file = {r.decl_file: r for r in reports}
    assert set(by_file) == {"kernel/demo_core.c", "kernel/demo_sched.c"}
    assert [s.sympos for s in by_file["kernel/demo_core.c"].symbols] == [1]
    assert [s.sympos for s in by_file["kernel/demo_sched.c"].symbols] == [2]
    assert all(r.patchable for r in reports)
    module = [r for r in indexes.reports("demo_hash") if r.object == "demo"]
    assert sorted(s.sympos for r in module for s in r.symbols) == [1, 2]


def test_clone_whose_origin_exists(arch: str, indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_lookup"))
    assert [s.name for s in r.symbols] == ["demo_lookup"]
    clones = {c.name: c.clone_kinds for c in r.clones}
    expected = {"demo_lookup.part.0": ("part",)}
    if arch == "x86_64":
        expected["demo_lookup.part.0.cold"] = ("part", "cold")
    assert clones == expected
    assert r.patchable
    assert {i.function for i in r.inlined_into} == {"demo_submit", "demo_complete"}


def test_clone_chain_without_origin_symbol(indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_req_mode"))
    assert r.symbols == ()
    assert [(c.name, c.clone_kinds) for c in r.clones] == [
        ("demo_req_mode.constprop.0.isra.0", ("constprop", "isra"))
    ]
    assert not r.patchable
    cost = one(indexes.reports("demo_req_cost"))
    assert [c.name for c in cost.clones] == ["demo_req_cost.isra.0"]


def test_fully_inlined_function(indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_account"))
    assert not r.out_of_line
    assert not r.patchable
    assert r.not_patchable_reasons == ("fully inlined",)
    containers = {(i.function, i.call_line, i.depth) for i in r.inlined_into}
    # Directly into demo_complete (line 167); through demo_account_twice (lines 62, 63) into
    # demo_submit and demo_reset.
    assert ("demo_complete", 167, 1) in containers
    assert {("demo_submit", 62, 2), ("demo_submit", 63, 2)} <= containers
    assert {("demo_reset", 62, 2), ("demo_reset", 63, 2)} <= containers


def test_header_inline_in_three_cus(indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_mix32"))
    assert r.decl_file == "include/linux/demo_inline.h"
    assert {"demo_hash", "demo_lib_mix", "demo_op", "demo_arch_setup"} <= {
        i.function for i in r.inlined_into
    }
    module = one(indexes.reports("demo_mix32"), "demo")
    assert module.inlined_into


def test_aliases(arch: str, indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_entry"))
    assert r.aliases == ("demo_entry_alias",)
    if arch == "x86_64":
        sys = one(indexes.reports("__do_sys_demo_getcount"))
        assert set(sys.aliases) == {"__x64_sys_demo_getcount", "__ia32_sys_demo_getcount"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("demo_notrace_count", "no ftrace record (notrace or asm)"),
        ("demo_setup", "in .init.text"),
        ("demo_lib_step", "its CU is built without ftrace flags"),
    ],
)
def test_not_patchable_reasons(indexes: IndexSet, name: str, reason: str) -> None:
    r = one(indexes.reports(name))
    assert not r.patchable
    assert reason in r.not_patchable_reasons


def test_compiler_guarantees_per_cu(indexes: IndexSet) -> None:
    lib = one(indexes.reports("demo_lib_step"))
    assert lib.compiler is not None and lib.compiler.ipa_ra and lib.compiler.ftrace == "none"
    core = one(indexes.reports("demo_submit"))
    assert core.compiler is not None and not core.compiler.ipa_ra
    assert core.compiler.ftrace in ("fentry", "patchable")


def test_signature_locations(arch: str, indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_lookup"))
    first = "rdi" if arch == "x86_64" else "x0"
    assert r.params[0].location == first
    assert not r.abi_deviation


def test_ipa_ra_dependents(arch: str, indexes: IndexSet) -> None:
    r = one(indexes.reports("demo_lib_step"))
    deps = [d for d in r.register_dependents if d.site == IPA_RA_SITE[arch]]
    assert len(deps) == 1
    d = deps[0]
    assert d.caller == "demo_lib_sum" and d.reason == "ipa-ra"
    assert IPA_RA_LIVE[arch] <= set(d.registers)
    return_register = "rax" if arch == "x86_64" else "x0"
    assert return_register not in d.registers


def test_custom_convention_helper_x86(fixture_index_dir: Path) -> None:
    s = IndexSet.open([build_index(fixture_binary("x86_64"), fixture_index_dir, jobs=1).index_path])
    try:
        r = one(s.reports("__sw_hweight64"))
        assert r.clobbers == ("rax",)
        sites = {d.site: d for d in r.register_dependents}
        d = sites[0xFFFFFFFF810005D2]
        assert d.caller == "demo_bitmap_weight" and d.reason == "custom-convention"
        assert {"rdx", "r9", "r8", "rcx"} <= set(d.registers)
    finally:
        s.close()


def test_only_ipa_ra_cus_and_asm_have_dependents(indexes: IndexSet) -> None:
    for o in indexes.objects:
        rows = o.index.query(
            "SELECT d.reason, c.name, c.ipa_ra FROM register_dependents d"
            " JOIN symbols s ON s.address = d.caller JOIN cus c ON c.id = s.cu_id"
        )
        for reason, cu_name, ipa_ra in rows:
            if reason == "ipa-ra":
                assert ipa_ra == 1, cu_name


def test_reindex_is_a_noop(fixture_index_dir: Path) -> None:
    again = build_index(fixture_binary("arm64"), fixture_index_dir, jobs=1)
    assert again.reused and again.complete


class _Titles:
    """A `Progress` that keeps the titles it is given."""

    def __init__(self) -> None:
        self.titles: list[str] = []

    def begin(self, title: str, total: int) -> None:
        self.titles.append(title)

    def advance(self, done: int, message: str = "") -> None:
        pass

    def end(self, message: str = "") -> None:
        pass

    def cancelled(self) -> bool:
        return False


def test_only_this_hosts_dead_builds_are_swept(tmp_path: Path) -> None:
    # Temporary files of killed builds beside an index: this host's whose process is gone are
    # removed when the next build starts; another host's (an index directory shared by a
    # fleet's workers) and a running process's stay.
    import os
    import socket

    target = build_index(fixture_binary("x86_64"), tmp_path, jobs=1).index_path
    target.unlink()
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    ours_dead = target.with_name(f".{target.name}.{host}.{dead.pid}.tmp")
    ours_running = target.with_name(f".{target.name}.{host}.{os.getppid()}.tmp")
    theirs = target.with_name(f".{target.name}.other-{host}.{dead.pid}.tmp")
    for f in (ours_dead, ours_running, theirs):
        f.write_bytes(b"partial")
    build_index(fixture_binary("x86_64"), tmp_path, jobs=1)
    assert target.exists()
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == sorted(
        [ours_running.name, theirs.name]
    )


def test_progress_title_names_the_compile_units_indexed_first() -> None:
    assert progress_title("vmlinux", None) == "indexing vmlinux"
    assert progress_title("vmlinux", ["kernel/sched/rt.c"]) == "indexing kernel/sched/rt.c"
    assert progress_title("vmlinux", ["a.c", "b.c", "c.c"]) == "indexing a.c and 2 more"


def test_subset_first_then_the_rest(tmp_path: Path) -> None:
    progress = _Titles()
    first = build_index(
        fixture_binary("x86_64"), tmp_path, cu_names=["lib/demo_lib.c"], progress=progress
    )
    assert not first.reused and not first.complete
    # The editor's status shows which file is being indexed on demand.
    assert progress.titles == ["indexing lib/demo_lib.c"]
    idx = Index(first.index_path)
    states = {c.unit.name: c.state for c in idx.iter_cus()}
    idx.close()
    assert states["lib/demo_lib.c"] == 2
    assert states["kernel/demo_core.c"] == 0
    again = build_index(fixture_binary("x86_64"), tmp_path, cu_names=["lib/demo_lib.c"])
    assert again.reused
    rest = build_index(fixture_binary("x86_64"), tmp_path, progress=progress)
    assert rest.complete and not rest.reused
    assert progress.titles[-1] == "indexing vmlinux"
    # The same facts as an index built in one go.
    whole = build_index(fixture_binary("x86_64"), tmp_path / "whole")
    assert _dump(rest.index_path) == _dump(whole.index_path)


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    idx = Index(path)
    try:
        tables = ["cus", "symbols", "functions", "instances", "params", "inline_sites"]
        tables += ["register_use", "calls", "register_dependents"]
        out = {}
        for t in tables:
            rows = [tuple(r) for r in idx.query(f"SELECT * FROM {t}")]
            if t == "symbols":
                rows = [r[1:] for r in rows]  # drop the rowid
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        idx.close()


_READELF_SYM = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)$")


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
@pytest.mark.parametrize("arch_name", ["x86_64", "arm64"])
def test_symbols_and_sympos_match_readelf(arch_name: str, fixture_index_dir: Path) -> None:
    binary = fixture_binary(arch_name)
    out = subprocess.run(
        ["readelf", "-sW", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    funcs = set()
    named: dict[str, list[int]] = {}
    for line in out.splitlines():
        m = _READELF_SYM.match(line)
        if not m or m.group(5) in ("UND", "ABS"):
            continue
        value, size, typ, bind, _ndx, name = m.groups()
        if typ == "FUNC":
            funcs.add((name, int(value, 16), int(size), bind.lower()))
        if typ in ("FUNC", "OBJECT", "NOTYPE"):
            named.setdefault(name, []).append(int(value, 16))
    idx = Index(build_index(binary, fixture_index_dir, jobs=1).index_path)
    try:
        rows = idx.query("SELECT name, address, size, binding, sympos FROM symbols")
    finally:
        idx.close()
    from klp_lsp.index.store import from_db

    ours = {(r[0], from_db(r[1]), r[2], r[3]) for r in rows}
    assert ours == funcs
    for name, address, _size, binding, sympos in rows:
        addresses = sorted(set(named[name]))
        if binding == "local" and len(addresses) > 1:
            assert sympos == addresses.index(from_db(address)) + 1, name
        else:
            assert sympos == 0, name
