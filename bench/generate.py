"""Wall time of `klp-lsp generate --try` for a one-function patch, phase by phase.

    python bench/generate.py [--corpus DIR] [--index-dir DIR] [--repeat 3] [--out FILE.json]

The patch is tests/patches/debian-6.1/bench-cmdline_proc_show.patch against the Debian corpus
kernel (6.1.192-2, `KLP_CORPUS_DIR`), built against linux-headers-6.1.0-56-cloud-amd64. Each
repetition runs the whole pipeline in a fresh output directory, as `generate --try` does: check
and the module source, kbuild, the klp relocation rewrite, verify, and try (boot the kernel's
image in qemu, load the module, wait for the transition, `cat /proc/cmdline`). The vmlinux index
is built first and not timed (indexing has its own benchmark, bench/run.py). The goal of issue 15
is under 30 s in all on this 2-core machine; kpatch-build needs two kernel builds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "server"))

from klp_lsp.generate.pipeline import GenerateOptions, Generator  # noqa: E402
from klp_lsp.livepatch.verify import verify_module  # noqa: E402
from klp_lsp.session import Session  # noqa: E402
from klp_lsp.vm.kernel import try_in_session  # noqa: E402

PATCH = ROOT / "tests/patches/debian-6.1/bench-cmdline_proc_show.patch"
DEFAULT_CORPUS = os.environ.get(
    "KLP_CORPUS_DIR", str(Path.home() / ".cache/klp-corpus/debian-6.1.192-2")
)
HEADERS = Path("/usr/src/linux-headers-6.1.0-56-cloud-amd64")


def one_run(session: Session, source: Path, out: Path) -> dict[str, Any]:
    """Time each phase of one `generate --try`; raise if a phase fails."""
    text = PATCH.read_text()
    patches = [(PATCH.name, text)]
    phases: dict[str, float] = {}
    start = time.monotonic()
    with session.open() as indexes:
        gen = Generator(indexes, GenerateOptions(out, source, headers=HEADERS, build=True))
        try:
            t = time.monotonic()
            result = gen.generate(patches)
            phases["generate"] = time.monotonic() - t
            t = time.monotonic()
            gen.build(result)
            phases["build+relocations"] = time.monotonic() - t
        finally:
            gen.close()
    if result.module is None:
        raise RuntimeError(f"build failed: {[p.message for p in result.problems]}")
    assert result.build is not None
    phases["kbuild"] = result.build.seconds
    t = time.monotonic()
    verified = verify_module(result.module, session, patches=patches, source_root=source)
    phases["verify"] = time.monotonic() - t
    if verified.has_errors:
        raise RuntimeError("verify reports errors")
    t = time.monotonic()
    tried = try_in_session(session, [result.module], run="cat /proc/cmdline")
    phases["try"] = time.monotonic() - t
    total = time.monotonic() - start
    output = tried.run.output if tried.run is not None else ""
    if not tried.ok or "klp-lsp-was-here" not in output:
        raise RuntimeError(f"try failed: {tried}")
    return {
        "total_s": round(total, 2),
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "accel": tried.accel,
        "guest_output": output.strip(),
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path(DEFAULT_CORPUS))
    ap.add_argument("--index-dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    vmlinux = args.corpus / "amd64" / "vmlinux"
    if not vmlinux.exists() or not HEADERS.is_dir():
        print(f"needs {vmlinux} and {HEADERS}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="klp-gen-bench-") as tmp:
        index_dir = args.index_dir or Path(tmp) / "index"
        session = Session([vmlinux], None, index_dir, jobs=2)
        session.ensure_indexes()  # not timed
        runs = []
        for i in range(args.repeat):
            run = one_run(session, args.corpus / "src", Path(tmp) / f"out{i}")
            runs.append(run)
            print(json.dumps(run), flush=True)
    totals = [r["total_s"] for r in runs]
    summary = {
        "patch": str(PATCH.relative_to(ROOT)),
        "runs": runs,
        "median_total_s": statistics.median(totals),
        "goal_s": 30,
    }
    print(
        f"generate + build + verify + try: median {summary['median_total_s']:.1f} s over"
        f" {len(runs)} runs (goal < 30 s); load {runs[-1]['load_avg_1min']:.1f}"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
