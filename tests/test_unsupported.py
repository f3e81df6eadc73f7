"""Exports, per-CPU variables, static keys and tracepoints in a patch (patch/unsupported.py)."""

from __future__ import annotations

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
