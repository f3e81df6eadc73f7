"""The livepatch relocation rewrite (binary/klp_convert.py), checked with readelf.

On the committed demo.ko (x86_64), `readelf -rW` shows one relocation against `demo_lookup`
(R_X86_64_PLT32 at .text+0x54, addend -4, from demo_mod_probe's call); arm64 has it as
R_AARCH64_CALL26 at .text+0x94.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, fixture_binary

from klp_lsp.binary.klp_convert import KlpTarget, convert, iter_undefined_references
from klp_lsp.errors import BinaryFormatError


def readelf(*args: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("arch", ARCHES)
def test_convert_moves_relocations_and_marks_symbols(arch: str, tmp_path: Path) -> None:
    src = fixture_binary(arch, "demo.ko")
    refs = [r for r in iter_undefined_references(src) if r.symbol == "demo_lookup"]
    assert len(refs) == 1 and refs[0].section == ".text"
    before = readelf("-r", str(src))
    out = tmp_path / "demo.ko"
    result = convert(src, out, {"demo_lookup": KlpTarget("vmlinux", "demo_lookup", 0)})
    assert result.symbols == (("demo_lookup", ".klp.sym.vmlinux.demo_lookup,0"),)
    assert [(s.name, s.target, s.relocations) for s in result.sections] == [
        (".klp.rela.vmlinux..text", ".text", 1)
    ]
    sections = readelf("-S", str(out))
    line = next(x for x in sections.splitlines() if ".klp.rela.vmlinux..text" in x)
    # RELA, 24-byte entries, flags A (alloc), I (info link), o (SHF_RELA_LIVEPATCH, OS-specific).
    assert " RELA " in line and " 18 AIo " in line
    symbols = readelf("-s", str(out))
    sym = next(x for x in symbols.splitlines() if x.endswith(".klp.sym.vmlinux.demo_lookup,0"))
    assert "NOTYPE  GLOBAL DEFAULT OS [0xff20]" in sym
    after = readelf("-r", str(out))
    klp = after.split("'.klp.rela.vmlinux..text'", 1)[1]
    assert ".klp.sym.vmlinux.demo_lookup,0" in klp
    # The relocation left .rela.text: one entry fewer there, none lost.
    count = before.count("\n0") - after.split("'.klp.rela")[0].count("\n0")
    assert count == 1
    # Every other section is unchanged byte for byte.
    for name in (".text", ".data", ".modinfo", "__mcount_loc", "__patchable_function_entries"):
        if name in sections:
            assert readelf("-x", name, str(out)) == readelf("-x", name, str(src)).replace(
                str(src), str(out)
            )


def test_convert_rejects_what_is_not_there(tmp_path: Path) -> None:
    src = fixture_binary("x86_64", "demo.ko")
    with pytest.raises(BinaryFormatError, match="not undefined symbols of this module: nope"):
        convert(src, tmp_path / "x.ko", {"nope": KlpTarget("vmlinux", "nope", 0)})
    with pytest.raises(BinaryFormatError, match="not a relocatable module"):
        convert(fixture_binary("x86_64"), tmp_path / "x.ko", {})
    bad = tmp_path / "bad.ko"
    bad.write_bytes(src.read_bytes()[:200])
    with pytest.raises(BinaryFormatError, match=r"bad\.ko"):
        convert(bad, tmp_path / "x.ko", {})
