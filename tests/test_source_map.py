"""Function extents and definitions in C text, including kernel macros, and on the real tree."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from klp_lsp.patch.source_map import SourceParser, code_tokens, parse_source

CORPUS = os.environ.get("KLP_CORPUS_DIR")
corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")


def check(src: str, expected: list[tuple[object, ...]]) -> None:
    """Rows: (name, start, end, name line, static, inline, attributes, static locals)."""
    got = [
        (f.name, f.start_line, f.end_line, f.name_line, f.is_static, f.is_inline, f.attributes,
         f.static_locals)
        for f in parse_source(src).functions
    ]  # fmt: skip
    assert got == expected


def test_plain_and_kernel_attributed_functions() -> None:
    check(
        """\
static int __init foo(void)
{
	return 0;
}

static __always_inline int
bar(int x)
{
	static int calls, *last;
	{
		static DEFINE_RATELIMIT_STATE(rs, 1, 1);
	}
	return x;
}
__visible
asmlinkage long __cold baz(void) __releases(lock)
{
	return 1;
}
""",
        [
            ("foo", 1, 4, 1, True, False, ("__init",), ()),
            ("bar", 6, 14, 7, True, True, ("__always_inline",), ("calls", "last", "rs")),
            ("baz", 15, 19, 16, False, False, ("__visible", "asmlinkage", "__cold"), ()),
        ],
    )


def test_sparse_annotations_are_not_attributes() -> None:
    check(
        "long f(const char __user *p, void __iomem *q)\n{\n\treturn 0;\n}\n",
        [("f", 1, 4, 1, False, False, (), ())],
    )


def test_unknown_loop_macro_does_not_swallow_the_next_function() -> None:
    # `for_each_possible_cpu(i) stmt;` is no C tree-sitter knows; kernel/sched/core.c has it.
    check(
        """\
unsigned long long nr_context_switches(void)
{
	int i;
	unsigned long long sum = 0;

	for_each_possible_cpu(i)
		sum += cpu_rq(i)->nr_switches;

	return sum;
}

unsigned int nr_iowait_cpu(int cpu)
{
	return 0;
}
""",
        [
            ("nr_context_switches", 1, 10, 1, False, False, (), ()),
            ("nr_iowait_cpu", 12, 15, 12, False, False, (), ()),
        ],
    )


def test_functions_under_ifdef_are_all_listed() -> None:
    check(
        "#ifdef CONFIG_X\nstatic void f(void) {}\n#else\nstatic void f(void) { }\n#endif\n",
        [
            ("f", 2, 2, 2, True, False, (), ()),
            ("f", 4, 4, 4, True, False, (), ()),
        ],
    )


@pytest.mark.parametrize(
    ("src", "name", "macro", "binary_names"),
    [
        (
            "SYSCALL_DEFINE3(open, const char __user *, filename, int, flags,\n"
            "\t\tumode_t, mode)\n{\n\treturn 0;\n}\n",
            "open",
            "SYSCALL_DEFINE3",
            ("__do_sys_open", "__se_sys_open", "__x64_sys_open", "__ia32_sys_open",
             "__arm64_sys_open"),
        ),
        (
            "SYSCALL_DEFINE0(fork)\n{\n\treturn 0;\n}\n",
            "fork",
            "SYSCALL_DEFINE0",
            ("__do_sys_fork", "__x64_sys_fork", "__ia32_sys_fork", "__arm64_sys_fork"),
        ),
        (
            "COMPAT_SYSCALL_DEFINE3(ioctl, unsigned int, fd, unsigned int, cmd,\n"
            "\t\t       compat_ulong_t, arg)\n{\n\treturn 0;\n}\n",
            "ioctl",
            "COMPAT_SYSCALL_DEFINE3",
            ("__do_compat_sys_ioctl", "__se_compat_sys_ioctl", "__ia32_compat_sys_ioctl",
             "__x64_compat_sys_ioctl", "__arm64_compat_sys_ioctl"),
        ),
    ],
)  # fmt: skip
def test_syscall_macros(src: str, name: str, macro: str, binary_names: tuple[str, ...]) -> None:
    (f,) = parse_source(src).functions
    assert (f.name, f.macro, f.binary_names, f.start_line, f.name_line) == (
        name,
        macro,
        binary_names,
        1,
        1,
    )
    assert f.end_line == src.count("\n")


def test_data_macros_and_registrations() -> None:
    sm = parse_source(
        """\
#define FOO(x) \\
	do { x; } while (0)
#define BAR 1
struct s {
	int a;
};
enum e { A, B };
typedef struct { int q; } t_t;
static int g = 3, h;
extern int ext;
int proto(void);
static const struct file_operations fops = {
	.open = 0,
};
static int __init setup_x(char *s) { return 1; }
__setup("x=", setup_x);
early_param("y", setup_x);
module_init(setup_x);
EXPORT_SYMBOL_GPL(g);
"""
    )
    assert [(m.name, m.start_line, m.end_line, m.params) for m in sm.macros] == [
        ("FOO", 1, 2, ("x",)),
        ("BAR", 3, 3, None),
    ]
    assert [(d.name, d.kind, d.start_line, d.end_line, d.is_static) for d in sm.data] == [
        ("s", "struct", 4, 6, False),
        ("e", "enum", 7, 7, False),
        ("t_t", "typedef", 8, 8, False),
        ("g", "variable", 9, 9, True),
        ("h", "variable", 9, 9, True),
        ("fops", "variable", 12, 14, True),
    ]
    assert [(r.macro, r.function, r.line) for r in sm.registrations] == [
        ("__setup", "setup_x", 16),
        ("early_param", "setup_x", 17),
        ("module_init", "setup_x", 18),
        ("EXPORT_SYMBOL_GPL", "g", 19),
    ]
    assert sm.find_function(15) is not None
    assert sm.find_function(16) is None
    assert [f.is_init for f in sm.iter_functions("setup_x")] == [True]


def test_code_tokens_drop_comments_and_white_space() -> None:
    a = "int f(void) /* one */\n{\n\treturn  1; // two\n}\n"
    b = "int f(void)\n{\n\t/* a new\n\t * comment */\n\treturn 1;\n}\n"
    assert code_tokens(a) == code_tokens(b)
    assert code_tokens('x = "/* not a comment */";') == ("x", "=", '"/* not a comment */"', ";")
    assert code_tokens("a->b++ <<= 2") == ("a", "->", "b", "++", "<<=", "2")
    assert code_tokens("return 1;") != code_tokens("return 2;")


# --- the real tree -------------------------------------------------------------------------

_BODY_AFTER_HEADER = re.compile(r"\)\s*(__\w+(\([^)]*\))?\s*)*$")


@corpus
@pytest.mark.corpus
def test_corpus_matches_the_kernel_style_baseline() -> None:
    """Every `{` in column 0 after a line ending in `)` opens a function body (coding-style.rst)."""
    assert CORPUS is not None
    src = Path(CORPUS) / "src"
    files = [
        *sorted(src.glob("fs/xfs/*.c")),
        src / "kernel/sched/core.c",
        src / "mm/page_alloc.c",
        src / "lib/bitmap.c",
        src / "fs/namei.c",
        src / "kernel/fork.c",
        src / "fs/quota/dquot.c",
    ]
    parser = SourceParser()
    baseline = found = 0
    for f in files:
        text = f.read_text(errors="surrogateescape")
        lines = text.split("\n")
        want = {
            i + 1
            for i, line in enumerate(lines)
            if line.startswith("{") and i and _BODY_AFTER_HEADER.search(lines[i - 1])
        }
        got = {fn.body_line for fn in parser.parse(text).functions}
        baseline += len(want)
        found += len(want & got)
    # Measured: 2,573 of 2,573 in these 73 files (and 17,817 of 17,831 over fs, kernel, mm,
    # lib, net/ipv4 and drivers/block; the misses are BPF_CALL_n and #ifdef'd headers).
    assert baseline > 2500
    assert found == baseline


@corpus
@pytest.mark.corpus
def test_corpus_known_functions() -> None:
    assert CORPUS is not None
    src = Path(CORPUS) / "src"
    sm = parse_source((src / "kernel/sched/core.c").read_text())
    (enqueue,) = sm.iter_functions("enqueue_task")
    assert (enqueue.start_line, enqueue.end_line, enqueue.is_inline) == (2060, 2075, True)
    (yield_,) = sm.iter_functions("sched_yield")
    assert yield_.macro == "SYSCALL_DEFINE0"
    schedule = next(sm.iter_functions("__schedule"))
    assert schedule.attributes == ("__sched", "notrace")
    fork = parse_source((src / "kernel/fork.c").read_text())
    (caches,) = fork.iter_functions("proc_caches_init")
    assert caches.is_init and caches.attributes == ("__init",)
