"""The build layer's pieces that need no compiler: overlays, kbuild command files, manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from klp_lsp.analysis.producer import compiler_identity
from klp_lsp.build.backend import commands_from_dry_run, patched_command, read_saved_command
from klp_lsp.build.cache import ObjectResult, ResultCache, result_key
from klp_lsp.build.overlay import Overlay
from klp_lsp.build.tree import BuildTree, compare_symbols, config_changes, object_of_cu
from klp_lsp.errors import BuildError, UsageError
from klp_lsp.model import CloneChange, FunctionDiff, InliningFlip, ObjectDiff


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "kernel" / "sched").mkdir(parents=True)
    (src / "include" / "linux").mkdir(parents=True)
    (src / "kernel" / "sched" / "build_policy.c").write_text('#include "rt.c"\n')
    (src / "kernel" / "sched" / "rt.c").write_text("int rt;\n")
    (src / "kernel" / "fork.c").write_text("int fork;\n")
    (src / "include" / "linux" / "list.h").write_text("/* list */\n")
    (src / "Makefile").write_text("all:\n")
    return src


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overlay_replaces_only_the_patched_files(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    before = snapshot(src)
    files: dict[str, str | None] = {"kernel/sched/rt.c": "int rt = 1;\n", "kernel/new.c": "n"}
    files["kernel/fork.c"] = None
    with Overlay(src, tmp_path / "ov", files) as ov:
        root = ov.root
        assert (root / "kernel" / "sched" / "rt.c").read_text() == "int rt = 1;\n"
        assert not (root / "kernel" / "sched" / "rt.c").is_symlink()
        # Its neighbour, reached through the overlay's real directory, is the original.
        assert (root / "kernel" / "sched" / "build_policy.c").is_symlink()
        assert (root / "kernel" / "sched" / "build_policy.c").read_text() == '#include "rt.c"\n'
        assert (root / "kernel" / "new.c").read_text() == "n"
        assert not os.path.lexists(root / "kernel" / "fork.c")
        # Untouched directories are one symlink each.
        assert (root / "include").is_symlink() and (root / "Makefile").is_symlink()
        assert (root / "include" / "linux" / "list.h").read_text() == "/* list */\n"
    assert not root.exists()
    assert snapshot(src) == before  # the source tree was never written


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "kernel/../../x", "kernel/..", ""]
)
def test_overlay_refuses_paths_outside_the_tree(tmp_path: Path, path: str) -> None:
    src = make_source(tmp_path)
    with pytest.raises(UsageError, match="not a path inside the source tree"):
        Overlay(src, tmp_path / "ov", {path: "x"})
    assert not (tmp_path / "ov").exists()


CMD = (
    "cmd_kernel/sched/build_policy.o := gcc-12 -Wp,-MMD,kernel/sched/.build_policy.o.d"
    " -nostdinc -I/src/arch/x86/include -I./arch/x86/include/generated -I/src/include"
    " -include /src/include/linux/kconfig.h -fmacro-prefix-map=/src/= -DKBUILD_MODNAME="
    "'\"build_policy\"' -DFOO='$$(pound)x' -c -o kernel/sched/build_policy.o"
    " /src/kernel/sched/build_policy.c  ; ./tools/objtool/objtool --orc --retpoline"
    "   kernel/sched/build_policy.o\n\nsource_kernel/sched/build_policy.o := /src/x.c\n"
)


def test_saved_command_and_its_patched_form(tmp_path: Path) -> None:
    (tmp_path / "kernel" / "sched").mkdir(parents=True)
    (tmp_path / "kernel" / "sched" / ".build_policy.o.cmd").write_text(CMD)
    cmd = read_saved_command(tmp_path, "kernel/sched/build_policy.o")
    # scripts/Kbuild.include make-cmd: `$$` is `$`, `$(pound)` is `#`.
    assert "-DFOO='$#x'" in cmd
    out = Path("/scratch/out/kernel/sched/build_policy.o")
    patched = patched_command(cmd, Path("/src"), Path("/ov"), "kernel/sched/build_policy.o", out)
    assert patched.startswith("gcc-12 -fdebug-prefix-map=/ov=/src -Wp,-MMD,")
    assert "-MMD,/scratch/out/kernel/sched/.build_policy.o.d" in patched
    assert "-I/ov/arch/x86/include -I./arch/x86/include/generated -I/ov/include" in patched
    assert "-include /ov/include/linux/kconfig.h -fmacro-prefix-map=/ov/=" in patched
    assert f"-c -o {out} /ov/kernel/sched/build_policy.c" in patched
    assert patched.rstrip().endswith(f"--retpoline   {out}")
    assert "/src/" not in patched.replace("=/src ", "")


def test_saved_command_missing_or_foreign(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"kbuild left no command for kernel/fork\.o"):
        read_saved_command(tmp_path, "kernel/fork.o")
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / ".fork.o.cmd").write_text("garbage\n")
    with pytest.raises(BuildError, match="not a kbuild command file"):
        read_saved_command(tmp_path, "kernel/fork.o")


@pytest.mark.parametrize(
    ("cu", "obj"),
    [
        ("kernel/fork.c", "kernel/fork.o"),
        ("fs/ext4/ext4.mod.c", None),
        ("arch/x86/entry/entry_64.S", None),
        ("/build/x.c", None),
    ],
)
def test_object_of_cu(cu: str, obj: str | None) -> None:
    assert object_of_cu(cu) == obj


def test_compare_symbols() -> None:
    indexed = [("a", 10), ("b", 20), ("c", 5), ("c", 6)]
    compiled = [("a", 10), ("b", 24), ("c", 6), ("c", 5), ("weak_stub", 3)]
    assert compare_symbols(indexed, compiled) == (4, 3, ["b: 20 bytes in the index, 24 compiled"])
    assert compare_symbols([("gone", 1)], []) == (1, 0, ["gone: not in the compiled object"])


def test_config_changes_ignore_the_toolchain() -> None:
    before = 'CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"\nCONFIG_A=y\nCONFIG_B=m\n'
    after = 'CONFIG_CC_VERSION_TEXT="gcc (GCC) 12.2.0"\nCONFIG_A=y\n# CONFIG_B is not set\n'
    assert config_changes(before, after) == ["CONFIG_B: m -> n"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GNU C11 12.2.0 -mno-sse -O2", ("GCC", "12.2.0")),
        ("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", ("GCC", "12.2.0")),
        ("aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0", ("GCC", "12.2.0")),
        ("GNU C17 13.2.1 20230801 -mtune=generic", ("GCC", "13.2.1")),
        ("Debian clang version 14.0.6", ("clang", "14.0.6")),
        ("GNU AS 2.40", None),
        ("rustc version 1.62.0", None),
    ],
)
def test_compiler_identity(text: str, expected: tuple[str, str] | None) -> None:
    assert compiler_identity(text) == expected


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a prepared build tree"):
        BuildTree.load(tmp_path)
    (tmp_path / "klp-build-tree.json").write_text("{")
    with pytest.raises(UsageError, match="unreadable"):
        BuildTree.load(tmp_path)
    (tmp_path / "klp-build-tree.json").write_text('{"version": 1, "kind": "kbuild"}')
    with pytest.raises(UsageError, match="malformed"):
        BuildTree.load(tmp_path)


def test_manifest_round_trip(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    tree = BuildTree(
        tmp_path, "kbuild", src, "x86_64", "gcc-12", ("GCC", "12.2.0"), "ab12", "vmlinux",
        make_arch="x86_64",
    )  # fmt: skip
    tree.save()
    assert BuildTree.load(tmp_path) == tree
    assert tree.make_command(2, "kernel/fork.o") == [
        "make", "-s", "-C", str(src), f"O={tmp_path}", "-j2", "ARCH=x86_64", "CC=gcc-12",
        "kernel/fork.o",
    ]  # fmt: skip


def test_result_cache_round_trip(tmp_path: Path) -> None:
    diff = ObjectDiff(
        "kernel/x.o",
        (
            FunctionDiff(
                "kernel/x.o", "f", "f", "calls-renamed", renamed_calls=(("g", "g.isra.0"),),
                line_shifts=((3, 4),), inlined=("h",),
            ),
        ),
        (CloneChange("g", ("g",), ("g.isra.0",), "g became g.isra.0"),),
        (InliningFlip("h", "f", True),),
        7,
        ("f", "g"),
    )  # fmt: skip
    from klp_lsp.analysis.reconcile import Cause

    images = {"kernel/x.c": ("a", "b")}
    key = result_key("kernel/x.o", images, "salt")
    assert key != result_key("kernel/x.o", {"kernel/x.c": ("a", "c")}, "salt")
    ResultCache(tmp_path).put(key, ObjectResult(diff, {"f": Cause("clone", "why")}))
    got = ResultCache(tmp_path).get(key)  # a new process reads the file
    assert got == ObjectResult(diff, {"f": Cause("clone", "why")})
    failed = ObjectResult(None, {}, "kernel/x.c:3:1: error: expected ';'")
    cache = ResultCache(tmp_path)
    cache.put("k2", failed)
    # A failure is remembered by this process only: the next one compiles again.
    assert cache.get("k2") == failed and ResultCache(tmp_path).get("k2") is None
    assert ResultCache(tmp_path).get("missing") is None


def test_commands_from_a_make_dry_run() -> None:
    """`make -n` prints kbuild's fixdep call with the command as a `.cmd` file holds it."""
    printed = (
        "set -e;  echo '  CC      kernel/fork.o'; gcc-12 -c -o kernel/fork.o /src/kernel/fork.c;"
        " scripts/basic/fixdep kernel/.fork.o.d kernel/fork.o 'gcc-12 -Wp,-MMD,kernel/.fork.o.d"
        " -DKBUILD_MODNAME='\\''\"fork\"'\\'' -DX=$$(pound) -c -o kernel/fork.o"
        " /src/kernel/fork.c' > kernel/.fork.o.cmd; rm -f kernel/.fork.o.d\n"
    )
    assert commands_from_dry_run(printed, ["kernel/fork.o", "kernel/exit.o"]) == {
        "kernel/fork.o": "gcc-12 -Wp,-MMD,kernel/.fork.o.d -DKBUILD_MODNAME='\"fork\"' -DX=$#"
        " -c -o kernel/fork.o /src/kernel/fork.c"
    }
