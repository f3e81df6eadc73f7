"""`klp-lsp generate` on the fixture kernel: source, build against the fixture's headers, klp
relocations, verify; and the source generator on small C texts.

The fixture's "headers" are the fixture tree itself with its miniature kbuild
(tests/fixtures/kernel/Makefile): `make -C tests/fixtures/kernel M=OUTDIR modules` compiles with
the flags build.sh records in build/<arch>/kbuild.flags and links with scripts/module.lds, as
kbuild does for an external module against a linux-headers tree.

Facts checked by hand on the x86-64 module of tests/fixtures/patches/generate.patch
(`readelf -SW`, `readelf -sW`, `readelf -rW`, `objdump -d`):
- sections `.klp.rela.vmlinux..text` and `.klp.rela.demo..text`, type RELA, flags `AIo`
  (SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH), linked to `.symtab`, info = `.text`;
- symbols `.klp.sym.vmlinux.demo_hash,1` (kernel/demo_core.c's static, sympos 1 in vmlinux),
  `.klp.sym.demo.demo_hash,2` (drivers/demo/demo_util.c's, sympos 2 in demo.ko),
  `.klp.sym.demo.demo_hash,1` (demo_main.c's) and `.klp.sym.demo.demo_mod_seed,0` (a static
  variable), all NOTYPE GLOBAL with Ndx `OS [0xff20]`;
- no OBJECT symbol `demo_mod_seed`, `demo_core_stats` or `demo_irq_stats` in the module: the
  kernel's variables are referenced, never copied;
- `demo_lookup` (exported in the fixture's Module.symvers) stays an ordinary undefined symbol;
- `objdump -d`: livepatch_demo_lookup clamps with `mov $0x40,%r13d; cmp; cmovle` (the patch's
  `if (key > 64) key = 64;`), livepatch_demo_submit compares with `$0x2000` (the inlined
  demo_account's new threshold, 8192).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, FIXTURES, fixture_binary

from klp_lsp.generate.unit import Placed, Wanted, generate_unit
from klp_lsp.patch.c_items import split_items

PATCHES = FIXTURES / "patches"
SOURCE = FIXTURES / "kernel"
CROSS = {"x86_64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}


def run_generate(
    arch: str, out: Path, index_dir: Path, patch: str, *extra: str
) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [
            sys.executable, "-m", "klp_lsp", "generate", str(PATCHES / patch),
            "--binary", str(fixture_binary(arch)), "--binary", str(fixture_binary(arch, "demo.ko")),
            "--source", str(SOURCE), "--index-dir", str(index_dir), "-o", str(out),
            "--headers", str(SOURCE), "--format", "json", *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def readelf(*args: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *args], capture_output=True, text=True, check=True
    ).stdout


def needs_compiler(arch: str) -> None:
    if shutil.which(CROSS[arch]) is None or shutil.which("make") is None:
        pytest.skip(f"{CROSS[arch]} or make is not installed")


@pytest.mark.parametrize("arch", ARCHES)
def test_fixture_patch_generates_builds_converts_and_verifies(
    arch: str, tmp_path: Path, fixture_index_dir: Path
) -> None:
    needs_compiler(arch)
    out = tmp_path / "lp"
    code, doc = run_generate(arch, out, fixture_index_dir, "generate.patch", "--build")
    assert code == 0, doc["problems"]
    assert doc["problems"] == []
    stub = "__x64_sys_" if arch == "x86_64" else "__arm64_sys_"
    got = {(f["object"], f["old_name"], f["old_sympos"], f["new_func"]) for f in doc["functions"]}
    expected = {
        ("vmlinux", "demo_submit", 0, "livepatch_demo_submit"),
        ("vmlinux", "demo_complete", 0, "livepatch_demo_complete"),
        ("vmlinux", "demo_reset", 0, "livepatch_demo_reset"),
        ("vmlinux", "demo_lookup", 0, "livepatch_demo_lookup"),
        ("vmlinux", f"{stub}demo_ctl", 0, f"{stub}livepatch_demo_ctl"),
        ("demo", "demo_mod_probe", 0, "livepatch_demo_mod_probe"),
        ("demo", "demo_util_count", 0, "livepatch_demo_util_count"),
    }
    if arch == "x86_64":
        expected.add(("vmlinux", "__ia32_sys_demo_ctl", 0, "__ia32_sys_livepatch_demo_ctl"))
    assert got == expected
    # The .part clone has GCC's own convention: its callers are replaced instead.
    assert [(e["symbol"], e["object"]) for e in doc["not_replaced"]] == [
        ("demo_lookup.part.0", "vmlinux")
    ]
    ko = Path(doc["module"])
    assert ko == out / "livepatch_generate.ko"
    sections = readelf("-S", str(ko))
    for name in (".klp.rela.vmlinux..text", ".klp.rela.demo..text"):
        line = next(x for x in sections.splitlines() if name in x)
        assert " RELA " in line and " AIo " in line
    symbols = readelf("-s", str(ko))
    klp = {x.split()[-1] for x in symbols.splitlines() if "[0xff20]" in x}
    assert {
        ".klp.sym.vmlinux.demo_hash,1",
        ".klp.sym.demo.demo_hash,2",
        ".klp.sym.demo.demo_hash,1",
        ".klp.sym.demo.demo_mod_seed,0",
        ".klp.sym.vmlinux.demo_core_stats,0",
        ".klp.sym.vmlinux.demo_irq_stats,0",
    } <= klp
    defined_objects = {
        x.split()[-1] for x in symbols.splitlines() if " OBJECT " in x and " UND " not in x
    }
    assert not {"demo_mod_seed", "demo_core_stats", "demo_irq_stats"} & defined_objects
    undefined = {x.split()[-1] for x in symbols.splitlines() if " UND " in x}
    assert "demo_lookup" in undefined  # exported: left to the module loader
    assert doc["verify"]["summary"]["errors"] == 0
    assert [f["function"] for f in doc["verify"]["findings"]] == ["demo_lookup.part.0"]


def test_fixture_module_runs_the_new_code(tmp_path: Path, fixture_index_dir: Path) -> None:
    """The replacement functions hold the patched code (x86-64 disassembly)."""
    needs_compiler("x86_64")
    code, doc = run_generate(
        "x86_64", tmp_path / "lp", fixture_index_dir, "generate.patch", "--build"
    )
    assert code == 0
    dump = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", doc["module"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def body(name: str) -> str:
        return dump.split(f"<{name}>:\n", 1)[1].split("\n\n", 1)[0]

    assert "$0x40," in body("livepatch_demo_lookup")
    assert "cmp    $0x2000," in body("livepatch_demo_submit")


def test_unpatchable_change_is_an_error(tmp_path: Path, fixture_index_dir: Path) -> None:
    """demo.patch changes lib/demo_lib.c, built without ftrace: no module can deliver it."""
    out = tmp_path / "lp"
    code, doc = run_generate("x86_64", out, fixture_index_dir, "demo.patch", "--build")
    assert code == 1
    errors = [(p["kind"], p["function"]) for p in doc["problems"] if p["severity"] == "error"]
    assert errors == [("cannot-generate", "demo_lib_step"), ("cannot-generate", "demo_lib_sum")]
    assert doc["module"] is None and doc["build"] is None
    assert (out / "livepatch.c").is_file()  # the source is still written


def test_generate_without_build_writes_the_sources(tmp_path: Path, fixture_index_dir: Path) -> None:
    out = tmp_path / "lp"
    code, doc = run_generate("x86_64", out, fixture_index_dir, "generate.patch")
    assert code == 0 and doc["module"] is None and doc["verify"] is None
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "Kbuild",
        "Makefile",
        "demo__drivers_demo_demo_main.c",
        "demo__drivers_demo_demo_util.c",
        "livepatch.c",
        "vmlinux__kernel_demo_core.c",
    ]
    kbuild = (out / "Kbuild").read_text()
    assert "obj-m := livepatch_generate.o" in kbuild
    main = (out / "livepatch.c").read_text()
    assert '.name = "demo",' in main and "klp_enable_patch(&patch)" in main
    assert 'MODULE_INFO(livepatch, "Y");' in main


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "klp_lsp",
            "generate",
            str(PATCHES / "generate.patch"),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--source" in done.stderr


# --- the generator on small texts -------------------------------------------------------------


class Symbols:
    """A SymbolView: which statics the kernel object has out of line, and data sizes."""

    def __init__(self, functions: set[str], data: dict[str, int]) -> None:
        self.functions, self.data = functions, data

    def callable(self, name: str) -> bool:
        return name in self.functions

    def has_data(self, name: str) -> bool:
        return name in self.data

    def data_size(self, name: str) -> int | None:
        return self.data.get(name)


def gen(
    text: str,
    wanted: list[str],
    functions: set[str] = frozenset(),
    data: dict[str, int] | None = None,
    **kw: object,
):  # type: ignore[no-untyped-def]
    placed = [Placed(i, "x.c", text) for i in split_items(text)]
    return generate_unit(
        placed,
        [Wanted(n, f"livepatch_{n}") for n in wanted],
        Symbols(set(functions), data or {}),
        label_prefix="klp_lsp__u__",
        **kw,  # type: ignore[arg-type]
    )


SRC = """\
#include <linux/kernel.h>
#define CREATE_TRACE_POINTS
#include <trace/events/x.h>
#define LIMIT 4
struct item { int v; };
static DEFINE_MUTEX(lock);
static DEFINE_PER_CPU(int, hits);
static int count;
static const int table[] = { 1, 2, 3 };
static const int folded = 7;
static int *names[] = { &count };
EXPORT_SYMBOL(update);

static inline int twice(int x)
{
	return 2 * x + folded;
}

static int helper(int x)
{
	return x + folded;
}

static int inlined_helper(int x)
{
	static int calls;
	calls++;
	return x - 1;
}

int update(struct item *it)
{
	mutex_lock(&lock);
	it->v = twice(helper(count)) + inlined_helper(table[0]) + ARRAY_SIZE(names) + LIMIT;
	this_cpu_inc(hits);
	mutex_unlock(&lock);
	return update == 0;
}

int other(void)
{
	return update(0);
}
"""


def test_unit_closure() -> None:
    u = gen(
        SRC, ["update", "other"], functions={"helper"}, data={"count": 4, "table": 12, "names": 8}
    )
    text = u.text
    # Kernel state is declared, never defined.
    assert 'extern struct mutex lock __asm__("klp_lsp__u__lock");' in text
    assert 'DECLARE_PER_CPU(int, hits) __asm__("klp_lsp__u__hits");' in text
    assert 'extern int count __asm__("klp_lsp__u__count");' in text
    assert 'extern const int table[] __asm__("klp_lsp__u__table");' in text
    assert 'extern int *names[8 / sizeof(names[0])] __asm__("klp_lsp__u__names");' in text
    # A constant GCC folded (no symbol) is copied; a static with a symbol is called.
    assert "static const int folded = 7;" in text
    assert 'int helper(int x) __asm__("klp_lsp__u__helper");' in text
    # Helpers the kernel has no callable copy of are compiled in; their static locals are the
    # kernel's.
    assert "static inline int twice(int x)" in text and "static int inlined_helper(int x)" in text
    assert 'extern int calls __asm__("klp_lsp__u__local__inlined_helper__calls");' in text
    # The replacements: renamed, global; calls between them go to the new code, but the
    # address of `update` stays the kernel's.
    assert "int livepatch_update(struct item *it)" in text
    assert "return livepatch_update(0);" in text
    assert "return update == 0;" in text
    assert 'int update(struct item *it) __asm__("klp_lsp__u__update");' not in text
    assert "int update(struct item *it);" in text
    # Definitions of things the module must not repeat are gone.
    lines = text.splitlines()
    assert not any(x.startswith(("EXPORT_SYMBOL", "#define CREATE_TRACE_POINTS")) for x in lines)
    assert "#define LIMIT 4" in text and "struct item { int v; };" in text
    kinds = {(e.symbol, e.kind, e.local) for e in u.externs}
    assert {
        ("lock", "variable", True),
        ("hits", "per-cpu", True),
        ("count", "variable", True),
        ("helper", "function", True),
        ("calls", "static-local", True),
        ("update", "function", False),
    } <= kinds
    assert [p.kind for p in u.problems] == ["per-cpu"]
    assert u.copied == ("twice", "inlined_helper")


def test_new_static_local_is_an_error() -> None:
    u = gen(SRC, ["update"], functions={"helper"}, new_static_locals={"inlined_helper": ("calls",)})
    errors = [(p.kind, p.function) for p in u.problems if p.severity == "error"]
    assert errors == [("static-local", "inlined_helper")]


def test_syscall_definition_is_renamed() -> None:
    text = "SYSCALL_DEFINE2(demo_ctl, int, op, long, arg)\n{\n\treturn op + arg;\n}\n"
    u = gen(text, ["demo_ctl"])
    assert "SYSCALL_DEFINE2(livepatch_demo_ctl, int, op, long, arg)" in u.text
    assert "#undef SYSCALL_METADATA" in u.text
    assert [(f.name, f.new_name, f.macro) for f in u.functions] == [
        ("demo_ctl", "livepatch_demo_ctl", "SYSCALL_DEFINE2")
    ]


def test_missing_function_is_reported() -> None:
    u = gen("int f(void)\n{\n\treturn 0;\n}\n", ["g"])
    assert [(p.severity, p.kind, p.function) for p in u.problems] == [
        ("error", "cannot-generate", "g")
    ]
