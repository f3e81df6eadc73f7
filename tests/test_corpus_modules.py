"""Opt-in: the ELF reader over every module of the Debian corpus (1,121 amd64, 992 arm64 `.ko`).

With `KLP_CORPUS_DIR` set. Each module is opened and read the way `build_index` reads it:
build-id, livepatch object name, symbols and FUNC symbols (which must lie inside their
sections), ftrace records, the kallsyms order, its DWARF sections relocated, and every compile
unit's header and top DIE. None may raise: the bounds `reliability.md` promises must never
refuse a real kernel file. The arm64 set runs too when the corpus has it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from klp_fixtures import corpus_dir

from klp_lsp.binary.discovery import iter_module_files
from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData
from klp_lsp.binary.elf import ElfBinary

CORPUS = corpus_dir()
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.slow,
    pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus"),
]

# How many modules of each architecture the Debian 6.1.192-2 cloud corpus has (KERNEL_FACTS).
_EXPECTED = {"amd64": 1121, "arm64": 992}


def _read(path: Path) -> tuple[int, int, int]:
    """Read `path` as the builder does; (FUNC symbols, ftrace records, compile units)."""
    with ElfBinary.open(path) as binary:
        assert binary.kind == "module", path
        assert binary.build_id and binary.object_name
        functions = binary.iter_function_symbols()
        records = binary.get_mcount_records()
        binary.iter_kallsyms_symbols()
        dwarf = DwarfData(binary.get_dwarf_sections(DWARF_SECTIONS), binary.arch, str(path))
        units = [dwarf.get_unit_header(o) for o in dwarf.iter_unit_offsets()]
        return len(functions), len(records), len(units)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_every_corpus_module_reads_without_error(arch: str) -> None:
    assert CORPUS is not None
    root = CORPUS / arch / "modules"
    if not root.is_dir():
        pytest.skip(f"no {arch} modules in the corpus")
    modules = sorted(iter_module_files(root))
    assert len(modules) == _EXPECTED[arch]
    started = time.monotonic()
    failures = []
    totals = [0, 0, 0]
    for path in modules:
        try:
            for i, n in enumerate(_read(path)):
                totals[i] += n
        except Exception as e:  # every failure is listed, not just the first
            failures.append(f"{path.relative_to(root)}: {type(e).__name__}: {e}")
    print(
        f"{arch}: {len(modules)} modules, {totals[0]} FUNC symbols, {totals[1]} ftrace records,"
        f" {totals[2]} compile units in {time.monotonic() - started:.0f} s"
        f" (pid {os.getpid()})"
    )
    assert not failures, "\n".join(failures)
