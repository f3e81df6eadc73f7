"""The fleet's scaling (issue 17): a cold fleet with 1 and 2 local workers, the same on a
`dask scheduler` + `dask worker` set-up on localhost, and a model of a large fleet.

    python bench/fleet.py [--fleet bench/fleet-debian-6.1.toml] [--workers 1 2] [--cluster]
                          [--model 200x50] [--out bench/results/fleet-RUN.json]
    python bench/fleet.py --fixtures            # a smoke run on the committed fixture kernels
    python bench/fleet.py --table bench/results/fleet-RUN.json

Every run is a whole `klp-lsp fleet PATCH --kernels FLEET --format json` process against a
fresh index directory ("cold": no index exists; the binaries may be in the page cache), timed
from outside, with the machine's 1-minute load before and after. `--cluster` starts
`dask scheduler` and two `dask worker --nworkers 1 --nthreads 1` processes on 127.0.0.1 as a
user would, runs the same fleet with `--scheduler`, and stops them. The model takes the per-
kernel costs measured by the 1-worker run (index seconds of each binary on its worker, check
seconds, and the rest of the wall time as fixed start-up) and schedules N kernels, cycling
through the measured ones, on M workers, costliest first (which the fleet's task order, most
DWARF first, approximates).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLEET = HERE / "fleet-debian-6.1.toml"
PATCHES = [
    ROOT / "tests/patches/debian-6.1/ext4-buddy_page_lock.patch",
    ROOT / "tests/patches/debian-6.1/inlined-enqueue_task.patch",
    ROOT / "tests/patches/debian-6.1/clones-getname_flags.patch",
]
FIXTURE_PATCH = ROOT / "tests/fixtures/patches/demo.patch"
KLP = [sys.executable, "-m", "klp_lsp"]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def fixture_fleet(directory: Path) -> Path:
    """A fleet of the committed fixture kernels, for a quick check of this script."""
    build = ROOT / "tests/fixtures/build"
    lines = [f'source = "{ROOT / "tests/fixtures/kernel"}"']
    for arch in ("x86_64", "arm64"):
        binaries = [str(build / arch / "vmlinux"), str(build / arch / "demo.ko")]
        lines += ["[[kernel]]", f'name = "{arch}"', f"binaries = {json.dumps(binaries)}"]
    path = directory / "FLEET.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_fleet(
    fleet: Path, patches: list[Path], index_dir: Path, extra: list[str], label: str
) -> dict[str, Any]:
    """One cold `klp-lsp fleet` process: its wall time and its JSON report."""
    out = index_dir.parent / f"{index_dir.name}.json"
    cmd = [
        *KLP,
        "fleet",
        *map(str, patches),
        "--kernels",
        str(fleet),
        "--index-dir",
        str(index_dir),
        "--format",
        "json",
        "-o",
        str(out),
        "--quiet",
        *extra,
    ]
    before = load()
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1) or not out.exists():
        raise SystemExit(f"{label}: klp-lsp fleet failed ({proc.returncode}): {proc.stderr}")
    report = json.loads(out.read_text())
    kernels = []
    for k in report["kernels"]:
        kernels.append(
            {
                "name": k["name"],
                "status": k["status"],
                "index_s": round(sum(b["index_seconds"] for b in k["binaries"]), 2),
                "check_s": k["check_seconds"],
                "hosts": sorted({b["host"] for b in k["binaries"]}),
            }
        )
    print(f"{label}: {wall:.1f} s wall (load {before} -> {load()})", file=sys.stderr)
    return {
        "label": label,
        "command": " ".join(cmd),
        "wall_s": round(wall, 2),
        "load_before": before,
        "load_after": load(),
        "kernels": kernels,
        "differences": len(report["differences"]),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_on_cluster(fleet: Path, patches: list[Path], index_dir: Path) -> dict[str, Any]:
    """`dask scheduler` + two `dask worker` processes on localhost, started as a user would."""
    dask = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "server"))
    worker = [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    worker,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            )
        extra = ["--scheduler", address, "--workers", "2"]
        return run_fleet(fleet, patches, index_dir, extra, "dask scheduler + 2 dask worker")
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def model(serial: dict[str, Any], kernels: int, workers: int) -> dict[str, Any]:
    """The wall time of `kernels` kernels on `workers` workers from one run's costs."""
    costs = [k["index_s"] + k["check_s"] for k in serial["kernels"] if k["status"] != "failed"]
    work = sum(costs)
    fixed = max(serial["wall_s"] - work, 0.0)  # client start-up, planning, cluster start
    tasks = sorted((costs[i % len(costs)] for i in range(kernels)), reverse=True)
    finish = [0.0] * workers
    heapq.heapify(finish)
    for cost in tasks:  # largest first onto the worker that is free first
        heapq.heappush(finish, heapq.heappop(finish) + cost)
    makespan = max(finish)
    total = sum(tasks)
    return {
        "kernels": kernels,
        "workers": workers,
        "per_kernel_s": [round(c, 1) for c in costs],
        "fixed_s": round(fixed, 1),
        "serial_s": round(total + fixed, 1),
        "wall_s": round(makespan + fixed, 1),
        "ideal_s": round(total / workers + fixed, 1),
        "speedup": round((total + fixed) / (makespan + fixed), 1),
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"fleet {result['fleet']} ({len(result['runs'][0]['kernels'])} kernels)"]
    lines.append(f"{'run':40} {'wall s':>8}  load before -> after")
    for r in result["runs"]:
        lines.append(f"{r['label']:40} {r['wall_s']:8.1f}  {r['load_before']} -> {r['load_after']}")
    by_label = {r["label"]: r for r in result["runs"]}
    one, two = by_label.get("LocalCluster, 1 worker"), by_label.get("LocalCluster, 2 workers")
    if one and two:
        speedup = one["wall_s"] / two["wall_s"]
        verdict = "met" if speedup >= 1.8 else "NOT met"
        lines.append(f"2 workers: {speedup:.2f}x the speed of 1 worker (goal >= 1.8x: {verdict})")
    for r in result["runs"][:1]:
        lines.append("per kernel (index s on its worker + check s):")
        lines.extend(
            f"  {k['name']:28} {k['status']:14} {k['index_s']:7.1f} + {k['check_s']:.1f}"
            for k in r["kernels"]
        )
    m = result.get("model")
    if m:
        lines.append(
            f"model: {m['kernels']} kernels on {m['workers']} workers: {m['wall_s']:.0f} s"
            f" (ideal {m['ideal_s']:.0f} s, one worker {m['serial_s']:.0f} s, {m['speedup']}x;"
            f" fixed start-up {m['fixed_s']} s)"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fleet", type=Path, default=FLEET)
    ap.add_argument("--patch", type=Path, action="append", help="default: two corpus patches")
    ap.add_argument("--fixtures", action="store_true", help="the fixture kernels (smoke run)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cluster", action="store_true", help="also on dask scheduler + 2 workers")
    ap.add_argument("--model", default="200x50", metavar="KERNELSxWORKERS")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--table", type=Path, help="print the table of an earlier run")
    ap.add_argument(
        "--model-from",
        type=Path,
        metavar="REPORT",
        help="only the model, from a `klp-lsp fleet --format json` report's per-kernel costs",
    )
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.model_from:
        kernels, workers = (int(x) for x in args.model.split("x"))
        report = json.loads(args.model_from.read_text())
        costs = {
            "wall_s": 0.0,  # no start-up measured: the model is of the tasks alone
            "kernels": [
                {
                    "status": k["status"],
                    "index_s": sum(b["index_seconds"] for b in k["binaries"]),
                    "check_s": k["check_seconds"],
                }
                for k in report["kernels"]
            ],
        }
        print(json.dumps(model(costs, kernels, workers), indent=2))
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="klp-fleet-bench-"))
    try:
        fleet, patches = args.fleet, args.patch or PATCHES
        if args.fixtures:
            fleet, patches = fixture_fleet(scratch), args.patch or [FIXTURE_PATCH]
        runs = []
        for n in args.workers:
            label = f"LocalCluster, {n} worker{'s' if n > 1 else ''}"
            runs.append(
                run_fleet(fleet, patches, scratch / f"idx-{n}", ["--workers", str(n)], label)
            )
        if args.cluster:
            runs.append(run_on_cluster(fleet, patches, scratch / "idx-cluster"))
        result: dict[str, Any] = {"fleet": str(fleet), "runs": runs}
        serial = next((r for r in runs if r["label"] == "LocalCluster, 1 worker"), None)
        if serial is not None:
            kernels, workers = (int(x) for x in args.model.split("x"))
            result["model"] = model(serial, kernels, workers)
        print(table(result))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
