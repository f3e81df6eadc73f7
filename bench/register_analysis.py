"""What the register analysis costs, with and without its fast path, on a real vmlinux.

    python bench/register_analysis.py [--arch amd64|arm64] [--every N] [--corpus DIR]

In one process, on every Nth compile unit (all by default): the DWARF scan, then the register
analysis twice, with the fast path (as `klp-lsp index` runs it) and exhaustive (every function
through the CFG and liveness), each timed in CPU seconds (`time.process_time`, steadier than
wall time on a shared machine), and checks that both give the same register uses and
dependents. The index runs the analysis in `--jobs` workers beside the scan, so its share of
the index's wall time is about the fast-path CPU divided by the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))

from klp_lsp.binary.disasm import clear_encoding_cache  # noqa: E402
from klp_lsp.binary.dwarf import DwarfData  # noqa: E402
from klp_lsp.binary.elf import ElfBinary  # noqa: E402
from klp_lsp.index.builder import _list_units  # noqa: E402
from klp_lsp.index.regfacts import RegisterAnalyser  # noqa: E402

DEFAULT_CORPUS = os.environ.get("KLP_CORPUS_DIR", "/root/.cache/klp-corpus/debian-6.1.192-2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="amd64", choices=("amd64", "arm64"))
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=Path(DEFAULT_CORPUS))
    args = parser.parse_args()
    vmlinux = args.corpus / args.arch / "vmlinux"
    with ElfBinary.open(vmlinux) as binary:
        dwarf = DwarfData(binary.get_dwarf_sections(), binary.arch)
        units = _list_units(dwarf)
        symbols = binary.iter_function_symbols()
        started = time.process_time()
        facts = [dwarf.scan_unit(u.unit.offset) for u in units[:: args.every]]
        scan = time.process_time() - started
        out: dict[str, object] = {
            "vmlinux": str(vmlinux),
            "cus": len(facts),
            "dwarf_scan_cpu_s": round(scan, 2),
        }
        results = {}
        for exhaustive in (False, True):
            clear_encoding_cache()  # both from a cold start, as an index worker begins
            analyser = RegisterAnalyser(binary, units, symbols, exhaustive=exhaustive)
            started = time.process_time()
            results[exhaustive] = analyser.analyse(facts)
            key = "exhaustive" if exhaustive else "fast_path"
            out[f"{key}_cpu_s"] = round(time.process_time() - started, 2)
            out[f"{key}_detail_decodes"] = analyser.decoder.detail_decodes
            if not exhaustive:
                out["functions"] = len(results[False][0])
                out["fast_path_functions"] = analyser.fast_path_functions
        out["dependents"] = len(results[False][1])
        out["identical"] = results[False] == results[True]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
