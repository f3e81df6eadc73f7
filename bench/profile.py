"""Profile a whole klp-lsp command (parent and pool workers) with py-spy and summarise it.

    python bench/profile.py [--rate 50] [--raw FILE] -- index VMLINUX --index-dir DIR --jobs 2
    python bench/profile.py --summarise FILE

Samples every process of the tree (`py-spy record --subprocesses`), then prints seconds per
function, inclusive and self, per process role: the parent ("main"), its threads, and the pool
workers (stacks that pass through multiprocessing's `_process_worker`). Seconds are samples
divided by the rate, so they are CPU-bound time only when the process was running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _frame(text: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)"; keep "function file.py".
    name, _, where = text.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} {file}".strip()


def summarise(raw: Path, rate: float, top: int) -> str:
    inclusive: dict[str, Counter[str]] = {}
    own: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        names = [_frame(f) for f in frames]
        if any(n.startswith("_process_worker ") for n in names):
            role = "worker"
        elif names and names[0].startswith("Thread._bootstrap"):
            role = "parent threads"
        else:
            role = "parent main"
        totals[role] += count
        seen = set()
        for n in names:
            if n not in seen:
                inclusive.setdefault(role, Counter())[n] += count
                seen.add(n)
        if names:
            own.setdefault(role, Counter())[names[-1]] += count
    out = []
    for role in ("parent main", "parent threads", "worker"):
        if role not in totals:
            continue
        out.append(f"== {role}: {totals[role] / rate:.1f} s sampled")
        out.append("   inclusive:")
        # Frames on every stack of the role (the entry points) say nothing.
        common = [f for f, c in inclusive[role].items() if c == totals[role]]
        for frame in common:
            del inclusive[role][frame]
        for frame, samples in inclusive[role].most_common(top):
            out.append(f"   {samples / rate:8.1f} s  {frame}")
        out.append("   self:")
        for frame, samples in own[role].most_common(top):
            out.append(f"   {samples / rate:8.1f} s  {frame}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50, help="samples per second")
    ap.add_argument("--raw", type=Path, help="keep py-spy's raw stacks in this file")
    ap.add_argument("--top", type=int, default=25, help="functions per list")
    ap.add_argument("--summarise", type=Path, metavar="FILE", help="only summarise a raw file")
    ap.add_argument("command", nargs="*", help="klp-lsp arguments (after --)")
    args = ap.parse_args()
    if args.summarise:
        print(summarise(args.summarise, args.rate, args.top))
        return
    if not args.command:
        ap.error("give the klp-lsp command to profile after --")
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    raw = args.raw or Path(tempfile.mkstemp(prefix="klp-profile-", suffix=".txt")[1])
    cmd = ["py-spy", "record", "--subprocesses", "--format", "raw", "-r", str(int(args.rate))]
    cmd += ["-o", str(raw), "--", sys.executable, "-m", "klp_lsp", *args.command]
    subprocess.run(
        cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "server")}
    )
    print(summarise(raw, args.rate, args.top))
    if args.raw is None:
        raw.unlink()


if __name__ == "__main__":
    main()
