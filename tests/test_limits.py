"""Resource limits (README "Limits"): oversized input gets one clear line within seconds, in a
process that may not map more than 1 GiB, so an attempt to hold gigabytes would fail here.

Each case runs the real command line (`python -m klp_lsp`) under `RLIMIT_AS` and a timeout.
"""

from __future__ import annotations

import json
import lzma
import os
import resource
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from klp_fixtures import FIXTURES, ROOT, fixture_binary

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.limits import MAX_LINE_CHARS, MAX_PATCH_BYTES

_MEMORY = 1 << 30
_SECONDS = 60  # generous on a loaded machine; the cases take one or two seconds
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SH_TYPE, _SH_FLAGS, _SH_SIZE = 4, 8, 32
_TERA = 1 << 40


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY, _MEMORY))


def _klp(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args],
        capture_output=True,
        text=True,
        timeout=_SECONDS,
        preexec_fn=_limited,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def _with_section_field(
    src: Path, dst: Path, section: str, field: int, value: int, width: int = 8
) -> Path:
    """A copy of `src` with one field of `section`'s header set to `value`."""
    with ElfBinary.open(src) as binary:
        s = binary.get_section(section)
        assert s is not None
        index = s.index
    data = bytearray(src.read_bytes())
    shoff = struct.unpack_from("<Q", data, 40)[0]
    data[shoff + index * _SHDR.size + field : shoff + index * _SHDR.size + field + width] = (
        value.to_bytes(width, "little")
    )
    dst.write_bytes(bytes(data))
    return dst


def _show_error(binary: Path, function: str = "demo_lookup") -> str:
    """The one stderr line of `klp-lsp show` refusing `binary`."""
    code, _out, err, _seconds = _klp(
        "show", function, "--binary", str(binary), "--index-dir", str(binary.parent / "idx")
    )
    return _one_line_error(code, err, binary)


def _one_line_error(code: int, err: str, binary: Path) -> str:
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"klp-lsp: {binary}: "), line
    return line


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_section_claiming_2_40_bytes_of_file(tmp_path: Path, arch: str) -> None:
    """`.debug_info` (PROGBITS) says it holds 2^40 bytes: refused when the file is opened."""
    binary = _with_section_field(
        fixture_binary(arch), tmp_path / "vmlinux", ".debug_info", _SH_SIZE, _TERA
    )
    assert "lies past the end of the file" in _show_error(binary)


def test_nobits_debug_section_claiming_2_40_bytes(tmp_path: Path) -> None:
    """The same as SHT_NOBITS (no file bytes to check): it must never be zero-filled."""
    binary = _with_section_field(
        fixture_binary("x86_64"), tmp_path / "a", ".debug_str", _SH_TYPE, 8, width=4
    )
    binary = _with_section_field(binary, tmp_path / "vmlinux", ".debug_str", _SH_SIZE, _TERA)
    line = _show_error(binary)
    assert "section .debug_str (0x10000000000 bytes) is larger than 1024 MiB" in line


def test_nobits_bss_claiming_2_40_bytes_is_never_read(tmp_path: Path) -> None:
    """A huge `.bss` is fine as long as nothing reads it: the index is built."""
    binary = _with_section_field(
        fixture_binary("x86_64"), tmp_path / "vmlinux", ".bss", _SH_SIZE, _TERA
    )
    code, out, err, _seconds = _klp(
        "show", "demo_lookup", "--binary", str(binary), "--json", "--index-dir", str(tmp_path)
    )
    assert code == 0, err
    assert '"name": "demo_lookup"' in out


def test_compressed_section_claiming_2_40_bytes(tmp_path: Path) -> None:
    """SHF_COMPRESSED with an Elf64_Chdr whose ch_size is 2^40: refused before inflating."""
    src = fixture_binary("x86_64")
    binary = _with_section_field(src, tmp_path / "a", ".debug_str", _SH_FLAGS, 0x800)
    with ElfBinary.open(src) as elf:
        s = elf.get_section(".debug_str")
        assert s is not None
        offset = s.offset
    data = bytearray(binary.read_bytes())
    data[offset : offset + 24] = struct.pack("<IIQQ", 1, 0, _TERA, 1)  # ELFCOMPRESS_ZLIB
    binary = tmp_path / "vmlinux"
    binary.write_bytes(bytes(data))
    line = _show_error(binary)
    assert "section .debug_str (ch_size 0x10000000000) is larger than 1024 MiB" in line


def test_zstd_section_larger_than_its_ch_size(tmp_path: Path) -> None:
    """A zstd-compressed section (objcopy --compress-debug-sections=zstd) whose Elf64_Chdr
    claims 16 bytes: refused once the 17th is inflated, the file named once."""
    packed = tmp_path / "packed"
    subprocess.run(
        ["objcopy", "--compress-debug-sections=zstd", str(fixture_binary("x86_64")), str(packed)],
        check=True,
    )
    with ElfBinary.open(packed) as elf:
        s = elf.get_section(".debug_str")
        assert s is not None and s.flags & 0x800  # SHF_COMPRESSED
        offset = s.offset
    data = bytearray(packed.read_bytes())
    assert struct.unpack_from("<I", data, offset)[0] == 2  # ELFCOMPRESS_ZSTD
    struct.pack_into("<Q", data, offset + 8, 16)  # ch_size
    binary = tmp_path / "vmlinux"
    binary.write_bytes(bytes(data))
    line = _show_error(binary)
    assert line == (
        f"klp-lsp: {binary}: section .debug_str: the decompressed data is larger than 16 bytes"
        " (its ch_size)"
    )


def test_compile_units_over_their_budget(tmp_path: Path) -> None:
    """$KLP_LSP_CU_BUDGET=0: every compile unit gives up at once; each is named as unreadable
    with the budget as the reason, and `show` still answers from the ELF symbols."""
    vmlinux = fixture_binary("x86_64")
    code, out, err, _seconds = _klp(
        "show", "demo_lookup", "--binary", str(vmlinux), "--json",
        "--index-dir", str(tmp_path), env={"KLP_LSP_CU_BUDGET": "0"},
    )  # fmt: skip
    assert code == 0, err
    units = json.loads(out)["unreadable_units"]
    with ElfBinary.open(vmlinux) as elf:
        from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData

        names = [u.name for u in DwarfData(elf.get_dwarf_sections(DWARF_SECTIONS), elf.arch, "")
                 .list_units()]  # fmt: skip
    assert [u["cu"] for u in units] == names
    assert all(
        u["reason"].endswith("gave up after 0 s (the per-compile-unit budget, $KLP_LSP_CU_BUDGET)")
        for u in units
    )


def test_module_layout_past_the_address_space(tmp_path: Path) -> None:
    """A module `.bss` of 2^64 - 1 bytes would put the synthetic layout past 2^64."""
    binary = _with_section_field(
        fixture_binary("x86_64", "demo.ko"), tmp_path / "demo.ko", ".bss", _SH_SIZE, (1 << 64) - 1
    )
    assert "past 2^64" in _show_error(binary, "demo_mod_probe")


@pytest.mark.parametrize("suffix", [".xz", ".zst"])
def test_compressed_module_larger_than_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """A `.ko.xz`/`.ko.zst` bomb stops at the limit, streamed to disk, never held in memory.

    The limit is lowered to 64 MiB here so the test inflates only that much (it is 1 GiB).
    """
    import zstandard

    from klp_lsp.binary import elf
    from klp_lsp.errors import BinaryFormatError

    size = 80 << 20
    binary = tmp_path / f"bomb.ko{suffix}"
    if suffix == ".xz":
        binary.write_bytes(lzma.compress(bytes(size), preset=0, check=lzma.CHECK_CRC32))
    else:
        binary.write_bytes(zstandard.ZstdCompressor().compress(bytes(size)))
    monkeypatch.setattr(elf, "MAX_MODULE_BYTES", 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(BinaryFormatError, match="decompressed data is larger than 64 MiB"):
            ElfBinary.open(binary)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB held while inflating"


def _patch_args(patch: Path, tmp_path: Path) -> list[str]:
    return [
        "check",
        str(patch),
        "--binary",
        str(fixture_binary("x86_64")),
        "--source",
        str(FIXTURES / "kernel"),
        "--index-dir",
        str(tmp_path / "idx"),
        "--no-background",
    ]


def test_patch_of_100_mb(tmp_path: Path) -> None:
    demo = (FIXTURES / "patches" / "demo.patch").read_bytes()
    patch = tmp_path / "big.patch"
    with patch.open("wb") as f:
        while f.tell() < 100 << 20:
            f.write(demo * 64)
    code, _out, err, _seconds = _klp(*_patch_args(patch, tmp_path))
    line = _one_line_error(code, err, patch)
    assert f"klp-lsp reads patches of up to {MAX_PATCH_BYTES >> 20} MiB" in line


def test_patch_with_a_line_of_1_mb(tmp_path: Path) -> None:
    lines = (FIXTURES / "patches" / "demo.patch").read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("+\tif (bytes > 8192)"))
    lines.insert(at, "+" + "x" * (1 << 20) + "\n")
    patch = tmp_path / "long.patch"
    patch.write_text("".join(lines))
    code, _out, err, _seconds = _klp(*_patch_args(patch, tmp_path))
    line = _one_line_error(code, err, patch)
    assert f"line {at + 1}: the line is {(1 << 20) + 1} characters long" in line
    assert str(MAX_LINE_CHARS) in line


def test_endless_patch_input(tmp_path: Path) -> None:
    """/dev/zero as a patch: read up to the limit, then refused."""
    code, _out, err, _seconds = _klp(*_patch_args(Path("/dev/zero"), tmp_path))
    assert "klp-lsp reads patches of up to" in _one_line_error(code, err, Path("/dev/zero"))
