"""The check engine on patches against the fixture kernel: every finding kind and the replace set.

Expected values were checked by hand against tests/fixtures/README.md (symbols, clones, inline
sites, the IPA-RA call in lib/demo_lib.c) and the sources under tests/fixtures/kernel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from klp_fixtures import FIXTURES, ROOT, fixture_binary

from klp_lsp.index.query import IndexSet
from klp_lsp.model import CheckResult
from klp_lsp.patch.check import Checker
from klp_lsp.patch.render import render_skeleton, result_to_json
from klp_lsp.patch.sarif import result_to_sarif

SOURCE = FIXTURES / "kernel"
PATCHES = FIXTURES / "patches"


def check(indexes: IndexSet, *names: str, source: Path = SOURCE) -> CheckResult:
    patches = [(str(PATCHES / n), (PATCHES / n).read_text()) for n in names]
    return Checker(indexes).check_patches(patches, source)


def kinds_by_function(result: CheckResult) -> dict[str | None, set[str]]:
    out: dict[str | None, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.function, set()).add(f.kind)
    return out


def replace_set(result: CheckResult) -> set[tuple[str, str, int, bool]]:
    return {(e.object, e.symbol, e.sympos, e.patchable) for e in result.replace}


def test_demo_patch(indexes: IndexSet) -> None:
    result = check(indexes, "demo.patch")
    assert [c.name for c in result.changed_functions] == [
        "demo_account",
        "demo_lookup",
        "demo_lib_step",
    ]
    assert kinds_by_function(result) == {
        "demo_account": {"not-patchable", "inlined"},
        "demo_lookup": {"inlined", "has-clones"},
        "demo_lib_step": {"register-dependents", "not-patchable"},
    }
    assert replace_set(result) == {
        ("vmlinux", "demo_submit", 0, True),
        ("vmlinux", "demo_complete", 0, True),
        ("vmlinux", "demo_reset", 0, True),
        ("vmlinux", "demo_lookup", 0, True),
        ("vmlinux", "demo_lookup.part.0", 0, True),
        ("vmlinux", "demo_lib_step", 0, False),
        ("vmlinux", "demo_lib_sum", 0, False),
    }
    deps = next(f for f in result.findings if f.kind == "register-dependents")
    assert deps.severity == "error"
    assert [r.name for r in deps.related] == ["demo_lib_sum"]
    # Findings point at the patch line of the first change inside the function.
    lines = (PATCHES / "demo.patch").read_text().splitlines()
    assert lines[deps.patch_line - 1] == "-\treturn (x ^ (x >> 7)) + 0x9e37;"
    assert deps.source_file == "lib/demo_lib.c" and deps.source_line == 10
    assert result.has_errors


def test_pitfalls_series(arch: str, indexes: IndexSet) -> None:
    result = check(indexes, "pitfalls.mbox")
    kinds = kinds_by_function(result)
    assert kinds["demo_setup"] == {"init-code", "not-patchable"}
    assert kinds["demo_req_cost"] == {"has-clones", "signature-changed", "not-patchable"}
    assert kinds["demo_hash"] == {"ambiguous-sympos"}
    assert kinds["demo_mix32"] == {"header-change", "inlined", "not-patchable"}
    assert kinds["demo_fill"] == {"static-local"}
    assert kinds[None] == {"data-change"}
    header = next(f for f in result.findings if f.kind == "header-change")
    assert "in 3 CU(s) of vmlinux" in header.message
    sympos = next(f for f in result.findings if f.kind == "ambiguous-sympos")
    assert "old_sympos = 2" in sympos.message
    expected = {
        ("vmlinux", "demo_setup", 0, False),
        ("vmlinux", "demo_req_cost.isra.0", 0, True),
        ("vmlinux", "demo_hash", 1, True),
        ("vmlinux", "demo_hash", 2, True),
        ("vmlinux", "demo_op", 0, True),
        ("vmlinux", "demo_arch_setup", 0, True),
        ("vmlinux", "demo_lib_mix", 0, False),
        ("vmlinux", "demo_fill", 0, True),
    }
    assert expected <= replace_set(result)
    # The module inlines demo_mix32 too (drivers/demo/demo_main.c).
    assert any(e.object == "demo" and e.reason == "inlines demo_mix32" for e in result.replace)


def test_unknown_function(tmp_path: Path, indexes: IndexSet) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(SOURCE, tree)
    core = tree / "kernel" / "demo_core.c"
    core.write_text(core.read_text() + "\nint demo_not_built(int x)\n{\n\treturn x + 1;\n}\n")
    n = len(core.read_text().splitlines())
    patch = (
        "--- a/kernel/demo_core.c\n+++ b/kernel/demo_core.c\n"
        f"@@ -{n - 2},3 +{n - 2},3 @@ int demo_not_built(int x)\n"
        " {\n-\treturn x + 1;\n+\treturn x + 2;\n }\n"
    )
    result = Checker(indexes).check_patches([("unbuilt.diff", patch)], tree)
    assert kinds_by_function(result) == {"demo_not_built": {"unknown-function"}}
    assert result.replace == ()


def test_comment_only_and_unbuilt_files_change_nothing(indexes: IndexSet) -> None:
    text = (SOURCE / "lib" / "demo_lib.c").read_text().splitlines()
    line = text.index(" * GCC's IPA-RA is on and callers rely on the callee's real register use.")
    patch = (
        "--- a/lib/demo_lib.c\n+++ b/lib/demo_lib.c\n"
        f"@@ -{line + 1},1 +{line + 1},1 @@\n"
        f"-{text[line]}\n+ * GCC's IPA-RA is on, and callers rely on the callee's register use.\n"
    )
    result = Checker(indexes).check_patches([("comment.diff", patch)], SOURCE)
    assert result.changed_functions == () and result.findings == ()
    assert any("comment" in n for n in result.notes)


def test_malformed_patch_is_a_problem_not_a_crash(indexes: IndexSet) -> None:
    patch = "--- a/lib/demo_lib.c\n+++ b/lib/demo_lib.c\n@@ -1,3 +1,3 @@\n garbage\n"
    result = Checker(indexes).check_patches([("bad.diff", patch)], SOURCE)
    assert result.problems
    assert all(p.file == "bad.diff" for p in result.problems)


def test_json_shape(indexes: IndexSet) -> None:
    doc = result_to_json(check(indexes, "demo.patch"))
    assert set(doc) >= {"changed_functions", "findings", "replace"}
    f = doc["findings"][0]
    assert set(f) >= {
        "kind", "severity", "function", "object", "message",
        "patch_file", "patch_line", "source_file", "source_line",
    }  # fmt: skip
    assert set(doc["replace"][0]) >= {"object", "symbol", "sympos", "reason"}


def producer_of(binary: Path, cu: str) -> str:
    """DW_AT_producer of the compile unit `cu`, as binutils' `readelf --debug-dump=info`."""
    dump = subprocess.run(
        ["readelf", "--debug-dump=info", str(binary)], check=True, capture_output=True, text=True
    ).stdout
    for unit in dump.split("Compilation Unit @")[1:]:
        lines = unit.splitlines()
        name = next(ln for ln in lines if "DW_AT_name" in ln)
        if name.rstrip().endswith(f": {cu}"):
            return next(ln for ln in lines if "DW_AT_producer" in ln)
    raise AssertionError(f"no unit {cu}")


def test_json_files_say_where_each_file_is_built(indexes: IndexSet, arch: str) -> None:
    doc = result_to_json(check(indexes, "demo.patch"))
    files = {f["path"]: f for f in doc["files"]}
    assert list(files) == ["kernel/demo_core.c", "lib/demo_lib.c"]
    core, lib = files["kernel/demo_core.c"], files["lib/demo_lib.c"]
    assert (core["patch_line"], core["status"], lib["patch_line"]) == (12, "modified", 34)
    # demo_core.c is built with ftrace flags (so no IPA-RA): -pg -mfentry on x86-64,
    # -fpatchable-function-entry=2 on arm64; demo_lib.c without them, with IPA-RA: what the
    # producer strings say.
    flag, ftrace = {
        "x86_64": ("-mfentry", "fentry"),
        "arm64": ("-fpatchable-function-entry", "patchable"),
    }[arch]
    vmlinux = fixture_binary(arch)
    assert flag in producer_of(vmlinux, "kernel/demo_core.c")
    assert flag not in producer_of(vmlinux, "lib/demo_lib.c")
    assert core["units"] == [
        {"object": "vmlinux", "cu": "kernel/demo_core.c", "included": False, "analysed": True,
         "error": None,
         "ftrace": ftrace, "ipa_ra": False}
    ]  # fmt: skip
    assert [(u["cu"], u["ftrace"], u["ipa_ra"]) for u in lib["units"]] == [
        ("lib/demo_lib.c", "none", True)
    ]
    # Each hunk with its `@@` line and the functions it changes, as the editor's lenses say.
    assert [(h["patch_line"], h["header"], [f["name"] for f in h["functions"]]) for h in
            core["hunks"] + lib["hunks"]] == [
        (16, "@@ -51,7 +51,7 @@", ["demo_account"]),
        (25, "@@ -123,6 +123,8 @@", ["demo_lookup"]),
        (38, "@@ -9,7 +9,7 @@", ["demo_lib_step"]),
    ]  # fmt: skip


def test_json_files_name_an_unreadable_unit(tmp_path: Path) -> None:
    # A mutant of the fixture vmlinux whose kernel/demo_core.c unit cannot be read (one byte
    # makes a DW_AT_sibling point backwards, tests/fixtures/corrupt/manifest.json): the file
    # still maps to its CU, which is not analysed and says why; demo_lib.c is unaffected.
    import lzma

    from klp_lsp.index.builder import build_index

    vmlinux = tmp_path / "vmlinux"
    mutant = FIXTURES / "corrupt" / "elf" / "x86_64-vmlinux-sibling-loop-spin.xz"
    vmlinux.write_bytes(lzma.decompress(mutant.read_bytes()))
    built = build_index(vmlinux, tmp_path / "idx", jobs=1)
    indexes = IndexSet.open([built.index_path])
    try:
        doc = result_to_json(check(indexes, "demo.patch"))
    finally:
        indexes.close()
    units = {f["path"]: f["units"] for f in doc["files"]}
    (core,) = units["kernel/demo_core.c"]
    assert core["analysed"] is False
    assert "a DW_AT_sibling near 0xcb4 points back to 0xc6d" in core["error"]
    (lib,) = units["lib/demo_lib.c"]
    assert (lib["analysed"], lib["error"]) == (True, None)


def _sarif_schema() -> dict[str, object] | None:
    """The SARIF 2.1.0 schema from npm's @microsoft/jest-sarif, cached; None when offline."""
    cache = Path.home() / ".cache" / "klp-lsp-tests" / "sarif-2.1.0-rtm.5.json"
    if not cache.exists():
        npm = shutil.which("npm")
        if npm is None:
            return None
        work = cache.parent / "npm"
        work.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "pack", "--silent", "@microsoft/jest-sarif@1.0.0-beta.0"],
            cwd=work, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            return None
        with tarfile.open(work / done.stdout.strip().splitlines()[-1]) as tar:
            member = tar.extractfile("package/lib/schemas/sarif-2.1.0-rtm.5.json")
            if member is None:
                return None
            cache.write_bytes(member.read())
    loaded: dict[str, object] = json.loads(cache.read_text())
    return loaded


def test_sarif_is_valid(indexes: IndexSet) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("the SARIF 2.1.0 schema could not be fetched from the npm registry")
    log = result_to_sarif(check(indexes, "demo.patch", "pitfalls.mbox"))
    jsonschema.validate(log, schema)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    for rule in rules:
        page = ROOT / "docs" / "findings" / f"{rule['id']}.md"
        assert rule["helpUri"] == page.as_uri() and page.exists()
    result = log["runs"][0]["results"][0]
    uris = [result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]]
    uris += [r["physicalLocation"]["artifactLocation"]["uri"] for r in result["relatedLocations"]]
    assert uris[0].endswith("demo.patch") and uris[1].endswith(".c")


def test_skeleton(indexes: IndexSet) -> None:
    text = render_skeleton(check(indexes, "pitfalls.mbox"), ["pitfalls.mbox"])
    assert 'MODULE_INFO(livepatch, "Y");' in text
    assert '.old_name = "demo_hash",' in text and ".old_sympos = 2," in text
    assert ".old_sympos = 1," in text
    assert '.name = "demo",' in text  # the module's klp_object
    assert "/* TODO: copy the patched body of demo_fill */" in text
    assert "Not patchable, not listed: vmlinux demo_setup" in text


def _kernel_headers() -> Path | None:
    """A kernel build tree with livepatch.h: $KLP_KERNEL_HEADERS, the running kernel's, or any
    installed Debian linux-headers package for this architecture."""
    import os
    import platform

    candidates = [os.environ.get("KLP_KERNEL_HEADERS", "")]
    candidates.append(f"/lib/modules/{os.uname().release}/build")
    suffix = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
    candidates += sorted(str(p) for p in Path("/usr/src").glob(f"linux-headers-*-{suffix}"))
    for c in candidates:
        if not c or not (Path(c) / "Makefile").exists():
            continue
        # Debian splits the headers: the flavour's tree includes a "-common" one.
        for root in (Path(c), *Path(c).parent.glob(Path(c).name.rsplit("-", 2)[0] + "-common")):
            if (root / "include" / "linux" / "livepatch.h").exists():
                return Path(c)
    return None


@pytest.mark.skipif(_kernel_headers() is None, reason="no kernel headers with livepatch.h here")
def test_skeleton_compiles_against_kernel_headers(tmp_path: Path, indexes: IndexSet) -> None:
    headers = _kernel_headers()
    assert headers is not None
    (tmp_path / "livepatch-demo.c").write_text(render_skeleton(check(indexes, "demo.patch")))
    (tmp_path / "Makefile").write_text("obj-m += livepatch-demo.o\n")
    done = subprocess.run(
        ["make", "-C", str(headers), f"M={tmp_path}", "modules"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_check_exit_status_and_formats(tmp_path: Path) -> None:
    common = ["--binary", str(fixture_binary("x86_64")), "--source", str(SOURCE)]
    common += ["--index-dir", str(tmp_path), "--no-background"]
    done = run_cli("check", str(PATCHES / "demo.patch"), *common)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("demo_account (kernel/demo_core.c) [vmlinux]: NEEDS CARE")
    done = run_cli("check", str(PATCHES / "demo.patch"), *common, "--format", "json")
    assert json.loads(done.stdout)["replace"]
    clean = tmp_path / "clean.diff"
    clean.write_text(
        "--- a/kernel/demo_core.c\n+++ b/kernel/demo_core.c\n@@ -1,1 +1,1 @@\n"
        f"-{(SOURCE / 'kernel/demo_core.c').read_text().splitlines()[0]}\n"
        "+// SPDX-License-Identifier: GPL-2.0-only\n"
    )
    assert run_cli("check", str(clean), *common).returncode == 0
    missing = run_cli("check", str(tmp_path / "nope.patch"), *common)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "nope.patch" in missing.stderr
    out = tmp_path / "lp.c"
    done = run_cli("skeleton", str(PATCHES / "demo.patch"), *common, "-o", str(out))
    assert done.returncode == 0 and "klp_enable_patch" in out.read_text()


def test_path_outside_the_tree_is_a_problem(tmp_path: Path, indexes: IndexSet) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(SOURCE, tree)
    (tmp_path / "secret.c").write_text("int leak(void)\n{\n\treturn 1;\n}\n")
    patch = (
        "--- a/../secret.c\n+++ b/../secret.c\n@@ -3,1 +3,1 @@ int leak(void)\n"
        "-\treturn 1;\n+\treturn 2;\n"
    )
    result = Checker(indexes).check_patches([("escape.diff", patch)], tree)
    assert result.changed_functions == () and result.findings == ()
    assert [p.message for p in result.problems] == [f"../secret.c: outside the source tree {tree}"]
