"""Every performance measure of issue 7 in one run: klp-lsp beside `pahole -J` and pyelftools.

    python bench/run.py [--corpus DIR] [--quick] [--pairs 3] [--out bench/results/RUN.json]

Each klp-lsp measure is a whole `python -m klp_lsp ...` process run against a fresh index
directory, timed from outside. Peak memory is reported two ways: the largest single process
(`ru_maxrss` from wait4, what `/usr/bin/time -v` prints) and the whole process tree (the sum of
`Pss` over the tree, sampled every 0.1 s from /proc, so pages a forked worker shares with its
parent count once). The plain pyelftools baseline walks every 50th CU and is extrapolated by
.debug_info bytes (bench/dwarf_scan.py). `--quick` measures amd64 only, modules on a fixed
sample of every 10th module, and skips the baseline. The vmlinux index and `pahole -J` run as
`--pairs` alternated pairs per architecture: the row is the pair with the median ratio, and the
table lists every pair's ratio (the machine's load moves both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CORPUS = os.environ.get("KLP_CORPUS_DIR", "/root/.cache/klp-corpus/debian-6.1.192-2")
PATCH = ROOT / "tests/patches/debian-6.1/inlined-enqueue_task.patch"
KLP = [sys.executable, "-m", "klp_lsp"]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed process."""

    command: str
    wall_s: float
    cpu_s: float
    max_rss_mib: float
    tree_pss_mib: float
    exit_code: int
    load_avg_1min: float  # of the machine when the run ended: other work slows every figure


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(
    cmd: Sequence[str], *, ok: Sequence[int] = (0,), env: dict[str, str] | None = None
) -> Run:
    """Run `cmd` to completion; wall, CPU (with children), peak RSS and peak tree PSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, sum(_pss_kib(p) for p in _tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained so a chatty child never blocks on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:].decode()}")
    return Run(
        command=" ".join(cmd),
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        max_rss_mib=round(usage.ru_maxrss / 1024, 1),
        tree_pss_mib=round(peak / 1024, 1),
        exit_code=proc.returncode,
        load_avg_1min=round(os.getloadavg()[0], 2),
    )


def _env() -> dict[str, str]:
    server = str(ROOT / "server")
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": server if not old else f"{server}:{old}"}


def index_vmlinux(vmlinux: Path, index_dir: Path, jobs: int) -> Run:
    return timed(
        [
            *KLP,
            "index",
            str(vmlinux),
            "--index-dir",
            str(index_dir),
            "--jobs",
            str(jobs),
            "--quiet",
        ],
        env=_env(),
    )


def pahole(vmlinux: Path, scratch: Path) -> Run:
    btf = scratch / f"{vmlinux.parent.name}.btf"
    try:
        return timed(["pahole", "-J", "--btf_encode_detached", str(btf), str(vmlinux)])
    finally:
        btf.unlink(missing_ok=True)


def baseline(vmlinux: Path) -> dict[str, Any]:
    """The plain pyelftools walk, sampled and extrapolated (bench/dwarf_scan.py)."""
    run = subprocess.run(
        [sys.executable, str(HERE / "dwarf_scan.py"), "--baseline", str(vmlinux)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **_env()},
    )
    out: dict[str, Any] = json.loads(run.stdout)
    return out


def first_diagnostic(vmlinux: Path, source: Path, index_dir: Path, jobs: int) -> Run:
    return timed(
        [
            *KLP,
            "check",
            str(PATCH),
            "--binary",
            str(vmlinux),
            "--source",
            str(source),
            "--no-background",
            "--index-dir",
            str(index_dir),
            "--jobs",
            str(jobs),
        ],
        ok=(0, 1),  # 1: the check found errors, which is the point of this patch
        env=_env(),
    )


def server_first_diagnostic(vmlinux: Path, source: Path, index_dir: Path) -> dict[str, Any]:
    """A fresh `klp-lsp serve` with no index: seconds from its start to the patch's diagnostics.

    Drives the server through the language-server benchmark's client (bench/lsp_bench.py: a
    pygls client that answers as VS Code does): it configures the vmlinux, opens PATCH, and
    waits for the first `publishDiagnostics` of that document (the server publishes none
    before it has indexed the CUs the patch touches).
    """
    import asyncio

    from lsp_bench import bench_client, drain, initialize_params, server_env
    from lsprotocol import types

    settings = {"binaries": [str(vmlinux)], "sourceRoot": str(source), "indexDir": str(index_dir)}

    async def run() -> dict[str, Any]:
        client = bench_client(settings)
        got: asyncio.Future[tuple[float, int]] = asyncio.get_running_loop().create_future()
        uri = PATCH.as_uri()

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            _say(f"server: {params.message}")

        @client.feature("klp-lsp/indexState")
        def index_state(params: Any) -> None:
            return None

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(params: types.PublishDiagnosticsParams) -> None:
            if params.uri == uri and not got.done():
                got.set_result((time.perf_counter(), len(params.diagnostics)))

        started = time.perf_counter()
        await client.start_io(*KLP, "serve", env=server_env())
        server = client._server
        assert server is not None and server.stderr is not None
        drainer = asyncio.create_task(drain(server.stderr))
        await client.initialize_async(initialize_params(settings))
        client.initialized(types.InitializedParams())
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="diff", version=1, text=PATCH.read_text()
                )
            )
        )
        at, count = await asyncio.wait_for(got, 300)
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        drainer.cancel()
        return {
            "wall_s": round(at - started, 3),
            "diagnostics": count,
            "load_avg_1min": os.getloadavg()[0],
        }

    return asyncio.run(run())


def module_sample(modules: Path, every: int) -> list[Path]:
    found = sorted(p for p in modules.rglob("*.ko*") if p.is_file())
    return found[::every]


def index_modules(files: Sequence[Path], index_dir: Path, jobs: int, scratch: Path) -> Run:
    # A directory of links keeps the command line short and `index DIR` is the user's command.
    tree = scratch / f"modules-{len(files)}"
    if not tree.exists():
        tree.mkdir()
        for i, f in enumerate(files):
            (tree / f"{i:04d}").mkdir()
            (tree / f"{i:04d}" / f.name).symlink_to(f)
    return timed(
        [*KLP, "index", str(tree), "--index-dir", str(index_dir), "--jobs", str(jobs), "--quiet"],
        env=_env(),
    )


def warm_show(vmlinux: Path, index_dir: Path, repeat: int = 7) -> dict[str, Any]:
    # The floor any Python command line pays on this machine, measured beside it.
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(repeat)]
    runs = [
        timed(
            [*KLP, "show", "jhash", "--binary", str(vmlinux), "--index-dir", str(index_dir)],
            env=_env(),
        )
        for _ in range(repeat)
    ]
    return {
        "median_wall_s": round(statistics.median(r.wall_s for r in runs), 3),
        "min_wall_s": min(r.wall_s for r in runs),
        "max_rss_mib": max(r.max_rss_mib for r in runs),
        "python_startup_median_s": round(statistics.median(r.wall_s for r in bare), 3),
        "runs": [asdict(r) for r in runs],
    }


def measure(corpus: Path, quick: bool, jobs: int, pairs_per_arch: int = 1) -> dict[str, Any]:
    results: dict[str, Any] = {
        "corpus": str(corpus),
        "quick": quick,
        "jobs": jobs,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "arch": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="klp-bench-"))
    try:
        for arch in ["amd64"] if quick else ["amd64", "arm64"]:
            vmlinux = corpus / arch / "vmlinux"
            row: dict[str, Any] = {}
            idx = scratch / f"index-{arch}"
            # Alternating pairs share the machine's load; the pair with the median ratio is
            # the row, and every pair's ratio is kept.
            pairs = []
            for n in range(pairs_per_arch):
                _say(f"{arch}: klp-lsp index --jobs {jobs} ({n + 1}/{pairs_per_arch})")
                shutil.rmtree(idx, ignore_errors=True)
                ours = index_vmlinux(vmlinux, idx, jobs)
                _say(f"{arch}: pahole -J ({n + 1}/{pairs_per_arch})")
                theirs = pahole(vmlinux, scratch)
                pairs.append((ours.wall_s / theirs.wall_s, ours, theirs))
            pairs.sort(key=lambda p: p[0])
            _ratio, median_ours, median_theirs = pairs[len(pairs) // 2]
            row["index"] = asdict(median_ours)
            row["pahole_J"] = asdict(median_theirs)
            row["pair_ratios"] = [round(p[0], 2) for p in pairs]
            if not quick:
                _say(f"{arch}: pyelftools baseline (every 50th CU, extrapolated)")
                row["pyelftools_baseline"] = baseline(vmlinux)
            if arch == "amd64":
                _say(f"{arch}: warm show")
                row["warm_show"] = warm_show(vmlinux, idx)
                _say(f"{arch}: first diagnostic")
                first = scratch / "index-first"
                row["first_diagnostic"] = asdict(
                    first_diagnostic(vmlinux, corpus / "src", first, jobs)
                )
                _say(f"{arch}: server start to first diagnostics, no index")
                row["server_first_diagnostic"] = server_first_diagnostic(
                    vmlinux, corpus / "src", scratch / "index-server-first"
                )
                files = module_sample(corpus / arch / "modules", 10 if quick else 1)
                row["modules"] = {"count": len(files)}
                for j in (jobs, 1):
                    _say(f"{arch}: {len(files)} modules, --jobs {j}")
                    row["modules"][f"jobs{j}"] = asdict(
                        index_modules(files, scratch / f"index-mod-j{j}", j, scratch)
                    )
            results["arch"][arch] = row
            shutil.rmtree(idx, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(results: dict[str, Any]) -> str:
    """The side-by-side table with ratios and each goal's verdict."""
    jobs = results["jobs"]
    lines = [
        f"{'measure':<44} {'wall s':>8} {'CPU s':>7} {'max RSS':>8} {'tree PSS':>8}  ratio / goal",
        "-" * 110,
    ]

    def line(name: str, r: dict[str, Any], note: str = "") -> None:
        lines.append(
            f"{name:<44} {r['wall_s']:>8.2f} {r['cpu_s']:>7.1f} {r['max_rss_mib']:>7.0f}M"
            f" {r['tree_pss_mib']:>7.0f}M  {note}"
        )

    for arch, row in results["arch"].items():
        idx, pah = row["index"], row["pahole_J"]
        ratio = idx["wall_s"] / pah["wall_s"]
        cpu_ratio = idx["cpu_s"] / pah["cpu_s"]
        rss_ok = max(idx["max_rss_mib"], idx["tree_pss_mib"]) <= 1024
        line(
            f"{arch} klp-lsp index vmlinux --jobs {jobs}",
            idx,
            f"{ratio:.2f}x pahole wall (goal <= 3: {_verdict(ratio <= 3)}), "
            f"{cpu_ratio:.1f}x its CPU; "
            f"RSS <= 1 GiB: {_verdict(rss_ok)}",
        )
        line(f"{arch} pahole -J --btf_encode_detached", pah)
        ratios = row.get("pair_ratios")
        if ratios and len(ratios) > 1:
            lines.append(
                f"{'':<44} {'':>8} {'':>7} {'':>8} {'':>8}  "
                f"median of {len(ratios)} alternated pairs; ratios "
                + ", ".join(f"{r:.2f}x" for r in ratios)
            )
        base = row.get("pyelftools_baseline")
        if base is not None:
            speedup = base["extrapolated_s"] / idx["wall_s"]
            lines.append(
                f"{arch + ' plain pyelftools walk (extrapolated)':<44} "
                f"{base['extrapolated_s']:>8.1f} {'':>7} {'':>8} {'':>8}  "
                f"from every 50th CU ({base['sample_s']:.1f} s, {base['sample_dies']} DIEs); "
                f"klp-lsp {speedup:.1f}x faster (goal >= 20: {_verdict(speedup >= 20)})"
            )
        first = row.get("first_diagnostic")
        if first is not None:
            line(
                f"{arch} first diagnostic (check, no index)",
                first,
                f"goal <= 5 s: {_verdict(first['wall_s'] <= 5)}",
            )
        served = row.get("server_first_diagnostic")
        if served is not None:
            lines.append(
                f"{arch + ' server start to diagnostics, no index':<44} {served['wall_s']:>8.2f} "
                f"{'':>7} {'':>8} {'':>8}  {served['diagnostics']} diagnostics on the patch"
                f" (load {served['load_avg_1min']:.1f})"
            )
        show = row.get("warm_show")
        if show is not None:
            lines.append(
                f"{arch + ' warm show jhash (median of 7)':<44} {show['median_wall_s']:>8.3f} "
                f"{'':>7} {show['max_rss_mib']:>7.0f}M {'':>8}  "
                f"goal < 0.1 s: {_verdict(show['median_wall_s'] < 0.1)}; "
                f"bare `python -c pass`: {show['python_startup_median_s']:.3f} s"
            )
        mods = row.get("modules")
        if mods is not None:
            jn, j1 = mods[f"jobs{jobs}"], mods["jobs1"]
            share = jn["wall_s"] / idx["wall_s"]
            line(
                f"{arch} {mods['count']} modules --jobs {jobs}",
                jn,
                f"{share:.2f}x vmlinux index (goal <= 1.5"
                + (": " + _verdict(share <= 1.5) if mods["count"] >= 1121 else ", sample only")
                + ")",
            )
            speed = j1["wall_s"] / jn["wall_s"]
            cpu_speed = j1["cpu_s"] / jn["wall_s"]
            line(
                f"{arch} {mods['count']} modules --jobs 1",
                j1,
                f"--jobs {jobs} is {speed:.2f}x faster (goal >= 1.8: {_verdict(speed >= 1.8)}); "
                f"its CPU / --jobs {jobs} wall: {cpu_speed:.2f}",
            )
    loads = [r["load_avg_1min"] for row in results["arch"].values() for r in _runs(row)]
    if loads:
        lines.append(
            f"machine load (1-min average at the end of each run): {min(loads):.1f} to "
            f"{max(loads):.1f} on {results['host']['cpus']} CPUs"
        )
    return "\n".join(lines)


def _runs(row: dict[str, Any]) -> list[dict[str, Any]]:
    out = [v for v in row.values() if isinstance(v, dict) and "load_avg_1min" in v]
    out += row.get("warm_show", {}).get("runs", [])
    out += [v for v in row.get("modules", {}).values() if isinstance(v, dict)]
    return [r for r in out if "load_avg_1min" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path(DEFAULT_CORPUS))
    ap.add_argument("--quick", action="store_true", help="amd64 only, module sample, no baseline")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the parallel runs")
    ap.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="index + pahole pairs per architecture, alternated; the median ratio is reported",
    )
    ap.add_argument("--out", type=Path, help="JSON output (default bench/results/<time>.json)")
    ap.add_argument("--table", type=Path, help="only print the table of an earlier JSON run")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    results = measure(args.corpus, args.quick, args.jobs, args.pairs)
    out = args.out or HERE / "results" / time.strftime("run-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = table(results)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
