"""Per file and hunk, what a patch changes (`CheckResult.files`): the facts behind the editor's
lenses, outline and hovers, on the fixture kernel (both arches).

Expected values follow tests/fixtures/README.md: demo_account is fully inlined into
demo_submit, demo_complete and demo_reset; demo_lookup has the clone demo_lookup.part.0 and is
inlined into demo_submit and demo_complete; demo_lib_step has no ftrace record and demo_lib_sum
keeps registers across calls to it; demo_fill is a plain patchable function.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from klp_fixtures import FIXTURES

from klp_lsp.index.query import IndexSet
from klp_lsp.model import CheckResult, FunctionImpact, HunkImpact
from klp_lsp.patch.check import Checker

SOURCE = FIXTURES / "kernel"
PATCHES = FIXTURES / "patches"
DEMO_CORE = SOURCE / "kernel" / "demo_core.c"


def check_file(indexes: IndexSet, name: str) -> CheckResult:
    path = PATCHES / name
    return Checker(indexes).check_patches([(str(path), path.read_text())], SOURCE)


def check_text(indexes: IndexSet, text: str, source: Path | None = SOURCE) -> CheckResult:
    return Checker(indexes).check_patches([("edit.patch", text)], source)


def hunks(result: CheckResult) -> list[HunkImpact]:
    return [h for f in result.files for h in f.hunks]


def summary(impact: FunctionImpact) -> tuple[object, ...]:
    return (
        impact.name,
        impact.status,
        impact.object,
        [s.name for s in impact.symbols],
        [s.name for s in impact.clones],
        impact.inlined_into,
        impact.patchable,
        [(e.symbol, e.patchable) for e in impact.replace],
    )


def edit(path: Path, *pairs: tuple[str, str]) -> str:
    """A unified diff (no context) of `path` with each `old` text replaced by `new`."""
    old = path.read_text()
    new = old
    for a, b in pairs:
        assert a in new, a
        new = new.replace(a, b, 1)
    rel = path.relative_to(SOURCE).as_posix()
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"
        )
    )


def test_clean_patch_changes_one_patchable_function(indexes: IndexSet) -> None:
    result = check_file(indexes, "clean.patch")
    assert result.findings == ()
    [file] = result.files
    assert (file.path, file.status, file.line, file.end_line) == (
        "kernel/demo_core.c",
        "modified",
        10,
        22,
    )
    assert [(u.object, u.name, u.analysed) for u in file.units] == [
        ("vmlinux", "kernel/demo_core.c", True)
    ]
    assert file.units[0].compiler is not None and not file.units[0].compiler.ipa_ra
    assert file.patch_subject == "[PATCH] demo: spread the fill pattern over more values"
    [hunk] = file.hunks
    assert (hunk.line, hunk.end_line) == (14, 22)
    assert hunk.section.startswith("noinline void demo_fill(")
    assert [summary(f) for f in hunk.functions] == [
        ("demo_fill", "changed", "vmlinux", ["demo_fill"], [], (), True, [("demo_fill", True)])
    ]
    assert hunk.functions[0].patch_lines == (18, 19)
    assert hunk.functions[0].symbols[0].sympos == 0
    assert hunk.notes == () and hunk.problems == ()


def test_demo_patch_hunks(indexes: IndexSet) -> None:
    result = check_file(indexes, "demo.patch")
    assert [(f.path, f.line, len(f.hunks)) for f in result.files] == [
        ("kernel/demo_core.c", 12, 2),
        ("lib/demo_lib.c", 34, 1),
    ]
    account, lookup, step = (h.functions for h in hunks(result))
    hosts = ("demo_submit", "demo_complete", "demo_reset")
    assert [summary(f) for f in account] == [
        ("demo_account", "changed", "vmlinux", [], [], hosts, False, [(h, True) for h in hosts])
    ]
    assert not account[0].out_of_line and account[0].inline_sites >= 3
    assert [summary(f) for f in lookup] == [
        (
            "demo_lookup",
            "changed",
            "vmlinux",
            ["demo_lookup"],
            ["demo_lookup.part.0"],
            ("demo_submit", "demo_complete"),
            True,
            [
                ("demo_lookup", True),
                ("demo_lookup.part.0", True),
                ("demo_submit", True),
                ("demo_complete", True),
            ],
        )
    ]
    [lib] = step
    assert (lib.name, lib.patchable, lib.register_callers) == (
        "demo_lib_step",
        False,
        ("demo_lib_sum",),
    )
    assert lib.not_patchable_reasons
    assert [e.symbol for e in lib.replace] == ["demo_lib_step", "demo_lib_sum"]


def test_pitfalls_series_data_comment_and_header_hunks(indexes: IndexSet) -> None:
    result = check_file(indexes, "pitfalls.mbox")
    by_path = {(f.path, f.line): f for f in result.files}
    header = next(f for (p, _), f in by_path.items() if p == "include/linux/demo_inline.h")
    # A header is no compile unit; its inline function reaches vmlinux and the module.
    assert header.units == ()
    [mix] = header.hunks
    assert {(f.name, f.object) for f in mix.functions} == {
        ("demo_mix32", "vmlinux"),
        ("demo_mix32", "demo"),
    }
    assert all(not f.out_of_line and f.inlined_into for f in mix.functions)
    last = [f for f in result.files if f.path == "kernel/demo_core.c"][-1]
    data, comment, fill = last.hunks
    assert (data.data, data.functions, data.notes) == (("struct demo_req",), (), ())
    assert (comment.functions, comment.notes) == ((), ("comment-only",))
    assert [f.name for f in fill.functions] == ["demo_fill"]
    subjects = {f.patch_subject for f in result.files}
    assert len(subjects) == len({f.patch_start for f in result.files}) > 1


def test_a_function_changed_by_two_hunks_is_on_both(indexes: IndexSet) -> None:
    text = edit(
        DEMO_CORE,
        ("\t\treturn a + b;\n", "\t\treturn a + b + 1;\n"),
        ("\t\treturn a * 31 - b * 17;\n", "\t\treturn a * 31 - b * 19;\n"),
    )
    result = check_text(indexes, text)
    first, second = hunks(result)
    assert [f.name for f in first.functions] == [f.name for f in second.functions] == ["demo_op"]
    assert first.functions[0] is second.functions[0]
    assert len(result.changed_functions) == 1


def test_outside_definitions_and_comment_hunks_are_told_apart(indexes: IndexSet) -> None:
    text = edit(
        DEMO_CORE,
        ("#include <linux/demo_inline.h>\n", "#include <linux/demo_inline.h>\n#include <x.h>\n"),
        ("/* Two global symbols at one address. */", "/* Two global symbols, one address. */"),
    )
    include, comment = hunks(result := check_text(indexes, text))
    assert include.notes == ("outside-definitions",)
    assert comment.notes == ("comment-only",)
    assert include.functions == comment.functions == ()
    assert result.files[0].problems == ()


def test_unmapped_hunks_say_why(indexes: IndexSet) -> None:
    text = edit(DEMO_CORE, ("\t\treturn a + b;\n", "\t\treturn a + b + 1;\n"))
    # The hunk does not apply: its context is not in the tree.
    broken = text.replace("\t\treturn a + b;\n", "\t\treturn a + c;\n")
    [hunk] = hunks(check_text(indexes, broken))
    assert hunk.functions == () and hunk.notes == ()
    assert hunk.problems == ("hunk does not apply to kernel/demo_core.c in the tree",)
    # No source tree: the file is not mapped at all.
    [file] = check_text(indexes, text, source=None).files
    assert file.problems and "no source tree" in file.problems[0]
    assert file.hunks[0].notes == () and file.hunks[0].functions == ()


def test_not_c_and_new_files(indexes: IndexSet) -> None:
    text = (
        "--- a/Documentation/demo.txt\n+++ b/Documentation/demo.txt\n@@ -1 +1 @@\n-a\n+b\n"
        "--- /dev/null\n+++ b/kernel/demo_new.c\n@@ -0,0 +1,4 @@\n"
        "+int demo_new(int x)\n+{\n+\treturn x + 1;\n+}\n"
    )
    doc, new = check_text(indexes, text).files
    assert doc.hunks[0].notes == ("not-c",) and doc.units == ()
    assert new.status == "added" and new.hunks[0].notes == ("new-file",)
    assert [(f.name, f.status, f.replace) for f in new.hunks[0].functions] == [
        ("demo_new", "added", ())
    ]
