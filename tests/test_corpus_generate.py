"""Opt-in: `generate --try` on the real Debian kernels, loaded in a VM of their own image.

- `KLP_CORPUS_DIR` (Debian 6.1.192-2, linux-headers-6.1.0-56-cloud-amd64 installed): the
  one-function bench patch builds, verifies, loads with the transition complete, and
  /proc/cmdline in the VM shows the new code (`KLP_LSP_INDEX_DIR` reuses an index).
- `KLP_STABLE_CORPUS_DIR` (Debian 6.1.176-1 from `get-debian-kernel --abi 6.1.0-50 --headers`):
  each fix of tests/patches/debian-6.1/stable ends as results.json recorded (loaded with the
  transition complete, or the failure kind and its reason), and the behaviour checks print the
  new and the old result. About 30 s per patch; `KLP_STABLE_PATCHES=substring` picks some.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from klp_fixtures import ROOT, corpus_dir

STABLE = ROOT / "tests/patches/debian-6.1/stable"
HEADERS_56 = Path("/usr/src/linux-headers-6.1.0-56-cloud-amd64")
HEADERS_50 = Path("/usr/src/linux-headers-6.1.0-50-cloud-amd64")
EXPECTED = {r["patch"]: r for r in json.loads((STABLE / "results.json").read_text())}


def klp(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args], capture_output=True, text=True, check=False
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_bench_patch_loads_on_the_corpus_kernel(tmp_path: Path) -> None:
    corpus = corpus_dir()
    if corpus is None or not HEADERS_56.is_dir() or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs KLP_CORPUS_DIR, linux-headers-6.1.0-56-cloud-amd64 and qemu")
    code, doc = klp(
        "generate", str(ROOT / "tests/patches/debian-6.1/bench-cmdline_proc_show.patch"),
        "--binary", str(corpus / "amd64/vmlinux"), "--source", str(corpus / "src"),
        "--index-dir", os.environ.get("KLP_LSP_INDEX_DIR", str(tmp_path / "index")),
        "--jobs", "2", "-o", str(tmp_path / "lp"),
        "--try", "--run", "cat /proc/cmdline", "--format", "json", "--no-background",
    )  # fmt: skip
    assert code == 0, doc["problems"]
    assert [(f["old_name"], f["new_func"]) for f in doc["functions"]] == [
        ("cmdline_proc_show", "livepatch_cmdline_proc_show")
    ]
    assert doc["klp_relocations"]["symbols"] == {
        "saved_command_line": ".klp.sym.vmlinux.saved_command_line,0"
    }
    assert doc["verify"]["summary"]["errors"] == 0
    lp = [m for m in doc["try"]["modules"] if m["name"] == "livepatch_bench_cmdline_proc_show"]
    assert lp and lp[0]["transition"] == "complete"
    assert "klp-lsp-was-here" in doc["try"]["run"]["output"]


def _stable_patches() -> list[str]:
    wanted = os.environ.get("KLP_STABLE_PATCHES", "")
    return [p for p in sorted(EXPECTED) if wanted in p]


@pytest.mark.parametrize("patch", _stable_patches())
def test_stable_fix_as_recorded(patch: str, tmp_path: Path) -> None:
    value = os.environ.get("KLP_STABLE_CORPUS_DIR")
    if not value or not HEADERS_50.is_dir() or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs KLP_STABLE_CORPUS_DIR (6.1.176-1), its headers and qemu")
    index_dir = Path(os.environ.get("KLP_STABLE_INDEX_DIR", str(tmp_path / "index")))
    done = subprocess.run(
        [sys.executable, str(STABLE / "run.py"), value, str(HEADERS_50), str(index_dir),
         str(tmp_path / "work"), str(STABLE / patch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (row,) = json.loads((tmp_path / "work" / "results.json").read_text())
    expected = EXPECTED[patch]
    assert row["outcome"] == expected["outcome"], done.stdout[-2000:]
    assert row["functions"] == expected["functions"]
    if expected.get("run"):
        got = row["run"]["output"]
        assert re.sub(r"\s+", " ", got) == re.sub(r"\s+", " ", expected["run"]["output"])
    if row["outcome"] != "loaded, transition complete":
        kinds = {re.match(r"\w+: \[([\w-]+)\]", p).group(1) for p in row["problems"]}  # type: ignore[union-attr]
        want = {re.match(r"\w+: \[([\w-]+)\]", p).group(1) for p in expected["problems"]}  # type: ignore[union-attr]
        assert kinds == want
