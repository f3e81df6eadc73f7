"""`.c` files compiled inside others (kernel/sched/build_policy.c includes rt.c): the files to
index first for a patch or an edited file, and the CUs a file maps to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from klp_lsp.patch.check import cu_names_for_patch
from klp_lsp.patch.includes import including_files, with_including_files

RT_PATCH = """--- a/kernel/sched/rt.c
+++ b/kernel/sched/rt.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+int c;
 int d;
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    sched = tmp_path / "kernel" / "sched"
    sched.mkdir(parents=True)
    (sched / "rt.c").write_text("int a;\nint b;\nint d;\n")
    (sched / "idle.c").write_text("int idle;\n")
    (sched / "build_policy.c").write_text(
        '#include "sched.h"\n#include "idle.c"\n#include "rt.c"\n'
    )
    (sched / "core.c").write_text('#include "sched.h"\n/* not "rt.c" */\n')
    return tmp_path


def test_including_files(tree: Path) -> None:
    assert including_files(tree, "kernel/sched/rt.c") == ["kernel/sched/build_policy.c"]
    assert including_files(tree, "kernel/sched/core.c") == []
    assert including_files(tree, "kernel/sched/sched.h") == []  # only .c files
    assert including_files(tree, "kernel/nowhere/x.c") == []


def test_nothing_outside_the_tree_is_read(tree: Path) -> None:
    outside = tree.parent / f"{tree.name}-outside.c"
    outside.write_text('#include "x.c"\n')
    try:
        rel = os.path.relpath(tree.parent / "x.c", tree)
        assert rel.startswith("..")
        assert including_files(tree, rel) == []
    finally:
        outside.unlink()


def test_the_files_to_index_first(tree: Path) -> None:
    assert with_including_files(["kernel/sched/rt.c", "kernel/sched/core.c"], tree) == [
        "kernel/sched/rt.c",
        "kernel/sched/core.c",
        "kernel/sched/build_policy.c",
    ]
    assert with_including_files(["kernel/sched/rt.c"], None) == ["kernel/sched/rt.c"]
    assert cu_names_for_patch(RT_PATCH) == ["kernel/sched/rt.c"]
    assert cu_names_for_patch(RT_PATCH, tree) == [
        "kernel/sched/rt.c",
        "kernel/sched/build_policy.c",
    ]
