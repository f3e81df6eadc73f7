"""The `klp-lsp` command line as scripts use it: output shapes, exit status, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from klp_fixtures import fixture_binary


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args], capture_output=True, text=True, timeout=120
    )


def show(tmp_path: Path, name: str, binary: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("show", name, "--binary", str(binary), "--index-dir", str(tmp_path), *extra)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith("klp-lsp: ") and "\n" not in line, done.stderr
    for w in words:
        assert w in line


def test_show_json_contract(tmp_path: Path) -> None:
    done = show(tmp_path, "demo_lookup", fixture_binary("x86_64"), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["query"] == "demo_lookup"
    (m,) = doc["matches"]
    assert m["object"] == "vmlinux" and m["decl_file"] == "kernel/demo_core.c"
    assert m["build_id"] == "79ca733e43c5e0de6645aa764d528dc236aa568e"
    assert m["symbols"][0] == {
        "name": "demo_lookup",
        "address": "0xffffffff81000140",
        "size": 22,
        "section": ".text",
        "binding": "global",
        "sympos": 0,
        "has_mcount": True,
        "patchable": True,
    }
    assert [c["name"] for c in m["clones"]] == ["demo_lookup.part.0", "demo_lookup.part.0.cold"]
    assert m["clones"][0]["kinds"] == ["part"]
    assert m["patchable"] is True and m["out_of_line"] is True
    assert {i["function"] for i in m["inlined_into"]} == {"demo_submit", "demo_complete"}
    assert m["compiler"]["ipa_ra"] is False and m["compiler"]["ftrace"] == "fentry"
    assert m["signature"]["params"][0] == {"name": "req", "location": "rdi"}
    assert m["clobbers"] is not None and isinstance(m["register_dependents"], list)


def test_show_text_leads_with_the_verdict(tmp_path: Path) -> None:
    done = show(tmp_path, "demo_lib_step", fixture_binary("arm64"))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[1] == "  verdict: NOT patchable: its CU is built without ftrace flags"
    assert lines[2].startswith("  register dependents (1):")
    assert "demo_lib_sum at 0xffff800008000908" in lines[3]


def test_show_module_compressed(tmp_path: Path) -> None:
    for name in ("demo.ko.xz", "demo.ko.zst"):
        done = show(tmp_path, "demo_util_count", fixture_binary("x86_64", name), "--json")
        if name.endswith(".zst") and "zstandard" in done.stderr:
            pytest.skip("no zstd decompressor here")
        assert done.returncode == 0, done.stderr
        (m,) = json.loads(done.stdout)["matches"]
        assert m["object"] == "demo"


def test_not_found_exits_1(tmp_path: Path) -> None:
    done = show(tmp_path, "no_such_function", fixture_binary("x86_64"))
    assert done.returncode == 1
    assert "no_such_function" in done.stderr


def test_truncated_elf(tmp_path: Path) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(fixture_binary("x86_64").read_bytes()[:5000])
    assert_one_line_error(show(tmp_path, "x", bad), str(bad))


def test_not_elf(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    assert_one_line_error(show(tmp_path, "x", bad), str(bad))


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(show(tmp_path, "x", tmp_path / "missing"), "missing")


@pytest.mark.skipif(shutil.which("objcopy") is None, reason="objcopy (binutils) is not installed")
def test_no_dwarf_names_the_debug_package(tmp_path: Path) -> None:
    stripped = tmp_path / "vmlinux"
    subprocess.run(
        ["objcopy", "--strip-debug", str(fixture_binary("x86_64")), str(stripped)], check=True
    )
    done = show(tmp_path, "demo_lookup", stripped)
    assert_one_line_error(done, str(stripped), "debug")


def test_index_then_reindex_is_a_noop(tmp_path: Path) -> None:
    binary = str(fixture_binary("arm64"))
    first = run("index", binary, "--index-dir", str(tmp_path))
    assert first.returncode == 0 and "indexed in" in first.stdout
    again = run("index", binary, "--index-dir", str(tmp_path))
    assert again.returncode == 0 and "already indexed" in again.stdout
    assert len(list(tmp_path.glob("*.klpidx"))) == 1


def test_bad_usage_exits_2() -> None:
    done = run("show")
    assert done.returncode == 2 and "Traceback" not in done.stderr
