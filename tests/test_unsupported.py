"""Exports, per-CPU variables, static keys and tracepoints in a patch (patch/unsupported.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from klp_lsp.patch import unsupported
from klp_lsp.patch.c_items import Item, split_items
from klp_lsp.patch.unsupported import find_unsupported

PRE = """\
#define CREATE_TRACE_POINTS
#include <trace/events/demo.h>

static DEFINE_PER_CPU(int, hits);
DEFINE_STATIC_KEY_FALSE(demo_fast);

int demo_count(void)
{
	return 1;
}
EXPORT_SYMBOL(demo_count);

int demo_old(void)
{
	return 0;
}
EXPORT_SYMBOL_GPL(demo_old);
"""


def check(post: str, changed: list[str], expected: list[tuple[str, str, str, str | None]]) -> None:
    got = [
        (u.kind, u.severity, u.name, u.function)
        for u in find_unsupported("x.c", PRE, post, changed)
    ]
    assert got == expected


def test_a_plain_edit_has_nothing() -> None:
    check(PRE.replace("return 0;", "return 2;"), ["demo_old"], [])


def test_added_and_removed_definitions_are_errors() -> None:
    post = PRE.replace("EXPORT_SYMBOL_GPL(demo_old);\n", "") + (
        "EXPORT_SYMBOL(demo_new);\nDEFINE_PER_CPU(long, misses);\n"
        "DEFINE_STATIC_KEY_TRUE(demo_slow);\nTRACE_EVENT(demo_event, TP_PROTO(int x));\n"
    )
    check(
        post,
        [],
        [
            ("export-symbol", "error", "demo_new", None),
            ("per-cpu", "error", "misses", None),
            ("static-key", "error", "demo_slow", None),
            ("tracepoint", "error", "demo_event", None),
            ("export-symbol", "error", "demo_old", None),
        ],
    )


def test_uses_of_the_files_own_objects_are_warnings() -> None:
    post = PRE.replace(
        "\treturn 1;",
        "\tthis_cpu_inc(hits);\n\tif (static_branch_unlikely(&demo_fast))\n"
        "\t\ttrace_demo_event(1);\n\treturn 1;",
    )
    check(
        post,
        ["demo_count"],
        [
            ("per-cpu", "warning", "hits", "demo_count"),
            ("static-key", "warning", "demo_fast", "demo_count"),
            ("tracepoint", "warning", "trace_demo_event", "demo_count"),
        ],
    )


# --- the shortcut for changes inside functions ----------------------------------------------

FIXTURE_SOURCES = Path(__file__).parent / "fixtures" / "kernel" / "kernel"


def _reference(path: str, pre: str, post: str, changed: list[str]) -> list[object]:
    """What splitting both texts whole finds: the shortcut must find exactly that."""
    before, after = split_items(pre), split_items(post)
    return [*unsupported._macro_changes(before, after), *unsupported._uses(path, after, changed)]


def _edits(text: str) -> list[tuple[str, list[str], bool]]:
    """(post-image, changed functions, whether every change is inside a function body)."""
    items = [i for i in split_items(text) if i.kind == "function" and i.body and i.name]
    lines = text.splitlines(keepends=True)

    def inside(item: Item, new: str) -> list[str]:
        """The lines with `new` first in the function's body."""
        assert item.body is not None
        at = text.count("\n", 0, item.tokens[item.body[0]].start) + 1
        return [*lines[:at], new, *lines[at:]]

    first, last = items[0], items[-1]
    out: list[tuple[str, list[str], bool]] = []
    for new in (
        "\tbarrier();\n",
        "\tthis_cpu_inc(hits);\n",
        "\tif (static_branch_likely(&demo_fast)) {\n\t\ttrace_demo_event(1);\n\t}\n",
        "\tfoo(a,\n\t    b);\n",
    ):
        post = inside(first, new)
        out.append(("".join(post), [str(first.name)], True))
    # Two changes in two functions.
    post = inside(first, "\tthis_cpu_inc(hits);\n")
    at_last = text.count("\n", 0, last.tokens[last.body[0]].start) + 2  # one line was added
    post = [*post[:at_last], "\tbarrier();\n", *post[at_last:]]
    out.append(("".join(post), [str(first.name), str(last.name)], True))
    # Changes the shortcut must leave to the whole split.
    for new in ("EXPORT_SYMBOL(demo_new);\n", "static DEFINE_PER_CPU(int, more);\n", "}\n{\n"):
        out.append((text + new, [], False))
    post = inside(first, "\t/* a comment */\n")
    out.append(("".join(post), [str(first.name)], False))
    return out


def test_the_shortcut_finds_what_the_whole_split_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fixture source, behind the definitions of PRE, edited inside and outside functions:
    the same findings as splitting both texts whole, and no whole split when every change lies
    inside a function body."""
    for source in sorted(FIXTURE_SOURCES.glob("*.c")):
        pre = PRE + source.read_text()
        for post, changed, local in _edits(pre):
            expected = _reference("x.c", pre, post, changed)
            sizes: list[int] = []

            def split(text: str, sizes: list[int] = sizes) -> list[Item]:
                sizes.append(len(text))
                return split_items(text)

            monkeypatch.setattr(unsupported, "split_items", split)
            got = find_unsupported("x.c", pre, post, changed)
            monkeypatch.undo()
            assert got == expected, (source.name, post)
            whole = any(size >= len(pre) for size in sizes)
            assert whole == (not local), (source.name, post, sizes)


def test_a_use_added_inside_a_function_is_found_without_the_whole_split() -> None:
    post = PRE.replace("\treturn 1;", "\tthis_cpu_inc(hits);\n\treturn 1;")
    assert [
        (u.kind, u.name, u.function) for u in find_unsupported("x.c", PRE, post, ["demo_count"])
    ] == [("per-cpu", "hits", "demo_count")]
