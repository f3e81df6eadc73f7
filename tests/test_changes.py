"""From patches and buffer edits to changed functions, data, macros and notes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klp_lsp.patch.changes import (
    Change,
    ChangeMapper,
    DataChange,
    FileNote,
    FunctionChange,
    MacroChange,
    changes_between,
    changes_from_patch,
)
from klp_lsp.patch.diff import Patch, parse_patch_text, read_patch

CORPUS = os.environ.get("KLP_CORPUS_DIR")
corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")
PATCHES = Path(__file__).parent / "patches" / "debian-6.1"
_EDITS = ["<delete>", "{", "}", "/* c", "*/", "int x;", "static int y;", "#define Z 1", "\\", ""]


def row(c: Change) -> tuple[object, ...]:
    """A compact, comparable view of one change."""
    if isinstance(c, FunctionChange):
        extra: list[object] = []
        if c.is_init:
            extra.append("init")
        if c.is_header:
            extra.append("header")
        if c.signature_changed:
            extra.append("signature")
        if c.static_locals_added:
            extra.append(f"+static {','.join(c.static_locals_added)}")
        if c.static_locals_removed:
            extra.append(f"-static {','.join(c.static_locals_removed)}")
        return ("function", c.status, c.source_file, c.name, c.start_line, c.end_line,
                c.patch_line, *extra)  # fmt: skip
    if isinstance(c, DataChange):
        return ("data", c.status, c.source_file, f"{c.kind} {c.name}", c.start_line, c.end_line,
                c.patch_line)  # fmt: skip
    if isinstance(c, MacroChange):
        users = tuple(f"{u.function}@{u.source_file}:{u.line}" for u in c.users)
        return ("macro", c.status, c.source_file, c.name, c.start_line, c.end_line, c.patch_line,
                users)  # fmt: skip
    assert isinstance(c, FileNote)
    return ("note", c.kind, c.source_file, c.patch_line)


def check(
    patch_text: str,
    tree: dict[str, str],
    expected: list[tuple[object, ...]],
    problems: list[tuple[int, str]] | None = None,
    tmp_path: Path | None = None,
    macro_search: tuple[str, ...] = (),
) -> None:
    """Write `tree` under `tmp_path`, map `patch_text` through it and compare rows."""
    assert tmp_path is not None
    for rel, text in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    patches, parse_problems = parse_patch_text(patch_text, "t.patch")
    assert parse_problems == ()
    changes, probs = changes_from_patch(patches, tmp_path, [Path(p) for p in macro_search])
    assert [row(c) for c in changes] == expected
    assert [(p.line, p.message) for p in probs] == (problems or [])


FOO_C = """\
#include <linux/x.h>

#define LIMIT 4

struct box {
	int a;
};

static int counter;

/* Add one. */
static int add(int x)
{
	return x + 1;
}

int __init setup(void)
{
	return add(LIMIT);
}
"""


def test_body_change_maps_to_the_function(tmp_path: Path) -> None:
    patch = """\
--- a/foo.c
+++ b/foo.c
@@ -13,3 +13,3 @@ static int add(int x)
 {
-	return x + 1;
+	return x + 2;
 }
"""
    check(patch, {"foo.c": FOO_C}, [("function", "changed", "foo.c", "add", 12, 15, 5)],
          tmp_path=tmp_path)  # fmt: skip


def test_hunk_at_an_offset_is_found_and_reported(tmp_path: Path) -> None:
    patch = "--- a/foo.c\n+++ b/foo.c\n@@ -20,3 +20,3 @@\n {\n-\treturn x + 1;\n+\treturn 0;\n }\n"
    check(
        patch,
        {"foo.c": FOO_C},
        [("function", "changed", "foo.c", "add", 12, 15, 5)],
        [(3, "hunk applies to foo.c at offset -7")],
        tmp_path=tmp_path,
    )


def test_comment_only_change_changes_no_function(tmp_path: Path) -> None:
    patch = "--- a/foo.c\n+++ b/foo.c\n@@ -11,2 +11,2 @@\n-/* Add one. */\n+/* Add 1. */\n static int add(int x)\n"  # noqa: E501
    check(patch, {"foo.c": FOO_C}, [("note", "comment-only", "foo.c", 4)], tmp_path=tmp_path)


def test_whitespace_inside_a_function_is_no_change(tmp_path: Path) -> None:
    patch = "--- a/foo.c\n+++ b/foo.c\n@@ -14 +14 @@\n-\treturn x + 1;\n+\treturn x  +  1;\n"
    check(patch, {"foo.c": FOO_C}, [("note", "comment-only", "foo.c", 4)], tmp_path=tmp_path)


def test_init_struct_global_and_macro(tmp_path: Path) -> None:
    patch = """\
--- a/foo.c
+++ b/foo.c
@@ -1,10 +1,11 @@
 #include <linux/x.h>
 
-#define LIMIT 4
+#define LIMIT 5
 
 struct box {
 	int a;
+	int b;
 };
 
-static int counter;
+static long counter;
 
@@ -17,4 +18,4 @@ static int add(int x)
 int __init setup(void)
 {
-	return add(LIMIT);
+	return add(LIMIT) + 1;
 }
"""  # noqa: W293, E101
    check(
        patch,
        {"foo.c": FOO_C},
        [
            ("function", "changed", "foo.c", "setup", 17, 20, 20, "init"),
            ("data", "changed", "foo.c", "struct box", 5, 7, 11),
            ("data", "changed", "foo.c", "variable counter", 9, 9, 14),
            ("macro", "changed", "foo.c", "LIMIT", 3, 3, 6, ("setup@foo.c:19",)),
        ],
        tmp_path=tmp_path,
    )


def test_static_locals_signature_new_and_removed_functions(tmp_path: Path) -> None:
    patch = """\
--- a/foo.c
+++ b/foo.c
@@ -11,10 +11,16 @@ static int counter;
 /* Add one. */
-static int add(int x)
+static int add(long x)
 {
+	static int calls;
+
 	return x + 1;
 }
 
-int __init setup(void)
+static int twice(int x)
 {
-	return add(LIMIT);
+	return add(add(x));
+}
+
+void helper(void)
+{
 }
"""  # noqa: W293, E101
    check(
        patch,
        {"foo.c": FOO_C},
        [
            ("function", "changed", "foo.c", "add", 12, 15, 5, "signature", "+static calls"),
            ("function", "removed", "foo.c", "setup", 17, 20, 13, "init"),
            ("function", "added", "foo.c", "twice", 19, 22, 14),
            ("function", "added", "foo.c", "helper", 24, 26, 20),
        ],
        tmp_path=tmp_path,
    )


def test_change_outside_definitions(tmp_path: Path) -> None:
    patch = "--- a/foo.c\n+++ b/foo.c\n@@ -1 +1 @@\n-#include <linux/x.h>\n+#include <linux/y.h>\n"
    check(patch, {"foo.c": FOO_C}, [("note", "outside-definitions", "foo.c", 4)], tmp_path=tmp_path)


def test_header_macro_users_are_searched(tmp_path: Path) -> None:
    patch = """\
--- a/include/q.h
+++ b/include/q.h
@@ -1,4 +1,4 @@
-#define DIRTY (1 << 3)
+#define DIRTY BIT(3)
 static inline int is_dirty(int f)
 {
 	return f & DIRTY;
"""  # noqa: E101
    tree = {
        "include/q.h": "#define DIRTY (1 << 3)\nstatic inline int is_dirty(int f)\n{\n\treturn f & DIRTY;\n}\n",  # noqa: E501
        "a.c": "int mark(int *f)\n{\n\t*f |= DIRTY;\n\treturn 0;\n}\nint other(void) { return 1; }\n",  # noqa: E501
        "b.c": "int unrelated(void) { return 0; }\n",
    }
    check(
        patch,
        tree,
        [("macro", "changed", "include/q.h", "DIRTY", 1, 1, 4,
          ("is_dirty@include/q.h:4", "mark@a.c:3"))],
        tmp_path=tmp_path,
        macro_search=("a.c", "b.c", "missing.c"),
    )  # fmt: skip


def test_new_deleted_renamed_binary_and_not_c(tmp_path: Path) -> None:
    patch = """\
diff --git a/new.c b/new.c
new file mode 100644
--- /dev/null
+++ b/new.c
@@ -0,0 +1,3 @@
+int fresh(void)
+{
+}
diff --git a/foo.c b/foo.c
deleted file mode 100644
--- a/foo.c
+++ /dev/null
@@ -1,2 +0,0 @@
-#include <linux/x.h>
-
diff --git a/old.c b/moved.c
similarity index 100%
rename from old.c
rename to moved.c
diff --git a/Makefile b/Makefile
--- a/Makefile
+++ b/Makefile
@@ -1 +1 @@
-obj-y += foo.o
+obj-y += new.o
diff --git a/logo.png b/logo.png
Binary files a/logo.png and b/logo.png differ
"""
    check(
        patch,
        {"foo.c": "#include <linux/x.h>\n\n", "Makefile": "obj-y += foo.o\n"},
        [
            ("note", "new-file", "new.c", 1),
            ("function", "added", "new.c", "fresh", 1, 3, 6),
            ("note", "deleted-file", "foo.c", 9),
            ("note", "outside-definitions", "foo.c", 14),
            ("note", "renamed", "old.c", 16),
            ("note", "not-c", "Makefile", 24),
            ("note", "binary", "logo.png", 26),
        ],
        tmp_path=tmp_path,
    )


def test_missing_pre_image_and_hunk_that_does_not_apply(tmp_path: Path) -> None:
    patch = """\
--- a/gone.c
+++ b/gone.c
@@ -1 +1 @@
-a
+b
--- a/foo.c
+++ b/foo.c
@@ -1 +1 @@
-#include <nothing.h>
+#include <linux/y.h>
"""
    check(
        patch,
        {"foo.c": FOO_C},
        [],
        [
            (1, f"gone.c: pre-image not found in {tmp_path}"),
            (8, "hunk does not apply to foo.c in the tree"),
        ],
        tmp_path=tmp_path,
    )
    patches, _ = parse_patch_text(patch, "t.patch")
    _, probs = changes_from_patch(patches, None)
    assert [p.message for p in probs] == [
        "gone.c: no source tree given to map hunks",
        "foo.c: no source tree given to map hunks",
    ]


def test_series_applies_in_order_and_new_code_stays_new(tmp_path: Path) -> None:
    text = """\
From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
Subject: [PATCH 1/2] add

--- a/foo.c
+++ b/foo.c
@@ -20,0 +21,5 @@
+
+static int added(void)
+{
+	return 1;
+}
From 2222222222222222222222222222222222222222 Mon Sep 17 00:00:00 2001
Subject: [PATCH 2/2] change

--- a/foo.c
+++ b/foo.c
@@ -24,2 +24,2 @@
-	return 1;
+	return 2;
 }
"""
    check(text, {"foo.c": FOO_C}, [("function", "added", "foo.c", "added", 22, 25, 8)],
          tmp_path=tmp_path)  # fmt: skip


def test_changes_between_buffer_and_disk() -> None:
    new = FOO_C.replace("return x + 1;", "return x + 3;").replace("/* Add one. */", "/* Add. */")
    assert [row(c) for c in changes_between("foo.c", FOO_C, new)] == [
        ("function", "changed", "foo.c", "add", 12, 15, 14),
    ]
    assert changes_between("foo.c", FOO_C, FOO_C) == []
    only_comment = FOO_C.replace("/* Add one. */", "/* Add 1. */")
    assert [row(c) for c in changes_between("foo.c", FOO_C, only_comment)] == [
        ("note", "comment-only", "foo.c", 11)
    ]
    assert [row(c) for c in changes_between("Kconfig", "a\n", "b\n")] == [
        ("note", "not-c", "Kconfig", 1)
    ]


# --- the Debian 6.1 tree -------------------------------------------------------------------

DEBIAN_EXPECTED: dict[str, list[tuple[object, ...]]] = {
    "clones-getname_flags.patch": [
        ("function", "changed", "fs/namei.c", "getname_flags", 128, 205, 18),
    ],
    "inlined-enqueue_task.patch": [
        ("function", "changed", "kernel/sched/core.c", "enqueue_task", 2060, 2075, 19),
    ],
    "header-list_move_tail.patch": [
        ("function", "changed", "include/linux/list.h", "list_move_tail", 233, 238, 19, "header"),
    ],
    "init-proc_caches_init.patch": [
        ("function", "changed", "kernel/fork.c", "proc_caches_init", 3144, 3166, 18, "init"),
    ],
    "struct-nameidata.diff": [
        ("data", "changed", "fs/namei.c", "struct nameidata", 567, 589, 7),
    ],
    "comment-dqput.patch": [
        ("note", "comment-only", "fs/quota/dquot.c", 18),
    ],
    "rt-find_lock_lowest_rq.patch": [
        ("function", "changed", "kernel/sched/rt.c", "find_lock_lowest_rq", 1996, 2052, 19),
    ],
    "series-quota-sched.mbox": [
        ("function", "changed", "fs/quota/dquot.c", "dqput", 888, 923, 18, "+static warned"),
        ("function", "changed", "kernel/sched/core.c", "find_process_by_pid", 7382, 7385, 51),
        ("note", "not-c", "Documentation/filesystems/quota.rst", 78),
        ("macro", "changed", "include/linux/quota.h", "DQF_INFO_DIRTY", 245, 245, 88,
         ("mark_info_dirty@fs/quota/dquot.c:473", "v1_write_file_info@fs/quota/quota_v1.c:201",
          "v2_write_file_info@fs/quota/quota_v2.c:204")),
    ],
}  # fmt: skip


@corpus
@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(DEBIAN_EXPECTED))
def test_debian_patches(name: str) -> None:
    assert CORPUS is not None
    src = Path(CORPUS) / "src"
    patches, parse_problems = read_patch(PATCHES / name)
    assert parse_problems == ()
    search = [Path(f"fs/quota/{f}") for f in ("dquot.c", "quota_v1.c", "quota_v2.c")]
    changes, problems = changes_from_patch(patches, src, search)
    assert problems == ()
    assert [row(c) for c in changes] == DEBIAN_EXPECTED[name]
    for c in changes:
        if isinstance(c, (FunctionChange, DataChange, MacroChange, FileNote)):
            assert c.patch_file == str(PATCHES / name)


@corpus
@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(DEBIAN_EXPECTED))
def test_debian_patches_really_apply(name: str) -> None:
    assert CORPUS is not None
    src = Path(CORPUS) / "src"
    patch = PATCHES / name
    if shutil.which("patch"):
        subprocess.run(
            ["patch", "-p1", "--dry-run", "--force", "--quiet", "-d", str(src), "-i", str(patch)],
            check=True,
            capture_output=True,
        )
    if shutil.which("git"):
        subprocess.run(
            ["git", "apply", "--check", str(patch)], cwd=src, check=True, capture_output=True
        )


def _edited(text: str, edits: list[tuple[int, str]]) -> str:
    """`text` with each (line, edit) applied in turn: insert the line, or "<delete>" one."""
    lines = text.split("\n")
    for at, edit in edits:
        at = min(at, len(lines))
        if edit == "<delete>":
            del lines[at : at + 1]
        else:
            lines.insert(at, edit)
    return "\n".join(lines)


@given(st.lists(st.tuples(st.integers(0, 25), st.sampled_from(_EDITS)), max_size=6))
@settings(max_examples=150, deadline=None)
def test_changes_between_never_raises(edits: list[tuple[int, str]]) -> None:
    """Random line edits of a C file map to changes without raising."""
    for c in changes_between("foo.c", FOO_C, _edited(FOO_C, edits)):
        assert c.patch_line >= 1


# --- the region parse gives what a whole-file parse gives ----------------------------------

# Chunks with duplicate names under #ifdef, a syscall, an attribute with arguments, data and
# macros, so that edits add and remove definitions of a name also defined elsewhere.
MANY_C = """\
#include <linux/x.h>

#define LIMIT 4
#define TWICE(x) ((x) * 2)

struct box {
	int a;
};

static int counter;

#ifdef CONFIG_A
static int add(int x)
{
	return x + LIMIT;
}
#else
static int add(int x)
{
	return TWICE(x);
}
#endif

SYSCALL_DEFINE1(poke, int, x)
{
	static int seen;
	return add(x) + seen;
}

static void __attribute__((noinline)) __printf(1, 2) say(const char *f, ...)
{
	counter++;
}

struct box boxes[2] = {
	{ 1 },
};

static int add(int x)
{
	return x;
}
"""
_REGION_EDITS = [
    *_EDITS,
    "static int add(int x)",
    "static int add(int y) { return y; }",
    "int counter;",
    "struct box {",
    "#define LIMIT 5",
    "#define TWICE(x) (x)",
    "SYSCALL_DEFINE1(poke, int, x)",
    "__attribute__((",
    ")",
    "\treturn LIMIT;",
    "#ifdef CONFIG_B",
    "#endif",
]


def assert_same_as_whole_file_between(path: str, old: str, new: str) -> None:
    fast = ChangeMapper().changes_between(path, old, new)
    whole = ChangeMapper(whole_files=True).changes_between(path, old, new)
    assert fast == whole


@given(st.lists(st.tuples(st.integers(0, 60), st.sampled_from(_REGION_EDITS)), max_size=6))
@settings(max_examples=400, deadline=None)
def test_region_parse_equals_whole_file_parse(edits: list[tuple[int, str]]) -> None:
    """Random line edits map to the same changes with region and whole-file parses."""
    assert_same_as_whole_file_between("many.c", MANY_C, _edited(MANY_C, edits))


def test_region_parse_pairs_a_new_duplicate_with_later_ones() -> None:
    """A third `add` added before the last one pairs, by rank, with the last one.

    That is what the whole-file parse does (the pairing is by name and rank); the region parse
    must see the untouched chunk of the last `add` to do the same.
    """
    new = MANY_C.replace(
        "SYSCALL_DEFINE1", "static int add(int x)\n{\n\treturn 0;\n}\n\nSYSCALL_DEFINE1"
    )
    assert_same_as_whole_file_between("many.c", MANY_C, new)
    rows = [row(c) for c in ChangeMapper().changes_between("many.c", MANY_C, new)]
    assert rows == [
        ("function", "changed", "many.c", "add", 39, 42, 24),
        ("note", "outside-definitions", "many.c", 28),
    ]


def assert_same_as_whole_file(patches: list[Patch], src: Path, search: list[Path]) -> None:
    fast = ChangeMapper().changes_from_patch(patches, src, search)
    whole = ChangeMapper(whole_files=True).changes_from_patch(patches, src, search)
    assert fast == whole


@corpus
@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(DEBIAN_EXPECTED))
def test_debian_patches_region_parse_equals_whole_file_parse(name: str) -> None:
    assert CORPUS is not None
    patches, _ = read_patch(PATCHES / name)
    search = [Path(f"fs/quota/{f}") for f in ("dquot.c", "quota_v1.c", "quota_v2.c")]
    assert_same_as_whole_file(patches, Path(CORPUS) / "src", search)


def bench_patch(src: Path) -> str:
    """The 50-hunk patch of bench/lsp_bench.py: from the warm index in KLP_CORPUS_INDEX_DIR,
    else from functions of a fixed list of files (its `make_patch` needs only their lines)."""
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from lsp_bench import make_patch, pick_functions

    from klp_lsp.lsp.indexing import existing_indexes
    from klp_lsp.patch.source_map import SourceParser

    index_dir = os.environ.get("KLP_CORPUS_INDEX_DIR")
    ready = (
        existing_indexes([src.parent / "amd64" / "vmlinux"], Path(index_dir)) if index_dir else None
    )
    if ready:
        functions = pick_functions([r.index_path for r in ready], src, 1000, 1)
        return make_patch(src, functions, 50)
    parser = SourceParser()
    picked = []
    for rel in ("fs/namei.c", "kernel/sched/core.c", "kernel/sys.c", "mm/mmap.c", "fs/open.c"):
        fns = parser.parse((src / rel).read_text(errors="surrogateescape")).functions
        picked += [SimpleNamespace(decl_file=rel, decl_line=f.name_line) for f in fns[::7][:10]]
    return make_patch(src, picked, 50)


@corpus
@pytest.mark.corpus
def test_bench_patch_region_parse_equals_whole_file_parse() -> None:
    assert CORPUS is not None
    src = Path(CORPUS) / "src"
    text = bench_patch(src)
    assert text.count("\n@@ ") >= 45
    patches, problems = parse_patch_text(text, "bench.patch")
    assert problems == ()
    assert_same_as_whole_file(patches, src, [])


@corpus
@pytest.mark.corpus
@pytest.mark.parametrize(
    "rel", ["kernel/sched/core.c", "fs/namei.c", "kernel/sys.c", "include/linux/list.h"]
)
def test_random_edits_of_kernel_files_region_parse_equals_whole_file(rel: str) -> None:
    """Lines of the file itself deleted, copied and moved, `}` lines among them."""
    import random

    assert CORPUS is not None
    old = (Path(CORPUS) / "src" / rel).read_text(encoding="utf-8", errors="surrogateescape")
    rng = random.Random(rel)
    old_lines = old.split("\n")
    closers = [i for i, x in enumerate(old_lines) if x.startswith("}")]
    for _ in range(12):
        lines = list(old_lines)
        for _ in range(rng.randint(1, 5)):
            at = rng.choice(closers) + rng.randint(-2, 2) if rng.random() < 0.5 else None
            at = min(max(at if at is not None else rng.randrange(len(lines)), 0), len(lines) - 1)
            op = rng.random()
            if op < 0.4:
                del lines[at : at + rng.randint(1, 3)]
            elif op < 0.8:
                lines.insert(at, rng.choice(old_lines))
            else:
                i = rng.randrange(len(old_lines) - 8)
                lines[at:at] = old_lines[i : i + rng.randint(1, 8)]
        assert_same_as_whole_file_between(rel, old, "\n".join(lines))
