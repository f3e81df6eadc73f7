"""Unified diff parsing: formats, line numbers in the patch file, and malformed input as data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klp_lsp.errors import PatchParseError
from klp_lsp.patch.diff import Patch, parse_patch_text, read_patch

PATCHES = Path(__file__).parent / "patches" / "debian-6.1"


def summary(patches: tuple[Patch, ...]) -> list[tuple[object, ...]]:
    """One row per file: subject, paths, status, and (header line, changes) per hunk."""
    rows: list[tuple[object, ...]] = []
    for p in patches:
        for f in p.files:
            hunks = [
                (
                    h.patch_line,
                    [(c.kind[0], c.old_line, c.new_line, c.patch_line) for c in h.changes],
                )
                for h in f.hunks
            ]
            rows.append((p.subject, f.old_path, f.new_path, f.status, f.patch_line, hunks))
    return rows


def check(text: str, expected: list[tuple[object, ...]], problems: list[tuple[int, str]]) -> None:
    patches, probs = parse_patch_text(text, "t.patch")
    assert summary(patches) == expected
    assert [(p.line, p.message.split(":")[0]) for p in probs] == problems
    assert all(p.patch_file == "t.patch" for p in probs)


MBOX = """\
From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Subject: [PATCH 1/2] fs: a subject that is
 folded over two lines

---
 f.c | 2 +-

diff --git a/f.c b/f.c
index 1..2 100644
--- a/f.c
+++ b/f.c
@@ -10,3 +10,3 @@ int foo(void)
 a
-b
+c
 d
--\x20
2.39.5

From 2222222222222222222222222222222222222222 Mon Sep 17 00:00:00 2001
Subject: [PATCH 2/2] second

diff --git a/g.c b/g.c
--- a/g.c
+++ b/g.c
@@ -1,2 +1,4 @@
+x
 a
+y
 b
"""


def test_mbox_series_keeps_subjects_and_patch_lines() -> None:
    check(
        MBOX,
        [
            (
                "[PATCH 1/2] fs: a subject that is folded over two lines",
                "f.c", "f.c", "modified", 9,
                [(13, [("r", 11, None, 15), ("a", 11, 11, 16)])],
            ),
            (
                "[PATCH 2/2] second", "g.c", "g.c", "modified", 24,
                [(27, [("a", 0, 1, 28), ("a", 1, 3, 30)])],
            ),
        ],
        [],
    )  # fmt: skip
    patches, _ = parse_patch_text(MBOX, "t.patch")
    assert [p.commit for p in patches] == ["1" * 40, "2" * 40]
    assert [p.patch_line for p in patches] == [1, 21]


def test_plain_diff_u_strips_the_first_component() -> None:
    text = (
        "--- linux.orig/fs/x.c\t2024-01-01 00:00:00\n"
        "+++ linux/fs/x.c\t2024-01-02 00:00:00\n"
        "@@ -5,2 +5,2 @@\n"
        "-a\n"
        "+b\n"
        " x\n"
    )
    check(
        text,
        [(None, "fs/x.c", "fs/x.c", "modified", 1, [(3, [("r", 5, None, 4), ("a", 5, 5, 5)])])],
        [],
    )


def test_git_diff_rename_new_deleted_binary() -> None:
    text = """\
diff --git a/old.c b/new.c
similarity index 100%
rename from old.c
rename to new.c
diff --git a/n.c b/n.c
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/n.c
@@ -0,0 +1,2 @@
+int x;
+int y;
diff --git a/d.c b/d.c
deleted file mode 100644
index 1111111..0000000
--- a/d.c
+++ /dev/null
@@ -1 +0,0 @@
-int z;
diff --git a/logo.png b/logo.png
index 1..2 100644
Binary files a/logo.png and b/logo.png differ
"""
    check(
        text,
        [
            (None, "old.c", "new.c", "renamed", 1, []),
            (None, None, "n.c", "added", 5, [(10, [("a", 0, 1, 11), ("a", 0, 2, 12)])]),
            (None, "d.c", None, "deleted", 13, [(18, [("r", 1, None, 19)])]),
            (None, "logo.png", "logo.png", "binary", 20, []),
        ],
        [],
    )


def test_short_hunk_is_a_problem_at_its_header_and_the_rest_is_read() -> None:
    text = """\
--- a/f.c
+++ b/f.c
@@ -1,3 +1,3 @@
 a
-b
+c
diff --git a/g.c b/g.c
--- a/g.c
+++ b/g.c
@@ -1 +1 @@
-x
+y
"""
    patches, probs = parse_patch_text(text, "t.patch")
    assert [(p.line, "does not match its body" in p.message) for p in probs] == [(3, True)]
    assert "1 old and 1 new lines missing" in probs[0].message
    assert [(f.path, len(f.hunks)) for f in patches[0].files] == [("f.c", 0), ("g.c", 1)]


def test_garbage_inside_a_hunk_names_the_line() -> None:
    text = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\nGARBAGE\n b\n"
    _, probs = parse_patch_text(text, "t.patch")
    assert len(probs) == 1
    assert probs[0].line == 3
    assert "'GARBAGE' at line 5" in probs[0].message


def test_malformed_hunk_header_and_no_diff() -> None:
    check(
        "--- a/f.c\n+++ b/f.c\n@@ -x +y @@\n",
        [(None, "f.c", "f.c", "modified", 1, [])],
        [(3, "malformed hunk header")],
    )
    check("just some text\n", [], [(0, "no diff found in the file")])


def test_hunk_counts_default_to_one() -> None:
    check(
        "--- a/f.c\n+++ b/f.c\n@@ -7 +7 @@\n-a\n+b\n",
        [(None, "f.c", "f.c", "modified", 1, [(3, [("r", 7, None, 4), ("a", 7, 7, 5)])])],
        [],
    )


def test_unreadable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(PatchParseError, match="cannot read patch"):
        read_patch(tmp_path / "missing.patch")
    with pytest.raises(PatchParseError, match="cannot read patch"):
        read_patch(tmp_path)


def test_non_utf8_bytes_keep_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "latin1.patch"
    p.write_bytes(b"Subject: caf\xe9\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-\xe9\n+e\n")
    patches, probs = read_patch(p)
    assert probs == ()
    assert [c.patch_line for c in patches[0].files[0].hunks[0].changes] == [5, 6]


def test_committed_debian_patches_parse_cleanly() -> None:
    seen = 0
    for p in sorted(PATCHES.iterdir()):
        if p.suffix in (".patch", ".diff", ".mbox"):
            patches, probs = read_patch(p)
            assert probs == (), p
            assert patches and all(pt.files for pt in patches), p
            seen += 1
    assert seen == 10
    series, _ = read_patch(PATCHES / "series-quota-sched.mbox")
    assert [p.subject for p in series] == [
        "[PATCH 1/3] quota: warn once about putting a free dquot",
        "[PATCH 2/3] sched/core: treat negative pids as the current task in find_process_by_pid()",
        "[PATCH 3/3] quota: spell DQF_INFO_DIRTY with BIT() and document it",
    ]


_PATCH_LINES = st.sampled_from(
    [
        "--- a/f.c",
        "+++ b/f.c",
        "diff --git a/f.c b/f.c",
        "@@ -1,2 +1,2 @@",
        "@@ -0,0 +1 @@",
        "@@ -3 +3,2 @@ int f(void)",
        "@@ garbage",
        " context",
        "-removed",
        "+added",
        "\\ No newline at end of file",
        "",
        "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001",
        "Subject: [PATCH] x",
        "Binary files a/x and b/x differ",
        "rename from a.c",
        "rename to b.c",
        "--- /dev/null",
        "+++ /dev/null",
    ]
)


@given(st.lists(_PATCH_LINES | st.text(max_size=20), max_size=40))
@settings(max_examples=300, deadline=None)
def test_parsing_never_raises(lines: list[str]) -> None:
    """Any text parses into records and problems; every problem line is inside the text."""
    text = "\n".join(lines)
    patches, problems = parse_patch_text(text, "t.patch")
    n = len(text.splitlines())
    assert all(0 <= p.line <= n for p in problems)
    for p in patches:
        for f in p.files:
            for h in f.hunks:
                assert all(1 <= c.patch_line <= n for c in h.changes)
