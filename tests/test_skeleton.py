"""The livepatch skeleton's real prototypes (livepatch/skeleton.py) on the fixture kernels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from klp_fixtures import FIXTURES, fixture_binary

from klp_lsp.index.query import IndexSet
from klp_lsp.livepatch.skeleton import build_skeleton, render_kbuild
from klp_lsp.patch.check import Checker

PATCHES = FIXTURES / "patches"
SOURCE = FIXTURES / "kernel"


def skeleton(indexes: IndexSet, name: str) -> str:
    result = Checker(indexes).check_patches([(name, (PATCHES / name).read_text())], SOURCE)
    return build_skeleton(result, indexes, SOURCE, [name])


def test_prototypes_from_the_source(indexes: IndexSet) -> None:
    text = skeleton(indexes, "demo.patch")
    assert "struct demo_req;\n" in text  # forward declaration for the prototypes
    assert "static int livepatch_demo_submit(struct demo_req *req)\n{" in text
    assert "static void livepatch_demo_reset(struct demo_req *req, unsigned long bytes)" in text
    assert "static int livepatch_demo_lookup(const struct demo_req *req, int key)" in text
    # ipa-split kept both parameters in their registers (readelf: the .part.0 DIE's locations).
    assert "static int livepatch_demo_lookup_part_0(const struct demo_req *req, int key)" in text
    assert "void livepatch_demo_submit(void)" not in text


def test_clone_gets_the_clones_abi(indexes: IndexSet) -> None:
    text = skeleton(indexes, "isra-demo_req_cost.patch")
    # objdump -d: demo_req_cost.isra.0 computes from edi / w0 (req->len by value).
    assert "static int livepatch_demo_req_cost_isra_0(unsigned long req_isra)" in text
    assert "not the C prototype of demo_req_cost: req arrives as a value IPA-SRA derived" in text
    assert '.old_name = "demo_req_cost.isra.0",' in text


def test_cli_writes_a_kbuild_file(tmp_path: Path) -> None:
    assert render_kbuild("livepatch-fix") == "obj-m += livepatch-fix.o\n"
    out = tmp_path / "livepatch-fix.c"
    done = subprocess.run(
        [sys.executable, "-m", "klp_lsp", "skeleton", str(PATCHES / "demo.patch"), "--binary",
         str(fixture_binary("x86_64")), "--source", str(SOURCE), "--index-dir", str(tmp_path),
         "--no-background", "-o", str(out), "--kbuild"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "Kbuild").read_text() == "obj-m += livepatch-fix.o\n"
    assert "static int livepatch_demo_submit(struct demo_req *req)" in out.read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "klp_lsp", "skeleton", str(PATCHES / "demo.patch"), "--kbuild"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "--kbuild needs -o" in bad.stderr
