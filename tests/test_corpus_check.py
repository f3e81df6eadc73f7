"""Opt-in: `check` of real patches against Debian's 6.1 amd64 kernel and its source tree.

The patches are in tests/patches/debian-6.1/ (see its README). Expected changed functions,
findings and replace sets were checked by hand: the inline sites with `readelf --debug-dump=info`,
the clones and sections with `readelf -sW`, the callers of `__init` code with `objdump -d`.
A patch that touches only `.c` files needs only their CUs indexed; the header patch needs the
whole kernel (set KLP_CORPUS_INDEX_DIR to a directory holding a complete index to reuse it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from klp_fixtures import ROOT, corpus_dir

from klp_lsp.index.builder import build_index
from klp_lsp.index.query import IndexSet
from klp_lsp.model import CheckResult
from klp_lsp.patch.check import Checker, cu_names_for_patch

CORPUS = corpus_dir()
PATCHES = ROOT / "tests" / "patches" / "debian-6.1"
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus"),
]

GETNAME_CALLERS = {
    "getname", "getname_uflags", "__x64_sys_mknod", "__x64_sys_mkdirat", "__x64_sys_mkdir",
    "__ia32_sys_mkdir", "__x64_sys_rmdir", "__ia32_sys_rmdir", "__x64_sys_unlink",
    "__ia32_sys_unlink",
}  # fmt: skip
ENQUEUE_TASK_CALLERS = {
    "__do_set_cpus_allowed", "__migrate_swap_task.part.0", "__sched_setscheduler",
    "activate_task", "move_queued_task", "push_cpu_stop", "rt_mutex_setprio", "sched_move_task",
    "sched_setnuma", "set_user_nice", "ttwu_do_activate", "wake_up_new_task",
}  # fmt: skip
FIND_PROCESS_CALLERS = {
    "sched_rr_get_interval", "do_sched_setscheduler", "__x64_sys_sched_getscheduler",
    "__ia32_sys_sched_getscheduler", "__x64_sys_sched_getparam", "__ia32_sys_sched_getparam",
    "__x64_sys_sched_getattr", "__ia32_sys_sched_getattr", "sched_setaffinity",
    "sched_getaffinity",
}  # fmt: skip
DQPUT_CALLERS = {
    "__dquot_drop", "__dquot_initialize", "dqget", "dquot_disable", "dquot_get_dqblk",
    "dquot_get_next_dqblk", "dquot_scan_active", "dquot_set_dqblk", "dquot_transfer",
    "dquot_writeback_dquots",
}  # fmt: skip


def run_check(
    tmp_path: Path, name: str, extra_cus: tuple[str, ...] = ()
) -> tuple[Checker, CheckResult]:
    assert CORPUS is not None
    text = (PATCHES / name).read_text()
    cus = cu_names_for_patch(text, CORPUS / "src")
    if cus is not None:
        cus = [*cus, *extra_cus]
    given = os.environ.get("KLP_CORPUS_INDEX_DIR")
    index_dir = Path(given) if given and cus is None else tmp_path
    built = build_index(CORPUS / "amd64" / "vmlinux", index_dir, cu_names=cus)
    indexes = IndexSet.open([built.index_path])
    checker = Checker(indexes)
    return checker, checker.check_patches([(name, text)], CORPUS / "src")


def summary(result: CheckResult) -> tuple[list[str], set[tuple[str, str | None]], set[str]]:
    return (
        [c.name for c in result.changed_functions],
        {(f.kind, f.function) for f in result.findings},
        {e.symbol for e in result.replace},
    )


def test_function_with_clones(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "clones-getname_flags.patch")
    changed, findings, replace = summary(result)
    assert changed == ["getname_flags"]
    assert findings == {("has-clones", "getname_flags"), ("inlined", "getname_flags")}
    assert replace == {"getname_flags", "getname_flags.part.0"} | GETNAME_CALLERS


def test_function_of_a_file_included_into_another(tmp_path: Path) -> None:
    # kernel/sched/rt.c is compiled inside kernel/sched/build_policy.c: the patch's files to
    # index first name that CU too, and the file maps to it.
    assert cu_names_for_patch((PATCHES / "rt-find_lock_lowest_rq.patch").read_text(), None) == [
        "kernel/sched/rt.c"
    ]
    _c, result = run_check(tmp_path, "rt-find_lock_lowest_rq.patch")
    changed, findings, replace = summary(result)
    assert (changed, findings, replace) == (["find_lock_lowest_rq"], set(), {"find_lock_lowest_rq"})
    [file] = result.files
    assert [(u.object, u.name, u.included, u.analysed) for u in file.units] == [
        ("vmlinux", "kernel/sched/build_policy.c", True, True)
    ]
    [impact] = file.hunks[0].functions
    assert (impact.status, impact.patchable, [s.sympos for s in impact.symbols]) == (
        "changed",
        True,
        [0],
    )
    assert impact.inlined_into == () and impact.clones == ()


def test_static_function_inlined_in_several_places(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "inlined-enqueue_task.patch")
    changed, findings, replace = summary(result)
    assert changed == ["enqueue_task"]
    assert findings == {("not-patchable", "enqueue_task"), ("inlined", "enqueue_task")}
    assert replace == ENQUEUE_TASK_CALLERS


def test_init_function(tmp_path: Path) -> None:
    # The callers of boot code live in other CUs: index those too.
    boot = ("init/main.c", "arch/x86/kernel/head64.c", "arch/x86/xen/enlighten_pv.c")
    _c, result = run_check(tmp_path, "init-proc_caches_init.patch", boot)
    changed, findings, replace = summary(result)
    assert changed == ["proc_caches_init"]
    assert findings == {("init-code", "proc_caches_init"), ("not-patchable", "proc_caches_init")}
    # The climb to callers finds only boot code: nothing here can be patched.
    assert replace == {
        "proc_caches_init", "start_kernel", "x86_64_start_reservations", "x86_64_start_kernel",
        "xen_start_kernel",
    }  # fmt: skip
    assert not any(e.patchable for e in result.replace)


def test_struct(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "struct-nameidata.diff")
    assert summary(result) == ([], {("data-change", None)}, set())


def test_comment_only(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "comment-dqput.patch")
    assert summary(result) == ([], set(), set())
    assert any("only comments or white space" in n for n in result.notes)


def test_format_patch_series(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "series-quota-sched.mbox")
    changed, findings, replace = summary(result)
    # mark_info_dirty expands DQF_INFO_DIRTY; the other users are in quota_v1/v2 modules.
    assert changed == ["dqput", "find_process_by_pid", "mark_info_dirty"]
    assert findings == {
        ("has-clones", "dqput"),
        ("inlined", "dqput"),
        ("static-local", "dqput"),
        ("not-patchable", "find_process_by_pid"),
        ("inlined", "find_process_by_pid"),
        ("inlined", "mark_info_dirty"),
        ("header-change", None),
    }
    expected = {"dqput", "dqput.part.0", "mark_info_dirty", "dquot_set_dqinfo"}
    expected |= DQPUT_CALLERS | FIND_PROCESS_CALLERS
    # __do_sys_sched_setattr is an out-of-line copy of an inline (no ftrace record): the set
    # climbs to the syscall entry points that call it.
    expected |= {"__do_sys_sched_setattr", "__x64_sys_sched_setattr", "__ia32_sys_sched_setattr"}
    assert replace == expected


@pytest.mark.slow
def test_header_inline(tmp_path: Path) -> None:
    _c, result = run_check(tmp_path, "header-list_move_tail.patch")
    changed, findings, replace = summary(result)
    assert changed == ["list_move_tail"]
    assert findings == {
        ("not-patchable", "list_move_tail"),
        ("inlined", "list_move_tail"),
        ("header-change", "list_move_tail"),
    }
    header = next(f for f in result.findings if f.kind == "header-change")
    assert "61 function(s) in 42 CU(s) of vmlinux" in header.message
    assert len(replace) == 61 and {"move_linked_works", "rwsem_mark_wake"} <= replace
