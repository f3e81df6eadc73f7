"""What a Dask worker costs an index build: one binary indexed by the same
`build_index(jobs=1)` call in a plain process and in a one-worker LocalCluster, with Dask's
statistical profiler off, and without the nanny's MALLOC_TRIM_THRESHOLD_ (docs/fleet.md).

    python bench/dask_overhead.py VMLINUX [--modes plain dask dask-noprof dask-notrim plain dask]

Each mode is a fresh process, run one after the other, each into a fresh index directory;
prints one line per mode: wall and CPU seconds of the build inside the process that ran it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def index_once(binary: str, out: str) -> str:
    from klp_lsp.index.builder import build_index

    wall, cpu = time.monotonic(), time.process_time()
    build_index(Path(binary), Path(out), jobs=1)
    return f"wall {time.monotonic() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s"


def run_mode(mode: str, binary: str) -> str:
    out = tempfile.mkdtemp(prefix="klp-overhead-")
    if mode == "plain":
        return index_once(binary, out)
    import dask
    from distributed import Client, LocalCluster

    config: dict[str, object] = {}
    if mode == "dask-noprof":
        config["distributed.worker.profile.enabled"] = False
    if mode == "dask-notrim":
        config["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = None
    with (
        dask.config.set(config),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        result: str = client.submit(index_once, binary, out, pure=False).result()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--modes", nargs="+", default=["plain", "dask", "dask-noprof",
                        "dask-notrim", "plain", "dask"])  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"{args.one}: {run_mode(args.one, args.binary)}", flush=True)
        return
    for mode in args.modes:
        load = os.getloadavg()[0]
        done = subprocess.run(
            [sys.executable, __file__, args.binary, "--one", mode],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(f"{done.stdout.strip()} (load {load:.2f})", flush=True)


if __name__ == "__main__":
    main()
