"""Sanity checks of the committed fixture kernels against tests/fixtures/README.md.

The binaries are built by tests/fixtures/build.sh; these tests only read them,
with readelf where it is installed.
"""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BUILD = FIXTURES / "build"
ARCHES = ("x86_64", "arm64")
READELF = shutil.which("readelf")

needs_readelf = pytest.mark.skipif(READELF is None, reason="readelf (binutils) is not installed")


@dataclass(frozen=True, slots=True)
class Sym:
    """One row of `readelf -sW`, with the section index resolved to a name."""

    name: str
    value: int
    size: int
    type: str
    bind: str
    section: str


def _readelf(*args: str) -> str:
    assert READELF is not None
    return subprocess.run([READELF, "-W", *args], check=True, capture_output=True, text=True).stdout


@cache
def _section_names(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)", _readelf("-S", str(path)), re.M):
        names[m.group(1)] = m.group(2)
    return names


@cache
def _symbols(path: Path) -> tuple[Sym, ...]:
    sections = _section_names(path)
    rows = []
    for line in _readelf("-s", str(path)).splitlines():
        f = line.split()
        if len(f) != 8 or not f[0][:-1].isdigit():
            continue
        _, value, size, typ, bind, _vis, ndx, name = f
        rows.append(Sym(name, int(value, 16), int(size, 0), typ, bind, sections.get(ndx, ndx)))
    return tuple(rows)


def _funcs(path: Path, name: str) -> list[Sym]:
    return [s for s in _symbols(path) if s.name == name and s.type == "FUNC"]


def _value(path: Path, name: str) -> int:
    (sym,) = [s for s in _symbols(path) if s.name == name]
    return sym.value


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("rel", ["vmlinux", "demo.ko", "demo.ko.xz", "demo.ko.zst", "System.map"])
def test_committed_file_exists(arch: str, rel: str) -> None:
    path = BUILD / arch / rel
    assert path.is_file() and path.stat().st_size > 0, path


@pytest.mark.parametrize("arch", ARCHES)
def test_compressed_modules_match(arch: str) -> None:
    ko = (BUILD / arch / "demo.ko").read_bytes()
    assert lzma.decompress((BUILD / arch / "demo.ko.xz").read_bytes()) == ko
    zstandard = pytest.importorskip("zstandard")
    reader = zstandard.ZstdDecompressor().stream_reader((BUILD / arch / "demo.ko.zst").read_bytes())
    assert reader.read() == ko


# (arch, file, symbol, bind, section, count) as catalogued in tests/fixtures/README.md.
CATALOGUE = [
    *(
        (arch, "vmlinux", name, bind, section, count)
        for arch in ARCHES
        for name, bind, section, count in [
            ("demo_hash", "LOCAL", ".text", 2),
            ("demo_req_cost.isra.0", "LOCAL", ".text", 1),
            ("demo_check_len.isra.0", "LOCAL", ".text", 1),
            ("demo_req_mode.constprop.0.isra.0", "LOCAL", ".text", 1),
            ("demo_lookup.part.0", "LOCAL", ".text", 1),
            ("demo_lookup", "GLOBAL", ".text", 1),
            ("demo_entry", "GLOBAL", ".text", 1),
            ("demo_entry_alias", "GLOBAL", ".text", 1),
            ("demo_arch_setup", "GLOBAL", ".text", 1),
            ("demo_notrace_count", "GLOBAL", ".text", 1),
            ("demo_noinstr_enter", "GLOBAL", ".text", 1),
            ("demo_lib_step", "LOCAL", ".text", 1),
            ("demo_lib_sum", "GLOBAL", ".text", 1),
            ("demo_op", "GLOBAL", ".text", 1),
            ("demo_kick", "GLOBAL", ".text", 1),
            ("demo_bug", "GLOBAL", ".text", 1),
            ("panic", "GLOBAL", ".text", 1),
            ("start_kernel", "GLOBAL", ".init.text", 1),
            ("demo_setup", "LOCAL", ".init.text", 1),
            ("demo_late_init", "LOCAL", ".init.text", 1),
        ]
    ),
    ("x86_64", "vmlinux", "demo_lookup.part.0.cold", "LOCAL", ".text", 1),
    ("x86_64", "vmlinux", "demo_check_len.isra.0.cold", "LOCAL", ".text", 1),
    ("x86_64", "vmlinux", "demo_bug.cold", "LOCAL", ".text", 1),
    ("x86_64", "vmlinux", "__do_sys_demo_getcount", "LOCAL", ".text", 1),
    ("x86_64", "vmlinux", "__x64_sys_demo_getcount", "GLOBAL", ".text", 1),
    ("x86_64", "vmlinux", "__ia32_sys_demo_getcount", "GLOBAL", ".text", 1),
    ("x86_64", "vmlinux", "__x64_sys_demo_ctl", "GLOBAL", ".text", 1),
    ("x86_64", "vmlinux", "__ia32_sys_demo_ctl", "GLOBAL", ".text", 1),
    ("x86_64", "vmlinux", "demo_bitmap_weight", "GLOBAL", ".text", 1),
    ("x86_64", "vmlinux", "__sw_hweight64", "GLOBAL", ".text", 1),
    ("arm64", "vmlinux", "__arm64_sys_demo_getcount", "GLOBAL", ".text", 1),
    ("arm64", "vmlinux", "__arm64_sys_demo_ctl", "GLOBAL", ".text", 1),
    *(
        (arch, "demo.ko", name, bind, section, count)
        for arch in ARCHES
        for name, bind, section, count in [
            ("demo_hash", "LOCAL", ".text", 2),
            ("demo_mod_probe", "GLOBAL", ".text", 1),
            ("demo_util_count", "GLOBAL", ".text", 1),
            ("demo_mod_init", "LOCAL", ".init.text", 1),
            ("init_module", "GLOBAL", ".init.text", 1),
            ("demo_mod_exit", "LOCAL", ".exit.text", 1),
            ("cleanup_module", "GLOBAL", ".exit.text", 1),
        ]
    ),
]


@needs_readelf
@pytest.mark.parametrize(("arch", "file", "name", "bind", "section", "count"), CATALOGUE)
def test_catalogued_symbol(
    arch: str, file: str, name: str, bind: str, section: str, count: int
) -> None:
    syms = _funcs(BUILD / arch / file, name)
    assert len(syms) == count, syms
    assert all(s.bind == bind and s.section == section for s in syms), syms


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    "name",
    [
        # Origins with no out-of-line copy: fully inlined, or only their clones exist.
        "demo_account",
        "demo_account_twice",
        "demo_mix32",
        "demo_req_cost",
        "demo_check_len",
        "demo_req_mode",
    ],
)
def test_origin_without_symbol(arch: str, name: str) -> None:
    assert _funcs(BUILD / arch / "vmlinux", name) == []


@needs_readelf
@pytest.mark.parametrize(
    ("arch", "names"),
    [
        ("x86_64", ["demo_entry", "demo_entry_alias"]),
        ("arm64", ["demo_entry", "demo_entry_alias"]),
        (
            "x86_64",
            ["__do_sys_demo_getcount", "__x64_sys_demo_getcount", "__ia32_sys_demo_getcount"],
        ),
    ],
)
def test_aliases_share_an_address(arch: str, names: list[str]) -> None:
    vmlinux = BUILD / arch / "vmlinux"
    assert len({_funcs(vmlinux, n)[0].value for n in names}) == 1


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
def test_module_aliases_share_an_address(arch: str) -> None:
    ko = BUILD / arch / "demo.ko"
    assert _funcs(ko, "init_module")[0].value == _funcs(ko, "demo_mod_init")[0].value
    assert _funcs(ko, "cleanup_module")[0].value == _funcs(ko, "demo_mod_exit")[0].value


@needs_readelf
@pytest.mark.parametrize(("arch", "elf_type"), [("x86_64", "EXEC"), ("arm64", "DYN")])
def test_elf_types(arch: str, elf_type: str) -> None:
    assert re.search(rf"Type:\s+{elf_type} ", _readelf("-h", str(BUILD / arch / "vmlinux")))
    assert re.search(r"Type:\s+REL ", _readelf("-h", str(BUILD / arch / "demo.ko")))


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("file", ["vmlinux", "demo.ko"])
def test_build_id_note(arch: str, file: str) -> None:
    assert "NT_GNU_BUILD_ID" in _readelf("-n", str(BUILD / arch / file))


@needs_readelf
@pytest.mark.parametrize(("arch", "records"), [("x86_64", 43), ("arm64", 41)])
def test_mcount_table_size(arch: str, records: int) -> None:
    vmlinux = BUILD / arch / "vmlinux"
    start, stop = _value(vmlinux, "__start_mcount_loc"), _value(vmlinux, "__stop_mcount_loc")
    assert (stop - start) // 8 == records


@needs_readelf
def test_arm64_mcount_table_is_relocated_by_rela_dyn() -> None:
    vmlinux = BUILD / "arm64" / "vmlinux"
    start, stop = _value(vmlinux, "__start_mcount_loc"), _value(vmlinux, "__stop_mcount_loc")
    offsets = [
        int(m.group(1), 16)
        for m in re.finditer(
            r"^([0-9a-f]{16})\s+\S+\s+R_AARCH64_RELATIVE", _readelf("-r", str(vmlinux)), re.M
        )
    ]
    assert len([o for o in offsets if start <= o < stop]) == (stop - start) // 8


@needs_readelf
@pytest.mark.parametrize(
    ("arch", "section"),
    [("x86_64", "__mcount_loc"), ("arm64", "__patchable_function_entries")],
)
def test_module_ftrace_sections(arch: str, section: str) -> None:
    names = set(_section_names(BUILD / arch / "demo.ko").values())
    assert {section, f".rela{section}", ".modinfo", ".gnu.linkonce.this_module"} <= names


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
def test_modinfo(arch: str) -> None:
    dump = _readelf("-p", ".modinfo", str(BUILD / arch / "demo.ko"))
    assert "name=demo" in dump and "license=GPL" in dump


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
def test_dwarf_versions_per_cu(arch: str) -> None:
    info = _readelf("--debug-dump=info", str(BUILD / arch / "vmlinux"))
    versions: dict[str, int] = {}
    version = 0
    for line in info.splitlines():
        if m := re.match(r"\s+Version:\s+(\d+)", line):
            version = int(m.group(1))
        elif version and (m := re.search(r"DW_AT_name\s*:.*?:?\s(\S+\.[cS])$", line)):
            versions[m.group(1)] = version
            version = 0
    assert versions["kernel/demo_sched.c"] == 4
    assert versions["kernel/demo_core.c"] == 5
    assert versions["lib/demo_lib.c"] == 5
