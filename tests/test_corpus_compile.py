"""Opt-in: `check --compile` on Debian's real kernels with real patches.

Needs prepared build trees (tests/patches/debian-6.1/compile/README.md):
- `KLP_CORPUS_DIR` (Debian 6.1.192-2) and `KLP_BUILD_TREE`, a tree `klp-lsp prepare-build` made
  for it from its `src/` and `amd64/config`;
- `KLP_CORPUS_176_DIR` (Debian 6.1.176-1, `get-debian-kernel --abi 6.1.0-50`) and
  `KLP_BUILD_TREE_176` for the stable fixes that apply forward to it.
`KLP_CORPUS_INDEX_DIR` / `KLP_CORPUS_176_INDEX_DIR` reuse complete indexes (else they are built
in a temporary directory first: minutes). Facts below were checked with `nm -S` and `objdump -dr`
of the objects the trees produce.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from klp_fixtures import ROOT

from klp_lsp.cli import main

PATCHES = ROOT / "tests" / "patches" / "debian-6.1"
COMPILE = PATCHES / "compile"
WORKQUEUE = "6.1.191-workqueue-Do-not-warn-when-cancelling-WQ_MEM_RECLAIM-work.patch"


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


CORPUS, TREE = _env("KLP_CORPUS_DIR"), _env("KLP_BUILD_TREE")
CORPUS_176, TREE_176 = _env("KLP_CORPUS_176_DIR"), _env("KLP_BUILD_TREE_176")
pytestmark = pytest.mark.corpus
needs_192 = pytest.mark.skipif(
    CORPUS is None or TREE is None, reason="set KLP_CORPUS_DIR and KLP_BUILD_TREE"
)
needs_176 = pytest.mark.skipif(
    CORPUS_176 is None or TREE_176 is None,
    reason="set KLP_CORPUS_176_DIR and KLP_BUILD_TREE_176 (Debian 6.1.176-1)",
)


def check(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    patch: Path,
    corpus: Path,
    tree: Path,
    index_env: str,
    modules: tuple[str, ...] = (),
    builds: bool = True,
) -> dict[str, Any]:
    index = _env(index_env) or tmp_path / "idx"
    argv = ["check", str(patch), "--binary", str(corpus / "amd64" / "vmlinux")]
    for m in modules:
        argv += ["--binary", str(corpus / "amd64" / "modules" / m)]
    argv += ["--index-dir", str(index), "--compile", "--build-tree", str(tree), "--jobs", "2"]
    argv += ["--format", "json", "--no-background"]
    capsys.readouterr()
    assert main(argv) in (0, 1)
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    if builds:
        assert doc["compile"]["failures"] == []
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for o in doc["compile"]["objects"] for f in o["functions"]}


def clone_messages(doc: dict[str, Any]) -> list[str]:
    return [c["message"] for o in doc["compile"]["objects"] for c in o["clones"]]


def flips(doc: dict[str, Any]) -> set[tuple[str, str, bool]]:
    return {
        (f["callee"], f["caller"], f["inlined_after"])
        for o in doc["compile"]["objects"]
        for f in o["inlining"]
    }


WORKQUEUE_CALLERS = {
    "__cancel_work_timer", "flush_delayed_work", "flush_rcu_work", "flush_work",
    "schedule_on_each_cpu", "work_on_cpu_key", "work_on_cpu_safe_key",
}  # fmt: skip


@needs_192
def test_workqueue_as_issue_16_measured_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The fix reverted on 6.1.192-2: `.part.0` gone, `start_flush_work` inlined, a new
    `__flush_work.isra.0`, and the callers that change only through that clone."""
    assert CORPUS is not None and TREE is not None
    doc = check(
        capsys, tmp_path, COMPILE / f"revert-{WORKQUEUE}", CORPUS, TREE, "KLP_CORPUS_INDEX_DIR"
    )
    assert [o["object"] for o in doc["compile"]["objects"]] == ["kernel/workqueue.o"]
    assert sorted(clone_messages(doc)) == [
        "__flush_work became __flush_work.isra.0",
        "check_flush_dependency.part.0 became check_flush_dependency",
    ]
    functions = by_name(doc)
    assert functions["start_flush_work"]["kind"] == "removed"
    assert "now inlined into __flush_work" in functions["start_flush_work"]["detail"]
    assert ("start_flush_work", "__flush_work", True) in flips(doc)
    assert functions["__flush_work.isra.0"]["old_name"] == "__flush_work"
    assert {n for n, f in functions.items() if f["kind"] == "changed"} == {
        *WORKQUEUE_CALLERS, "__flush_work.isra.0", "__flush_workqueue", "check_flush_dependency",
    }  # fmt: skip
    # The prediction replaces 3; the callers of the clone are compiler-only, and information
    # only: a source-level live patch keeps calling the original __flush_work.
    assert {e["symbol"] for e in doc["replace"]} == {
        "check_flush_dependency.part.0", "__flush_workqueue", "start_flush_work",
    }  # fmt: skip
    only = {f["function"]: f for f in doc["findings"] if f["kind"] == "compiler-only-change"}
    assert set(only) >= WORKQUEUE_CALLERS - {"flush_work"}
    assert all(f["severity"] == "information" for f in only.values())


@needs_176
def test_workqueue_fix_forward_on_6_1_176(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The stable fix as a vendor applies it: the mirror image of the issue's measurement."""
    assert CORPUS_176 is not None and TREE_176 is not None
    doc = check(
        capsys, tmp_path, COMPILE / WORKQUEUE, CORPUS_176, TREE_176, "KLP_CORPUS_176_INDEX_DIR"
    )
    assert sorted(clone_messages(doc)) == [
        "__flush_work.isra.0 became __flush_work",
        "check_flush_dependency became check_flush_dependency.part.0",
    ]
    assert by_name(doc)["start_flush_work"]["kind"] == "added"
    assert ("start_flush_work", "__flush_work", False) in flips(doc)
    evidence = {c["name"]: c["evidence"] for c in doc["changed_functions"]}
    assert evidence["check_flush_dependency"] == evidence["__flush_workqueue"] == "both"


@needs_192
def test_getname_flags_callers_and_the_part_clone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert CORPUS is not None and TREE is not None
    doc = check(
        capsys,
        tmp_path,
        PATCHES / "clones-getname_flags.patch",
        CORPUS,
        TREE,
        "KLP_CORPUS_INDEX_DIR",
    )
    rows = {r["symbol"]: r for r in doc["compile"]["comparison"]}
    # Every function predicted for inlining getname_flags changes.
    inliners = [s for s, r in rows.items() if (r["predicted"] or "").startswith("inlines")]
    assert len(inliners) == 10 and all(rows[s]["compiler"] == "changed" for s in inliners)
    # The change is in the part GCC keeps in getname_flags: its .part.0 compiles the same.
    assert rows["getname_flags.part.0"]["compiler"] == "same code"
    assert rows["getname_flags"]["compiler"] == "changed"


@needs_192
def test_enqueue_task_changes_no_code_without_sched_core(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`sched_core_enabled()` is constant false without CONFIG_SCHED_CORE (Debian's config):
    the 12 predicted functions compile to the same code."""
    assert CORPUS is not None and TREE is not None
    assert "# CONFIG_SCHED_CORE is not set" in (CORPUS / "amd64" / "config").read_text()
    doc = check(
        capsys,
        tmp_path,
        PATCHES / "inlined-enqueue_task.patch",
        CORPUS,
        TREE,
        "KLP_CORPUS_INDEX_DIR",
    )
    (obj,) = doc["compile"]["objects"]
    assert obj["object"] == "kernel/sched/core.o" and obj["functions"] == []
    assert {r["compiler"] for r in doc["compile"]["comparison"]} == {"same code"}
    assert [c["evidence"] for c in doc["changed_functions"]] == ["source"]


@needs_192
def test_module_fix_from_debian_192_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert CORPUS is not None and TREE is not None
    doc = check(
        capsys,
        tmp_path,
        COMPILE / "6.1.192-3-nfsd-preflight-SEQUENCE-replies-before-accepting-a-slot.patch",
        CORPUS,
        TREE,
        "KLP_CORPUS_INDEX_DIR",
        modules=("fs/nfsd/nfsd.ko",),
    )
    assert [o["object"] for o in doc["compile"]["objects"]] == ["fs/nfsd/nfs4state.o"]
    evidence = {c["name"]: c["evidence"] for c in doc["changed_functions"]}
    assert evidence["nfsd4_sequence"] == "both"


STABLE = sorted((PATCHES / "stable").glob("*.patch"))
# Uses `guard(no_notify_signal)`, which another stable commit adds to
# include/linux/sched/signal.h: the single-file fix does not build on 6.1.176-1 by itself.
NEEDS_ANOTHER_COMMIT = {"6.1.191-pid-namespace-make-zap-pid-ns-processes-freezable.patch"}


@needs_176
@pytest.mark.skipif(not STABLE, reason="tests/patches/debian-6.1/stable/ (issue 15) is absent")
@pytest.mark.parametrize("patch", STABLE, ids=lambda p: p.name[:40])
def test_stable_fixes_compile_and_reconcile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, patch: Path
) -> None:
    """Every stable fix builds in the 6.1.176-1 tree (but one, which needs another commit) and
    is reconciled."""
    assert CORPUS_176 is not None and TREE_176 is not None
    modules = (
        "net/bridge/bridge.ko", "crypto/ecrdsa_generic.ko", "fs/fuse/fuse.ko",
        "fs/nfsd/nfsd.ko", "fs/autofs/autofs4.ko",
    )  # fmt: skip
    alone = patch.name not in NEEDS_ANOTHER_COMMIT
    index = "KLP_CORPUS_176_INDEX_DIR"
    doc = check(capsys, tmp_path, patch, CORPUS_176, TREE_176, index, modules, alone)
    if not alone:
        (failure,) = doc["compile"]["failures"]
        assert "class_no_notify_signal_t" in failure["message"]
        assert any("does not compile" in p["message"] for p in doc["problems"])
        return
    assert doc["compile"]["objects"], "no object compiled"
    for c in doc["changed_functions"]:
        assert c["evidence"] in ("source", "compiler", "both")
