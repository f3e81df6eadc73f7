"""The ELF layer on the fixture kernels, gcc-built objects, corrupt input and the corpus."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
from klp_fixtures import fixture_binary

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import BinaryFormatError, UnsupportedArchitecture

FIXTURES = Path(__file__).parent / "fixtures" / "build"
ARCHES = ["x86_64", "arm64"]
FILES = ["vmlinux", "demo.ko", "demo.ko.xz", "demo.ko.zst"]
needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf")


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", FILES)
def test_fixture_properties(arch: str, name: str) -> None:
    with ElfBinary.open(FIXTURES / arch / name) as binary:
        assert binary.arch == ("x86_64" if arch == "x86_64" else "aarch64")
        assert binary.has_dwarf
        if name == "vmlinux":
            assert binary.elf_type == ("ET_EXEC" if arch == "x86_64" else "ET_DYN")
            assert (binary.kind, binary.object_name) == ("vmlinux", "vmlinux")
        else:
            assert binary.elf_type == "ET_REL"
            assert (binary.kind, binary.object_name) == ("module", "demo")
            assert binary.get_modinfo()["name"] == "demo"


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", ["vmlinux", "demo.ko"])
def test_build_id_matches_readelf(arch: str, name: str) -> None:
    path = FIXTURES / arch / name
    shown = [
        line.split()[-1] for line in readelf("-n", str(path)).splitlines() if "Build ID" in line
    ]
    with ElfBinary.open(path) as binary:
        if shown:
            assert binary.build_id == shown[0]
        else:
            assert binary.build_id.startswith("sha1:")
            assert binary.build_id == ElfBinary.open(path).build_id


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("compressed", ["demo.ko.xz", "demo.ko.zst"])
def test_compressed_module_is_the_same_object(arch: str, compressed: str) -> None:
    with (
        ElfBinary.open(FIXTURES / arch / "demo.ko") as plain,
        ElfBinary.open(FIXTURES / arch / compressed) as packed,
    ):
        assert packed.build_id == plain.build_id
        assert packed.iter_function_symbols() == plain.iter_function_symbols()
        assert packed.get_mcount_records() == plain.get_mcount_records()
        assert packed.get_dwarf_sections() == plain.get_dwarf_sections()


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", ["vmlinux", "demo.ko"])
def test_function_symbols_match_readelf(arch: str, name: str) -> None:
    path = FIXTURES / arch / name
    with ElfBinary.open(path) as binary:
        bases = {s.index: s.address for s in binary.sections}
        names = {s.index: s.name for s in binary.sections}
        ours = {
            (s.name, s.address, s.size, s.section, s.binding)
            for s in binary.iter_function_symbols()
        }
    expected = set()
    for line in readelf("-sW", str(path)).splitlines():
        f = line.split()
        if len(f) == 8 and f[0].endswith(":") and f[3] == "FUNC" and f[6].isdigit():
            index = int(f[6])
            address = int(f[1], 16) + (bases[index] if name != "vmlinux" else 0)
            expected.add((f[7], address, int(f[2]), names[index], f[4].lower()))
    assert ours == expected
    assert len(ours) > 5


@pytest.mark.parametrize("arch", ARCHES)
def test_synthetic_layout_is_aligned_and_disjoint(arch: str) -> None:
    with ElfBinary.open(FIXTURES / arch / "demo.ko") as binary:
        placed = sorted((s for s in binary.sections if s.is_alloc), key=lambda s: s.index)
        end = 0
        for s in placed:
            assert s.address % max(s.align, 1) == 0
            assert s.address >= end
            end = s.address + s.size
        assert all(s.address == 0 for s in binary.sections if not s.is_alloc)
        text = binary.get_section(".text")
        assert text is not None and binary.find_section_at(text.address) == text


@pytest.mark.parametrize("arch", ARCHES)
def test_vmlinux_mcount_records_point_at_ftrace_entries(arch: str) -> None:
    with ElfBinary.open(FIXTURES / arch / "vmlinux") as binary:
        records = binary.get_mcount_records()
        starts = {s.address: s for s in binary.iter_function_symbols()}
        # The records without a FUNC symbol are the overridden `__weak demo_arch_setup` body
        # (kernel/demo_core.c) and `__weak demo_populate_pte` (mm/demo_percpu.c), like the 576
        # such records of Debian's amd64 vmlinux.
        assert len(records - set(starts)) == 2
        assert len(records & set(starts)) >= 10
        for record in records:
            code = binary.read_code(record, 8)
            if arch == "x86_64":
                # `call __fentry__`: e8 and a rel32 that lands on the __fentry__ symbol.
                assert code[0] == 0xE8
                target = record + 5 + struct.unpack("<i", code[1:5])[0]
                assert target == binary.get_symbol_address("__fentry__")
            else:
                assert code == bytes.fromhex("1f2003d5") * 2  # two NOPs
        notrace = [s for s in starts.values() if s.name == "demo_notrace_count"]
        assert notrace and notrace[0].address not in records


@needs_readelf
def test_arm64_vmlinux_table_is_zero_on_disk_and_filled_from_rela_dyn() -> None:
    path = FIXTURES / "arm64" / "vmlinux"
    with ElfBinary.open(path) as binary:
        start = binary.get_symbol_address("__start_mcount_loc")
        stop = binary.get_symbol_address("__stop_mcount_loc")
        assert start is not None and stop is not None and stop > start
        assert binary.read_code(start, stop - start) == bytes(stop - start)
        records = binary.get_mcount_records()
    relative = set()
    for line in readelf("-rW", str(path)).splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == "R_AARCH64_RELATIVE" and start <= int(f[0], 16) < stop:
            relative.add(int(f[3], 16) & ((1 << 64) - 1))  # readelf prints a signed addend
    assert records == relative


@needs_readelf
@pytest.mark.parametrize("arch", ARCHES)
def test_module_mcount_records_match_readelf_relocations(arch: str) -> None:
    path = FIXTURES / arch / "demo.ko"
    section = "__mcount_loc" if arch == "x86_64" else "__patchable_function_entries"
    with ElfBinary.open(path) as binary:
        records = binary.get_mcount_records()
        bases = {s.name: s.address for s in binary.sections}
    expected = set()
    inside = False
    for line in readelf("-rW", str(path)).splitlines():
        if line.startswith("Relocation section"):
            inside = f"'.rela{section}'" in line
        f = line.split()
        if inside and len(f) == 7 and f[5] == "+":
            expected.add(bases[f[4]] + int(f[6], 16))
    assert records == expected and records


def _dwarf(sections: dict[str, bytes], arch: str) -> DWARFInfo:
    def sec(name: str) -> DebugSectionDescriptor | None:
        data = sections.get(name)
        return (
            None
            if data is None
            else DebugSectionDescriptor(io.BytesIO(data), name, None, len(data), 0)
        )

    return DWARFInfo(
        config=DwarfConfig(little_endian=True, default_address_size=8, machine_arch=arch),
        debug_info_sec=sec(".debug_info"),
        debug_aranges_sec=None,
        debug_abbrev_sec=sec(".debug_abbrev"),
        debug_frame_sec=None,
        eh_frame_sec=None,
        debug_str_sec=sec(".debug_str"),
        debug_loc_sec=None,
        debug_ranges_sec=None,
        debug_line_sec=sec(".debug_line"),
        debug_pubtypes_sec=None,
        debug_pubnames_sec=None,
        debug_addr_sec=sec(".debug_addr"),
        debug_str_offsets_sec=sec(".debug_str_offsets"),
        debug_line_str_sec=sec(".debug_line_str"),
        debug_loclists_sec=sec(".debug_loclists"),
        debug_rnglists_sec=sec(".debug_rnglists"),
        debug_sup_sec=None,
        gnu_debugaltlink_sec=None,
        debug_types_sec=None,
    )


def named_low_pcs(binary: ElfBinary) -> dict[str, int]:
    """Name -> DW_AT_low_pc of every named concrete DW_TAG_subprogram."""
    info = _dwarf(binary.get_dwarf_sections(), binary.arch)
    out: dict[str, int] = {}
    for cu in info.iter_CUs():
        for die in cu.iter_DIEs():
            attrs = die.attributes
            if die.tag == "DW_TAG_subprogram" and "DW_AT_low_pc" in attrs and "DW_AT_name" in attrs:
                out[attrs["DW_AT_name"].value.decode()] = attrs["DW_AT_low_pc"].value
    return out


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", ["vmlinux", "demo.ko"])
def test_dwarf_addresses_use_the_same_layout_as_symbols(arch: str, name: str) -> None:
    with ElfBinary.open(FIXTURES / arch / name) as binary:
        symbols = {s.name: s.address for s in binary.iter_function_symbols()}
        low_pcs = named_low_pcs(binary)
    matched = 0
    for fn, low_pc in low_pcs.items():
        if fn in symbols:
            # GCC puts DW_AT_low_pc after the -fpatchable-function-entry NOPs on arm64
            # (measured on Debian's arm64 xfs.ko too: low_pc = symbol + 8).
            assert low_pc - symbols[fn] in ((0,) if arch == "x86_64" else (0, 8)), fn
            matched += 1
    assert matched >= 3


def test_module_call_relocations_resolve_to_functions() -> None:
    with ElfBinary.open(FIXTURES / "x86_64" / "demo.ko") as binary:
        probe = next(s for s in binary.iter_function_symbols() if s.name == "demo_mod_probe")
        relocations = binary.iter_relocations_at(probe.address, probe.size)
    assert any(name == "__fentry__" for _, _, name, _ in relocations)
    assert all(probe.address <= site < probe.address + probe.size for site, _, _, _ in relocations)


def test_kallsyms_tables_absent_outside_a_real_kernel() -> None:
    with ElfBinary.open(FIXTURES / "x86_64" / "vmlinux") as binary:
        assert binary.get_kallsyms() is None


# --- gcc-built objects --------------------------------------------------------------------------

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@needs_gcc
def test_plain_relocatable_object(tmp_path: Path) -> None:
    source = tmp_path / "t.c"
    source.write_text(
        "int g(int x) { return x + 1; }\n"
        "static int s(int x) { return x * 3; }\n"
        "int (*keep)(int) = s;\n"
        'asm(".text\\n.globl nosize\\n.type nosize, @function\\nnosize: ret\\n");\n'
    )
    obj = tmp_path / "t.o"
    subprocess.run(["gcc", "-O2", "-g", "-c", str(source), "-o", str(obj)], check=True)
    with ElfBinary.open(obj) as binary:
        assert (binary.elf_type, binary.kind, binary.object_name) == ("ET_REL", "other", "t.o")
        assert binary.build_id.startswith("sha1:")
        functions = {s.name: s for s in binary.iter_function_symbols()}
        assert functions["nosize"].size == 0  # asm without `.size` is kept
        assert functions["s"].binding == "local" and functions["g"].binding == "global"
        assert binary.get_mcount_records() == frozenset()


# --- bad input ----------------------------------------------------------------------------------


def test_corrupt_inputs(tmp_path: Path) -> None:
    vmlinux = (FIXTURES / "x86_64" / "vmlinux").read_bytes()
    cases: dict[str, bytes] = {
        "empty": b"",
        "text": b"hello, this is not an ELF file at all\n" * 4,
        "header-only": vmlinux[:40],
        "truncated": vmlinux[: len(vmlinux) // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BinaryFormatError, match=str(tmp_path / name)):
            ElfBinary.open(tmp_path / name)
    with pytest.raises(BinaryFormatError, match="cannot read"):
        ElfBinary.open(tmp_path / "missing")
    (tmp_path / "bad.ko.xz").write_bytes(b"not xz")
    with pytest.raises(BinaryFormatError, match="xz"):
        ElfBinary.open(tmp_path / "bad.ko.xz")
    (tmp_path / "bad.ko.zst").write_bytes(b"not zstd")
    with pytest.raises(BinaryFormatError, match="zstd"):
        ElfBinary.open(tmp_path / "bad.ko.zst")


def test_unsupported_architectures(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "x86_64" / "vmlinux").read_bytes())
    arm32 = bytearray(data)
    struct.pack_into("<H", arm32, 18, 40)  # e_machine = EM_ARM
    (tmp_path / "arm").write_bytes(arm32)
    with pytest.raises(UnsupportedArchitecture, match="machine 40"):
        ElfBinary.open(tmp_path / "arm")
    elf32 = bytearray(data)
    elf32[4] = 1
    (tmp_path / "elf32").write_bytes(elf32)
    with pytest.raises(UnsupportedArchitecture, match="32-bit"):
        ElfBinary.open(tmp_path / "elf32")


def test_read_code_outside_sections_is_an_error() -> None:
    with ElfBinary.open(FIXTURES / "x86_64" / "vmlinux") as binary:
        with pytest.raises(BinaryFormatError, match="no section holds"):
            binary.read_code(0x10, 4)
        assert binary.find_section_at(0x10) is None


# --- the Debian kernel corpus (opt-in) ----------------------------------------------------------

CORPUS = os.environ.get("KLP_CORPUS_DIR")
corpus = pytest.mark.skipif(not CORPUS, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")

# Figures from /work/shared/KERNEL_FACTS.md, re-measured with this code.
EXPECTED = {
    "amd64": {
        "functions": 46421,
        "local": 23833,
        "global": 22423,
        "weak": 165,
        "records": 37697,
        "orphans": 576,
    },
    "arm64": {
        "functions": 44883,
        "local": 23348,
        "global": 21278,
        "weak": 257,
        "records": 38577,
        "orphans": 292,
    },
}


@pytest.mark.corpus
@corpus
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_corpus_vmlinux(arch: str) -> None:
    with ElfBinary.open(Path(str(CORPUS)) / arch / "vmlinux") as binary:
        assert binary.kind == "vmlinux" and binary.has_dwarf
        t0 = time.perf_counter()
        functions = binary.iter_function_symbols()
        t1 = time.perf_counter()
        records = binary.get_mcount_records()
        t2 = time.perf_counter()
        bindings = {
            b: sum(1 for s in functions if s.binding == b) for b in ("local", "global", "weak")
        }
        starts = {s.address for s in functions}
        got = {
            "functions": len(functions),
            **bindings,
            "records": len(records),
            "orphans": len(records - starts),
        }
        assert got == EXPECTED[arch]
        assert t1 - t0 < 10 and t2 - t1 < 5
        vfs_read = next(s for s in functions if s.name == "vfs_read")
        assert vfs_read.address in records
        kallsyms = binary.get_kallsyms()
        assert kallsyms is not None and len(kallsyms) == (87347 if arch == "amd64" else 44722)


@pytest.mark.corpus
@corpus
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_corpus_xfs_module(arch: str) -> None:
    with ElfBinary.open(Path(str(CORPUS)) / arch / "modules/fs/xfs/xfs.ko") as binary:
        assert (binary.kind, binary.object_name) == ("module", "xfs")
        t0 = time.perf_counter()
        sections = binary.get_dwarf_sections()
        assert time.perf_counter() - t0 < 10
        assert ".debug_info" in sections and ".debug_rnglists" in sections
        functions = binary.iter_function_symbols()
        records = binary.get_mcount_records()
        # One record per `.rela__mcount_loc` / `.rela__patchable_function_entries` entry
        # (`readelf -rW`), including the function at address 0 of the synthetic layout.
        assert len(records) == (2645 if arch == "amd64" else 2652)
        assert records <= {s.address for s in functions}


def _corrupt_first_debug_info_rela(
    src: Path, dst: Path, *, offset: int | None, rtype: int | None
) -> None:
    """Copy `src` to `dst` with the first `.rela.debug_info` entry changed."""
    from elftools.elf.elffile import ELFFile

    data = bytearray(src.read_bytes())
    with src.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".rela.debug_info")
        start = section["sh_offset"]
    r_offset, r_info, r_addend = struct.unpack_from("<QQq", data, start)
    if offset is not None:
        r_offset = offset
    if rtype is not None:
        r_info = (r_info & ~0xFFFFFFFF) | rtype
    struct.pack_into("<QQq", data, start, r_offset, r_info, r_addend)
    dst.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("offset", "rtype", "message"),
    [
        (1 << 40, None, "relocation at 0x10000000000 is out of range"),
        (None, 999, "unsupported relocation type 999"),
    ],
)
def test_bad_module_relocation_is_a_one_line_error(
    tmp_path: Path, offset: int | None, rtype: int | None, message: str
) -> None:
    bad = tmp_path / "demo.ko"
    _corrupt_first_debug_info_rela(
        fixture_binary("x86_64", "demo.ko"), bad, offset=offset, rtype=rtype
    )
    with ElfBinary.open(bad) as binary, pytest.raises(BinaryFormatError) as raised:
        binary.get_dwarf_sections()
    assert str(raised.value) == f"{bad}: .rela.debug_info: {message}"
