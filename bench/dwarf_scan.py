"""Measure the fast DWARF scanner on a kernel next to `pahole -J` and a plain pyelftools walk.

    python3 bench/dwarf_scan.py [--corpus DIR] [--arch amd64 arm64] [--json out.json] [--quick]

Each measure runs in its own process under `/usr/bin/time -v` for wall time and peak RSS:
list_units, a full single-process scan, a 2-process pool scan, `pahole -J` on the same file, and
xfs.ko. The pyelftools baseline walks every 50th CU and is extrapolated by .debug_info bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from klp_lsp import model
from klp_lsp.binary.dwarf import DwarfData
from klp_lsp.binary.elf import ElfBinary

DEFAULT_CORPUS = os.environ.get("KLP_CORPUS_DIR", "/root/.cache/klp-corpus/debian-6.1.192-2")

_worker: DwarfData | None = None


def open_dwarf(path: str) -> DwarfData:
    with ElfBinary.open(path) as elf:
        return DwarfData(elf.get_dwarf_sections(), elf.arch, path)


def _init(path: str) -> None:
    global _worker  # one DwarfData per worker process, built from the file itself
    _worker = open_dwarf(path)


def _scan(offsets: list[int]) -> tuple[int, int, float]:
    assert _worker is not None
    t = time.process_time()
    subs = sites = 0
    for off in offsets:
        facts = _worker.scan_unit(off)
        subs += len(facts.subprograms)
        sites += len(facts.inline_sites)
    return subs, sites, time.process_time() - t


def run_mode(mode: str, path: str, jobs: int) -> dict[str, Any]:
    """One measure inside this process; prints a JSON line."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    dwarf = open_dwarf(path)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    units = dwarf.list_units()
    list_time = time.perf_counter() - t1
    out: dict[str, Any] = {"units": len(units), "load_s": load, "list_units_s": list_time}
    if mode == "scan":
        subs = sites = 0
        t2 = time.perf_counter()
        if jobs <= 1:
            for u in units:
                facts: model.CuFacts = dwarf.scan_unit(u.offset)
                subs += len(facts.subprograms)
                sites += len(facts.inline_sites)
            worker_cpu = 0.0
        else:
            # Largest CUs first, in small chunks, so the two workers finish together.
            order = sorted(units, key=lambda u: -u.size)
            chunks = [[u.offset for u in order[i : i + 8]] for i in range(0, len(order), 8)]
            worker_cpu = 0.0
            with ProcessPoolExecutor(jobs, initializer=_init, initargs=(path,)) as pool:
                for s, i, c in pool.map(_scan, chunks):
                    subs += s
                    sites += i
                    worker_cpu += c
        out.update(scan_s=time.perf_counter() - t2, subprograms=subs, inline_sites=sites)
        out["worker_cpu_s"] = worker_cpu
    out["cpu_s"] = time.process_time() - c0
    return out


def run_baseline(path: str, every: int) -> dict[str, Any]:
    """Plain pyelftools walk over every `every`-th CU, extrapolated by .debug_info bytes."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        relocate = elf["e_type"] == "ET_REL"
        di = elf.get_dwarf_info(relocate_dwarf_sections=relocate)
        total = di.debug_info_sec.size
        sampled = dies = 0
        t = time.perf_counter()
        for i, cu in enumerate(di.iter_CUs()):
            if i % every:
                continue
            for _ in cu.iter_DIEs():
                dies += 1
            sampled += cu.size
        elapsed = time.perf_counter() - t
    return {
        "sample_s": elapsed,
        "sample_bytes": sampled,
        "sample_dies": dies,
        "extrapolated_s": elapsed * total / max(sampled, 1),
    }


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Run `cmd` under /usr/bin/time -v; return wall seconds, peak RSS in KiB, stdout."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    assert wall and rss
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    return seconds, int(rss.group(1)), p.stdout


def measure(path: Path, quick: bool) -> dict[str, Any]:
    me = [sys.executable, __file__]
    row: dict[str, Any] = {"binary": str(path)}
    for name, args in (
        ("list_units", ["list"]),
        ("scan_j1", ["scan", "1"]),
        ("scan_j2", ["scan", "2"]),
    ):
        if quick and name == "scan_j2":
            continue
        wall, rss, out = timed(
            [*me, "--run", args[0], str(path), args[1] if len(args) > 1 else "1"]
        )
        row[name] = {"wall_s": wall, "peak_rss_mib": rss / 1024, **json.loads(out)}
    if path.name == "vmlinux":
        btf = Path("/tmp") / f"klp-bench-{os.getpid()}.btf"
        try:
            wall, rss, _ = timed(["pahole", "-J", "--btf_encode_detached", str(btf), str(path)])
            row["pahole_J"] = {"wall_s": wall, "peak_rss_mib": rss / 1024}
        finally:
            btf.unlink(missing_ok=True)
        if not quick:
            wall, rss, out = timed([*me, "--baseline", str(path)])
            row["pyelftools_baseline"] = {
                "wall_s": wall,
                "peak_rss_mib": rss / 1024,
                **json.loads(out),
            }
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'binary':<40} {'measure':<22} {'wall s':>8} {'RSS MiB':>8}  notes",
        "-" * 100,
    ]
    for r in rows:
        name = "/".join(Path(r["binary"]).parts[-2:])
        for key in ("list_units", "scan_j1", "scan_j2", "pahole_J", "pyelftools_baseline"):
            m = r.get(key)
            if m is None:
                continue
            notes = ""
            if key.startswith("scan"):
                notes = (
                    f"{m['units']} CUs, {m['subprograms']} subprograms, "
                    f"{m['inline_sites']} inline sites; scan {m['scan_s']:.1f} s, "
                    f"cpu {m['cpu_s'] + m['worker_cpu_s']:.1f} s"
                )
            elif key == "list_units":
                notes = f"list_units {m['list_units_s']:.2f} s, load {m['load_s']:.2f} s"
            elif key == "pyelftools_baseline":
                notes = (
                    f"sample {m['sample_dies']} DIEs in {m['sample_s']:.1f} s; "
                    f"extrapolated full walk {m['extrapolated_s']:.0f} s"
                )
            lines.append(
                f"{name:<40} {key:<22} {m['wall_s']:>8.1f} {m['peak_rss_mib']:>8.0f}  {notes}"
            )
        if "pahole_J" in r and "scan_j1" in r:
            lines.append(
                f"{'':<40} {'ratio scan_j1/pahole':<22} "
                f"{r['scan_j1']['wall_s'] / r['pahole_J']['wall_s']:>8.2f}"
            )
        if "scan_j2" in r and "scan_j1" in r:
            lines.append(
                f"{'':<40} {'speedup j2 vs j1':<22} "
                f"{r['scan_j1']['scan_s'] / r['scan_j2']['scan_s']:>8.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--arch", nargs="+", default=["amd64", "arm64"])
    ap.add_argument("--json", default=None, help="write the rows as JSON to this file")
    ap.add_argument("--quick", action="store_true", help="skip the 2-process pool and baseline")
    ap.add_argument("--module", default="xfs.ko", help="module file name under modules/")
    ap.add_argument("--run", nargs=3, metavar=("MODE", "PATH", "JOBS"), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        mode, path, jobs = args.run
        print(json.dumps(run_mode(mode, path, int(jobs))))
        return
    if args.baseline:
        print(json.dumps(run_baseline(args.baseline, every=50)))
        return
    rows = []
    for arch in args.arch:
        root = Path(args.corpus) / arch
        rows.append(measure(root / "vmlinux", args.quick))
        module = next(iter(sorted((root / "modules").glob(f"**/{args.module}"))), None)
        if module is not None and arch == args.arch[0]:
            rows.append(measure(module, quick=True))
        print(table(rows[-2:] if module is not None else rows[-1:]), flush=True)
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
