"""Patch-mapping benchmark: `Checker.check_patches` in-process on a 50-hunk Debian patch.

Builds the same patch as `bench/lsp_bench.py` (one `barrier();` after the opening brace of
functions picked from a warm index) and times the first and second check, with the
region-only parse (today's `ChangeMapper`) and with whole-file parses (the reference path).

    python bench/patch_bench.py [--corpus DIR] [--index-dir DIR] [--hunks 50] [--repeat 3]

The index must exist already; the benchmark never builds it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "server"))
sys.path.insert(0, str(REPO / "bench"))

from lsp_bench import DEFAULT_CORPUS, make_patch, pick_functions  # noqa: E402

from klp_lsp.index.locate import default_index_dir  # noqa: E402
from klp_lsp.index.query import IndexSet  # noqa: E402
from klp_lsp.lsp.indexing import existing_indexes  # noqa: E402
from klp_lsp.patch.check import Checker  # noqa: E402


def timed_checks(indexes: IndexSet, patch: str, src: Path, whole_files: bool) -> list[float]:
    """Seconds of a first and a second `check_patches` on one fresh Checker."""
    checker = Checker(indexes)
    # The Checker makes its mapper; switching it to whole files is for this comparison only.
    checker._mapper.whole_files = whole_files
    out: list[float] = []
    for _ in range(2):
        t = time.perf_counter()
        checker.check_patches([("bench.patch", patch)], src)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--index-dir", type=Path, default=default_index_dir())
    ap.add_argument("--hunks", type=int, default=50)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    vmlinux = args.corpus / "amd64" / "vmlinux"
    src = args.corpus / "src"
    ready = existing_indexes([vmlinux], args.index_dir)
    if ready is None:
        raise SystemExit(f"no complete index of {vmlinux} in {args.index_dir}")
    index_files = [r.index_path for r in ready]
    patch = make_patch(src, pick_functions(index_files, src, args.functions, args.seed), args.hunks)
    files = sum(1 for line in patch.splitlines() if line.startswith("--- a/"))
    print(f"patch: {patch.count(chr(10) + '@@ ')} hunks in {files} files")
    indexes = IndexSet.open(index_files)
    try:
        # Warm what both paths share (CU tables, the page cache), so neither pays for it.
        Checker(indexes).check_patches([("bench.patch", patch)], src)
        for label, whole in (("whole-file parse (before)", True), ("region parse (after)", False)):
            runs = [timed_checks(indexes, patch, src, whole) for _ in range(args.repeat)]
            first = min(r[0] for r in runs)
            second = min(r[1] for r in runs)
            print(f"{label:28} first check {first:6.3f} s   second check {second:6.3f} s")
    finally:
        indexes.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
