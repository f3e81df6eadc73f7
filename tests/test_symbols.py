"""sympos and aliases: plain values, then a differential test against `readelf -sW`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from klp_lsp.analysis.symbols import assign_sympos, find_symbol_start, group_aliases
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.model import Binding, ElfSymbol

FIXTURES = Path(__file__).parent / "fixtures" / "build"


def sym(name: str, address: int, binding: Binding = "local") -> ElfSymbol:
    return ElfSymbol(name, address, 16, ".text", binding)


def test_unique_name_has_sympos_zero() -> None:
    assert assign_sympos([sym("a", 1), sym("b", 2)]) == {("a", 1): 0, ("b", 2): 0}


def test_positions_follow_the_given_order() -> None:
    got = assign_sympos([sym("jhash", 30), sym("x", 5), sym("jhash", 10), sym("jhash", 20)])
    assert got == {("jhash", 30): 1, ("x", 5): 0, ("jhash", 10): 2, ("jhash", 20): 3}


def test_a_global_with_the_same_name_counts() -> None:
    # klp_find_callback compares names only, so a global `user_destroy` and a static one in
    # another CU make both ambiguous (Debian 6.1 amd64 has exactly this).
    got = assign_sympos([sym("user_destroy", 1, "global"), sym("user_destroy", 2)])
    assert got == {("user_destroy", 1): 1, ("user_destroy", 2): 2}


def test_group_aliases() -> None:
    symbols = [sym("__x64_sys_fork", 8), sym("__do_sys_fork", 8), sym("alone", 9)]
    symbols.append(sym("__ia32_sys_fork", 8, "global"))
    assert group_aliases(symbols) == {8: ("__do_sys_fork", "__ia32_sys_fork", "__x64_sys_fork")}


def readelf_sympos(path: Path) -> dict[tuple[str, int], int]:
    """sympos computed from `readelf -sW` alone: FUNC symbols counted among all named, defined
    symbols of allocated sections, by address (what kallsyms lists for a linked object)."""
    sections = subprocess.run(
        ["readelf", "-SW", str(path)], capture_output=True, text=True, check=True
    ).stdout
    alloc: set[str] = set()
    for line in sections.splitlines():
        if line.strip().startswith("[") and "]" in line:
            index, _, rest = line.strip()[1:].partition("]")
            fields = rest.split()
            if index.strip().isdigit() and len(fields) >= 7 and "A" in fields[6]:
                alloc.add(index.strip())
    table = subprocess.run(
        ["readelf", "-sW", str(path)], capture_output=True, text=True, check=True
    ).stdout
    entries: list[tuple[int, str, str]] = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[0].endswith(":") and fields[6] in alloc:
            if fields[3] in ("SECTION", "FILE") or fields[7].startswith(("$", ".L")):
                continue
            entries.append((int(fields[1], 16), fields[7], fields[3]))
    entries.sort(key=lambda e: e[0])
    by_name: dict[str, list[int]] = defaultdict(list)
    for address, name, _ in entries:
        by_name[name].append(address)
    out: dict[tuple[str, int], int] = {}
    for address, name, kind in entries:
        if kind == "FUNC":
            places = by_name[name]
            out[(name, address)] = 0 if len(places) == 1 else places.index(address) + 1
    return out


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf")
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_sympos_matches_readelf_on_fixture_vmlinux(arch: str) -> None:
    path = FIXTURES / arch / "vmlinux"
    with ElfBinary.open(path) as binary:
        ours = assign_sympos(binary.iter_kallsyms_symbols())
        functions = binary.iter_function_symbols()
    expected = readelf_sympos(path)
    assert {(s.name, s.address): ours[(s.name, s.address)] for s in functions} == expected
    # Two static `demo_hash` functions live in two CUs of the fixture kernel.
    assert sorted(v for (name, _), v in ours.items() if name == "demo_hash") == [1, 2]


CORPUS = os.environ.get("KLP_CORPUS_DIR")


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_corpus_sympos(arch: str) -> None:
    with ElfBinary.open(Path(str(CORPUS)) / arch / "vmlinux") as binary:
        kallsyms = binary.iter_kallsyms_symbols()
        functions = binary.iter_function_symbols()
    sympos = assign_sympos(kallsyms)
    jhash = sorted(s.address for s in functions if s.name == "jhash")
    assert [sympos[("jhash", a)] for a in jhash] == list(range(1, 18))
    # A static and a global FUNC `user_destroy` count together in kallsyms.
    assert sorted(v for (name, _), v in sympos.items() if name == "user_destroy") == [1, 2]
    # `verbose` is a local FUNC and, on amd64 only (CONFIG_KALLSYMS_ALL), also a data symbol.
    expected_verbose = [1, 2] if arch == "amd64" else [0]
    assert sorted(v for (name, _), v in sympos.items() if name == "verbose") == expected_verbose
    aliases = group_aliases(functions)
    if arch == "amd64":
        assert ("__do_sys_fork", "__ia32_sys_fork", "__x64_sys_fork") in aliases.values()


def test_find_symbol_start() -> None:
    starts = {0x1000, 0x2000}
    assert find_symbol_start(0x1000, starts, "x86_64") == 0x1000
    assert find_symbol_start(0x1008, starts, "x86_64") is None
    assert find_symbol_start(0x1008, starts, "aarch64") == 0x1000  # after the two NOPs
    assert find_symbol_start(0x2000, starts, "aarch64") == 0x2000  # notrace: no NOPs
    assert find_symbol_start(0x1004, starts, "aarch64") is None
