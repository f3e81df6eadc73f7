"""`check --compile` end to end on the fixture kernel, whose build.sh is the build tree.

Each `tests/fixtures/patches/compile-*.patch` shows one case the source mapping cannot see and
the compiler can (tests/fixtures/README.md, "check --compile"). Needs GCC 12.2.0 as `gcc`
(x86_64) and `aarch64-linux-gnu-gcc` (arm64), the compilers that built the fixtures; the tests
of an architecture skip without its compiler.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from klp_fixtures import ARCHES, FIXTURES, fixture_binary

from klp_lsp.analysis.producer import compiler_identity
from klp_lsp.cli import main

COMPILERS = {"x86_64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}
PATCHES = FIXTURES / "patches"
KERNEL = FIXTURES / "kernel"


def _compiler_ok(arch: str) -> bool:
    cc = shutil.which(COMPILERS[arch])
    if cc is None:
        return False
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    return compiler_identity(out.splitlines()[0] if out else "") == ("GCC", "12.2.0")


@dataclass(frozen=True)
class Tree:
    arch: str
    binary: Path
    index_dir: Path
    path: Path

    def check(self, patch: str, *extra: str) -> tuple[int, dict[str, Any]]:
        return run_json(
            "check", str(PATCHES / patch), "--binary", str(self.binary), "--index-dir",
            str(self.index_dir), "--compile", "--build-tree", str(self.path), "--jobs", "2",
            "--format", "json", *extra,
        )  # fmt: skip


_capsys: pytest.CaptureFixture[str] | None = None


def run_json(*argv: str) -> tuple[int, dict[str, Any]]:
    assert _capsys is not None
    _capsys.readouterr()
    code = main(list(argv))
    return code, json.loads(_capsys.readouterr().out)


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    global _capsys
    _capsys = capsys
    yield
    _capsys = None


@pytest.fixture(scope="module", params=ARCHES)
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    arch = request.param
    if not _compiler_ok(arch):
        pytest.skip(f"{COMPILERS[arch]} 12.2.0 (the fixtures' compiler) is not installed")
    base = tmp_path_factory.mktemp(f"compile-{arch}")
    binary = fixture_binary(arch)
    code = main(
        [
            "prepare-build", "--source", str(KERNEL), "--script", str(FIXTURES / "build.sh"),
            "-o", str(base / "tree"), "--binary", str(binary), "--index-dir", str(base / "idx"),
        ]
    )  # fmt: skip
    assert code == 0
    return Tree(arch, binary, base / "idx", base / "tree")


def functions(doc: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["kind"] for o in doc["compile"]["objects"] for f in o["functions"]}


def findings(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {f["function"]: f for f in doc["findings"] if f["kind"] == kind}


def evidence(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["evidence"] for c in doc["changed_functions"]}


def test_prepared_tree_records_compiler_and_reproduces(tree: Tree) -> None:
    manifest = json.loads((tree.path / "klp-build-tree.json").read_text())
    assert manifest["kind"] == "script"
    assert manifest["compiler"] == ["GCC", "12.2.0"]
    assert manifest["cc"] == COMPILERS[tree.arch]
    repro = manifest["reproducibility"]
    assert repro["cu"] == "kernel/demo_core.c"
    assert repro["functions"] == repro["matching"] > 0 and repro["differences"] == []


def test_constant_seen_only_by_the_compiler(tree: Tree) -> None:
    _, doc = tree.check("compile-constant.patch")
    assert [o["object"] for o in doc["compile"]["objects"]] == ["kernel/demo_policy.o"]
    assert functions(doc) == {"demo_rt_budget": "changed"}
    assert evidence(doc) == {"demo_rt_budget": "compiler"}
    only = findings(doc, "compiler-only-change")["demo_rt_budget"]
    assert only["severity"] == "warning"
    assert "it uses the changed variable demo_rt_quota" in only["message"]
    # The prediction: a data change, no function to replace.
    assert findings(doc, "data-change") and doc["replace"] == []
    (preview,) = findings(doc, "kpatch-preview").values()
    assert "not predicted: demo_rt_budget" in preview["message"]


def test_macro_used_through_another_macro(tree: Tree) -> None:
    _, doc = tree.check("compile-macro.patch")
    assert functions(doc) == {"demo_rt_scaled": "changed"}
    only = findings(doc, "compiler-only-change")["demo_rt_scaled"]
    assert "expands the changed macro DEMO_RT_SHIFT (through DEMO_RT_SCALE)" in only["message"]


def test_inlining_flips(tree: Tree) -> None:
    _, doc = tree.check("compile-inline.patch")
    (obj,) = doc["compile"]["objects"]
    assert functions(doc) == {
        "demo_rt_balance": "changed",
        "demo_rt_schedule": "changed",
        "demo_rt_pick": "added",
    }
    assert obj["inlining"] == [
        {"callee": "demo_rt_pick", "caller": "demo_rt_schedule", "inlined_after": False}
    ]
    assert evidence(doc) == {"demo_rt_balance": "both", "demo_rt_schedule": "compiler"}
    only = findings(doc, "compiler-only-change")["demo_rt_schedule"]
    assert only["severity"] == "information"
    assert "GCC no longer inlines demo_rt_pick into it" in only["message"]
    preview = doc["compile"]["kpatch_preview"]
    assert [(p["symbol"], p["kind"], p["predicted"]) for p in preview] == [
        ("demo_rt_balance", "changed", True),
        ("demo_rt_schedule", "changed", False),
        ("demo_rt_pick", "added", False),
    ]


def test_new_clone(tree: Tree) -> None:
    _, doc = tree.check("compile-clone.patch")
    (obj,) = doc["compile"]["objects"]
    assert obj["clones"] == [
        {
            "origin": "demo_rt_charge",
            "before": ["demo_rt_charge"],
            "after": ["demo_rt_charge.isra.0"],
            "message": "demo_rt_charge became demo_rt_charge.isra.0",
        }
    ]
    by_name = {f["name"]: f for f in obj["functions"]}
    assert by_name["demo_rt_charge.isra.0"]["old_name"] == "demo_rt_charge"
    assert by_name["demo_rt_tick"]["renamed_calls"] == [["demo_rt_charge", "demo_rt_charge.isra.0"]]
    assert evidence(doc) == {"demo_rt_charge": "both", "demo_rt_tick": "compiler"}
    only = findings(doc, "compiler-only-change")["demo_rt_tick"]
    assert "calls demo_rt_charge.isra.0 instead of demo_rt_charge" in only["message"]


def test_line_number_only_shift(tree: Tree) -> None:
    _, doc = tree.check("compile-line.patch")
    (obj,) = doc["compile"]["objects"]
    by_name = {f["name"]: f for f in obj["functions"]}
    assert by_name["demo_rt_wait"]["kind"] == "line-only"
    assert by_name["demo_rt_wait"]["line_shifts"] == [[28, 29]]
    assert by_name["demo_rt_init"]["kind"] == "changed"
    # Reported apart: not a changed function, not in the preview.
    assert evidence(doc) == {"demo_rt_init": "both"}
    assert findings(doc, "compiler-only-change") == {}
    assert [p["symbol"] for p in doc["compile"]["kpatch_preview"]] == ["demo_rt_init"]
    (preview,) = findings(doc, "kpatch-preview").values()
    assert "left out, __LINE__ only: demo_rt_wait" in preview["message"]


def test_header_maps_to_every_cu_including_it(tree: Tree) -> None:
    _, doc = tree.check("compile-header.patch")
    compiled = [o["object"] for o in doc["compile"]["objects"]]
    assert sorted(compiled) == ["kernel/demo_core.o", "kernel/demo_sched.o", "lib/demo_lib.o"]
    # Every function the prediction replaces for inlining demo_mix32 changes, and no other.
    predicted = {e["symbol"] for e in doc["replace"]}
    changed = {f["name"] for o in doc["compile"]["objects"] for f in o["functions"]}
    assert changed == predicted == {"demo_hash", "demo_op", "demo_arch_setup", "demo_lib_mix"}
    assert findings(doc, "compiler-only-change") == {}
    assert set(evidence(doc).values()) == {"both"}
    _, limited = tree.check("compile-header.patch", "--compile-limit", "2")
    assert len(limited["compile"]["objects"]) == 2
    assert len(limited["compile"]["not_compiled"]) == 1


def test_results_are_cached_and_the_source_is_untouched(tree: Tree) -> None:
    before = {p: p.stat().st_mtime_ns for p in KERNEL.rglob("*") if p.is_file()}
    _, first = tree.check("compile-macro.patch", "--compile-limit", "16")
    _, again = tree.check("compile-macro.patch")
    assert again["compile"]["cached"] == ["kernel/demo_policy.o"]
    assert again["compile"]["objects"] == first["compile"]["objects"]
    after = {p: p.stat().st_mtime_ns for p in KERNEL.rglob("*") if p.is_file()}
    assert after == before
    assert not list((tree.path / ".klp-lsp").glob("check-*"))  # no overlay left behind


def test_a_patch_that_does_not_compile(tree: Tree, tmp_path: Path) -> None:
    broken = tmp_path / "broken.patch"
    text = (PATCHES / "compile-constant.patch").read_text()
    broken.write_text(text.replace("= 900;", "= 900"))
    _, doc = run_json(
        "check", str(broken), "--binary", str(tree.binary), "--index-dir", str(tree.index_dir),
        "--compile", "--build-tree", str(tree.path), "--format", "json",
    )  # fmt: skip
    (failure,) = doc["compile"]["failures"]
    assert failure["object"] == "kernel/demo_policy.o"
    assert "kernel/demo_rt.c" in failure["message"] and "error" in failure["message"]
    assert any("does not compile" in p["message"] for p in doc["problems"])


def test_refusals(tree: Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patch = str(PATCHES / "compile-macro.patch")
    base = ["check", patch, "--binary", str(tree.binary), "--index-dir", str(tree.index_dir)]
    capsys.readouterr()
    assert main([*base, "--compile"]) == 2
    assert "--compile needs --build-tree DIR" in capsys.readouterr().err
    assert main([*base, "--compile", "--build-tree", str(tmp_path)]) == 2
    assert "not a prepared build tree" in capsys.readouterr().err
    other = "arm64" if tree.arch == "x86_64" else "x86_64"
    code = main(
        [
            "check", patch, "--binary", str(fixture_binary(other)), "--index-dir",
            str(tmp_path / "idx"), "--compile", "--build-tree", str(tree.path),
        ]
    )  # fmt: skip
    assert code == 2
    assert "was prepared for build-id" in capsys.readouterr().err


def test_prepare_refuses_another_compiler_version(tree: Tree, tmp_path: Path) -> None:
    fake = tmp_path / "gcc-13"
    fake.write_text("#!/bin/sh\necho 'gcc-13 (Debian 13.2.0-25) 13.2.0'\n")
    fake.chmod(0o755)
    assert _capsys is not None
    _capsys.readouterr()
    code = main(
        [
            "prepare-build", "--source", str(KERNEL), "--script", str(FIXTURES / "build.sh"),
            "-o", str(tmp_path / "t"), "--binary", str(tree.binary), "--index-dir",
            str(tree.index_dir), "--cc", str(fake),
        ]
    )  # fmt: skip
    err = _capsys.readouterr().err
    assert code == 2
    assert "is GCC 13.2.0" in err
    assert "was built by GCC 12.2.0 (DW_AT_producer: GNU C11 12.2.0)" in err
    assert "inlines, clones and lays out code differently" in err
    assert not (tmp_path / "t").exists()
