"""Top-level items of C texts (patch/c_items.py): kernel-style definitions, declarations, macros."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from klp_fixtures import FIXTURES

from klp_lsp.patch.c_items import Item, references, render, split_items


def summary(item: Item) -> tuple[object, ...]:
    """(kind, sub-kind, name, macro, [(declarator name, is_function, text)], types)."""
    sub = item.directive if item.kind == "directive" else item.decl_kind
    decls = [(d.name, d.is_function, render(d.tokens)) for d in item.declarators]
    return (item.kind, sub, item.name, item.macro, decls, item.types)


def check(text: str, expected: list[tuple[object, ...]]) -> None:
    assert [summary(i) for i in split_items(text)] == expected


def test_functions_with_kernel_attributes_and_macros() -> None:
    check(
        "static int __init foo(void)\n{\n\treturn 0;\n}\n"
        "int bar(int a) __acquires(x)\n{\n\treturn a;\n}\n"
        "__printf(1, 2) int baz(const char *fmt, ...)\n{\n\treturn 0;\n}\n"
        "SYSCALL_DEFINE2(ctl, int, op, long, arg)\n{\n\treturn op;\n}\n",
        [
            ("function", None, "foo", None, [], ()),
            ("function", None, "bar", None, [], ()),
            ("function", None, "baz", None, [], ()),
            ("function", None, "ctl", "SYSCALL_DEFINE2", [], ()),
        ],
    )


def test_declarations() -> None:
    check(
        'static const char *const names[] = { "a", "b" };\n'
        "int x __read_mostly = 1, *y;\n"
        "static int (*hook)(int) = NULL;\n"
        "static void (*hooks[4])(void);\n"
        "static int helper(struct foo *f);\n"
        "struct foo;\n"
        "typedef int (*fn_t)(int);\n"
        "enum { A, B = 3, C };\n"
        "struct bar { int a; } baz = { 1 };\n",
        [
            ("declaration", "variable", "names", None, [("names", False, "*const names[]")], ()),
            (
                "declaration",
                "variable",
                "x",
                None,
                [("x", False, "x __read_mostly"), ("y", False, "*y")],
                (),
            ),
            ("declaration", "variable", "hook", None, [("hook", False, "(*hook)(int)")], ()),
            (
                "declaration",
                "variable",
                "hooks",
                None,
                [("hooks", False, "(*hooks[4])(void)")],
                (),
            ),
            (
                "declaration",
                "prototype",
                "helper",
                None,
                [("helper", True, "helper(struct foo *f)")],
                (),
            ),
            ("declaration", "other", None, None, [], ()),
            ("declaration", "type", None, None, [], ("fn_t",)),
            ("declaration", "type", None, None, [], ("A", "B", "C")),
            ("declaration", "variable", "baz", None, [("baz", False, "baz")], ("bar",)),
        ],
    )


def test_macro_calls_with_and_without_semicolons() -> None:
    items = split_items(
        "static DEFINE_MUTEX(lock);\n"
        "EXPORT_SYMBOL(foo)\n"
        "\n"
        "DEFINE_PER_CPU(struct rq, runqueues);\n"
        "late_initcall(x_init);\n"
    )
    assert [(i.decl_kind, i.name, [render(a) for a in i.args]) for i in items] == [
        ("macro-call", "DEFINE_MUTEX", ["lock"]),
        ("macro-call", "EXPORT_SYMBOL", ["foo"]),
        ("macro-call", "DEFINE_PER_CPU", ["struct rq", "runqueues"]),
        ("macro-call", "late_initcall", ["x_init"]),
    ]
    assert items[0].is_static and not items[2].is_static


def test_directives_comments_and_lines() -> None:
    text = (
        "// SPDX-License-Identifier: GPL-2.0\n"
        "#include <linux/fs.h>\n"
        "#define TWICE(x) \\\n\t((x) * 2)\n"
        "\n"
        "/* A helper. */\n"
        "static int f(void)\n"
        "{\n"
        "#ifdef CONFIG_X\n"
        "\treturn TWICE(1);\n"
        "#endif\n"
        "\treturn 0;\n"
        "}\n"
    )
    items = split_items(text)
    assert [(i.kind, i.directive, i.name, i.line, i.end_line) for i in items] == [
        ("directive", "include", None, 2, 2),
        ("directive", "define", "TWICE", 3, 4),
        ("function", None, "f", 7, 13),
    ]
    # The comment above the function belongs to it; the directives inside stay in its text.
    assert text[items[2].start :].startswith("/* A helper. */")
    assert "#ifdef CONFIG_X" in text[items[2].start : items[2].end]
    assert references(items[2].body_tokens()) == {"TWICE"}


def test_references_skip_members_and_keywords() -> None:
    (item,) = split_items("int f(struct s *p)\n{\n\treturn p->len + g(p.x, sizeof(int));\n}\n")
    assert references(item.body_tokens()) == {"p", "g"}


@pytest.mark.parametrize(
    "path",
    ["kernel/kernel/demo_core.c", "kernel/drivers/demo/demo_main.c", "kernel/init/main_demo.c"],
)
def test_fixture_files_split_into_their_definitions(path: str) -> None:
    text = (FIXTURES / path).read_text()
    items = split_items(text)
    # Every top-level function the file defines is one function item, in order, and the
    # items cover the file without overlapping.
    names = [i.name for i in items if i.kind == "function"]
    assert len(names) == len(set(names)) or path.endswith("demo_core.c")
    ends = [(i.start, i.end) for i in items]
    assert ends == sorted(ends)
    assert all(a[1] <= b[0] for a, b in pairwise(ends))
    if path.endswith("demo_core.c"):
        assert "demo_ctl" in names and "demo_getcount" in names and "demo_bitmap_weight" in names


def test_corpus_files_split(tmp_path: Path) -> None:
    """The Debian source, when present: every file of kernel/sched splits and names match."""
    from klp_fixtures import corpus_dir

    corpus = corpus_dir()
    if corpus is None:
        pytest.skip("KLP_CORPUS_DIR is not set")
    for f in sorted((corpus / "src" / "kernel" / "sched").glob("*.c")):
        items = split_items(f.read_text(errors="replace"))
        assert items, f
        assert all(i.kind != "function" or i.name for i in items), f
