"""How long `check --compile` takes for one-file patches with a prepared build tree (issue 16).

    python bench/compile_check.py --build-tree DIR [--binary VMLINUX] [--index-dir DIR]
        [--jobs 2] [PATCH ...] [--out bench/results/compile-RUN.json]

Each patch is checked three times as whole `python -m klp_lsp check --compile` processes:
- `cold`: the original object removed from the tree first, so kbuild compiles it again (the
  first check of a file after `prepare-build`), then the patched one;
- `warm`: the original object up to date (make only checks it), the patched one compiled;
- `cached`: the same patch again, answered from the result cache.
The figure the issue asks for is `cold`, the wall time of before and after. A plain `check`
(no compile) of the same patch is timed beside them, and the machine's load with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("KLP_CORPUS_DIR", "/root/.cache/klp-corpus/debian-6.1.192-2"))
DEFAULT_PATCHES = [
    ROOT / "tests/patches/debian-6.1/clones-getname_flags.patch",
    ROOT / "tests/patches/debian-6.1/inlined-enqueue_task.patch",
]
KLP = [sys.executable, "-m", "klp_lsp"]


def timed(cmd: list[str]) -> tuple[float, float, dict[str, Any] | None]:
    """(wall seconds, 1-minute load at the end, the JSON it printed)."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    return round(wall, 2), os.getloadavg()[0], doc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("patches", nargs="*", type=Path, default=DEFAULT_PATCHES)
    p.add_argument("--build-tree", type=Path, required=True)
    p.add_argument("--binary", type=Path, action="append", default=[])
    p.add_argument("--index-dir", type=Path, default=Path(os.environ.get("KLP_LSP_INDEX_DIR", "")))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    binaries = args.binary or [CORPUS / "amd64" / "vmlinux"]
    select = [a for b in binaries for a in ("--binary", str(b))]
    select += ["--index-dir", str(args.index_dir)] if str(args.index_dir) else []
    manifest = json.loads((args.build_tree / "klp-build-tree.json").read_text())
    rows = []
    for patch in args.patches:
        base = [*KLP, "check", str(patch), *select, "--format", "json", "--no-background"]
        base += ["--source", manifest["source"]]
        compile_ = [*base, "--compile", "--build-tree", str(args.build_tree), "--jobs"]
        compile_.append(str(args.jobs))
        plain_wall, plain_load, _ = timed(base)
        _, _, first = timed([*compile_, "--compile-limit", "1"])  # learn the object
        objects = [o["object"] for o in (first or {}).get("compile", {}).get("objects", [])]
        results = args.build_tree / ".klp-lsp" / "results"
        row: dict[str, Any] = {
            "patch": patch.name,
            "objects": objects,
            "plain_check_s": plain_wall,
            "plain_load": plain_load,
        }
        for phase in ("cold", "warm", "cached"):
            if phase != "cached":
                shutil.rmtree(results, ignore_errors=True)
            if phase == "cold":
                for obj in objects:
                    (args.build_tree / obj).unlink(missing_ok=True)
            wall, load, doc = timed(compile_)
            report = (doc or {}).get("compile") or {}
            row[f"{phase}_s"] = wall
            row[f"{phase}_load"] = load
            row[f"{phase}_compile_s"] = report.get("seconds")
            row[f"{phase}_cached"] = report.get("cached")
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| patch | objects | check | check --compile, cold | warm | cached |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['patch']} | {', '.join(r['objects'])} | {r['plain_check_s']} s"
            f" (load {r['plain_load']:.1f}) | {r['cold_s']} s (load {r['cold_load']:.1f})"
            f" | {r['warm_s']} s (load {r['warm_load']:.1f})"
            f" | {r['cached_s']} s (load {r['cached_load']:.1f}) |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
