"""The prediction and the compiler side by side for a set of real patches (issue 16).

    python bench/compile_patches.py --build-tree DIR --binary VMLINUX [--binary MODULE.ko ...]
        --index-dir IDX [--jobs 2] [--out bench/results/compile-patches-RUN.json] PATCH ...

Runs `klp-lsp check --compile --format json` on each patch (a whole process, as a user would)
and prints, per patch: the objects compiled, the predicted replace set, what the compiler
changed (the kpatch preview, the line-only functions, clone changes and inlining flips), where
they agree, and every disagreement with the cause `check --compile` gives for it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KLP = [sys.executable, "-m", "klp_lsp"]


def summarise(patch: Path, doc: dict[str, Any], wall: float, load: float) -> dict[str, Any]:
    """One row: the two answers and how they differ."""
    report = doc.get("compile") or {}
    rows = report.get("comparison", [])
    functions = [f for o in report.get("objects", []) for f in o["functions"]]
    causes = {
        f["function"]: f["message"].split(": ", 1)[-1]
        for f in doc["findings"]
        if f["kind"] == "compiler-only-change"
    }
    compiler_kinds = ("changed", "calls-renamed", "added", "removed")
    return {
        "patch": patch.name,
        "objects": [o["object"] for o in report.get("objects", [])],
        "failures": report.get("failures", []),
        "not_compiled_objects": report.get("not_compiled", []),
        "predicted": [r["symbol"] for r in rows if r["predicted"] is not None],
        "compiler": {
            r["symbol"]: r["compiler"] for r in rows if r["compiler"].startswith(compiler_kinds)
        },
        "agree": [
            r["symbol"]
            for r in rows
            if r["predicted"] is not None and r["compiler"].startswith(compiler_kinds)
        ],
        "predicted_same_code": [r["symbol"] for r in rows if r["compiler"] == "same code"],
        "predicted_not_compiled": [r["symbol"] for r in rows if r["compiler"] == "not compiled"],
        "compiler_only": [r["symbol"] for r in rows if r["predicted"] is None],
        "compiler_only_causes": causes,
        "line_only": sorted(f["name"] for f in functions if f["kind"] == "line-only"),
        "clones": [c["message"] for o in report.get("objects", []) for c in o["clones"]],
        "inlining": [
            f"{i['callee']} {'now' if i['inlined_after'] else 'no longer'} inlined into"
            f" {i['caller']}"
            for o in report.get("objects", [])
            for i in o["inlining"]
        ],
        "evidence": {c["name"]: c["evidence"] for c in doc["changed_functions"]},
        "problems": [p["message"] for p in doc["problems"]],
        "seconds": report.get("seconds"),
        "wall_s": round(wall, 1),
        "load": round(load, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("patches", nargs="+", type=Path)
    p.add_argument("--build-tree", type=Path, required=True)
    p.add_argument("--binary", type=Path, action="append", required=True)
    p.add_argument("--index-dir", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--compile-limit", type=int, default=16)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = []
    for patch in args.patches:
        cmd = [*KLP, "check", str(patch), "--index-dir", str(args.index_dir), "--compile"]
        cmd += ["--build-tree", str(args.build_tree), "--jobs", str(args.jobs)]
        cmd += ["--compile-limit", str(args.compile_limit), "--format", "json", "--no-background"]
        for b in args.binary:
            cmd += ["--binary", str(b)]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode not in (0, 1):
            print(f"{patch.name}: klp-lsp failed: {proc.stderr.strip()}", flush=True)
            rows.append({"patch": patch.name, "error": proc.stderr.strip()})
            continue
        row = summarise(patch, json.loads(proc.stdout), wall, os.getloadavg()[0])
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
