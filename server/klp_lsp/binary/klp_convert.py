"""Livepatch relocations: rewrite a built module's references to kernel-internal symbols.

The kernel's module loader resolves only exported symbols. A livepatch module reaches the rest
(static functions and variables, non-exported globals) through the format of
Documentation/livepatch/module-elf-format.rst: relocations against such symbols move to
`.klp.rela.<obj>.<section>` sections (SHF_ALLOC | SHF_RELA_LIVEPATCH, applied by livepatch, not
by the loader) and the symbols become `.klp.sym.<obj>.<name>,<sympos>` with st_shndx
SHN_LIVEPATCH, which the loader's `simplify_symbols` skips (kernel/module/main.c). This is what
klp-convert and kpatch-build's create-klp-module do; it needs no kernel changes on 6.1.

An ET_REL file has no segments, so the rewrite keeps every existing byte where it is and appends
the new contents (string tables, shortened `.rela*` sections, the `.klp.rela.*` sections) and a new
section header table at the end; symbol indices do not change, which the livepatch relocations
rely on (module-elf-format.rst, section 4.1).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.binary.elf import SHF_ALLOC, SHN_UNDEF, SHT_RELA, SHT_SYMTAB, ElfBinary, Section
from klp_lsp.errors import BinaryFormatError

# include/uapi/linux/elf.h
SHN_LIVEPATCH = 0xFF20
SHF_RELA_LIVEPATCH = 0x00100000
SHF_INFO_LINK = 0x40

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")

KLP_SYM_PREFIX = ".klp.sym."
KLP_RELA_PREFIX = ".klp.rela."


@dataclass(frozen=True, slots=True)
class KlpTarget:
    """Where a livepatch symbol resolves: a symbol of the running kernel or of one module."""

    object: str  # "vmlinux" or a module name
    name: str  # the symbol's name in that object
    sympos: int  # 0 when unique in the object, else its 1-based kallsyms position

    @property
    def symbol_name(self) -> str:
        """The `.klp.sym.<obj>.<name>,<sympos>` name (module-elf-format.rst, section 4.2)."""
        return f"{KLP_SYM_PREFIX}{self.object}.{self.name},{self.sympos}"


@dataclass(frozen=True, slots=True)
class Reference:
    """One relocation of a module against an undefined symbol."""

    symbol: str
    section: str  # the section the relocation patches, e.g. ".text", "__jump_table"
    offset: int
    type: int


@dataclass(frozen=True, slots=True)
class KlpSection:
    """One `.klp.rela.*` section written by `convert`."""

    name: str
    target: str
    relocations: int


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """What `convert` changed."""

    symbols: tuple[tuple[str, str], ...]  # (old undefined name, new .klp.sym name)
    sections: tuple[KlpSection, ...]


def iter_undefined_references(path: Path) -> list[Reference]:
    """Every relocation of an allocated section against an undefined, named symbol."""
    raw = elf_bytes(path)
    with ElfBinary.open(path) as elf:
        _require_relocatable(elf)
        symbols = {s.symtab_index: s for s in elf.iter_symbols()}
        sections = elf.sections
        out: list[Reference] = []
        for rela in _alloc_relas(elf):
            target = sections[rela.info]
            for offset, info, _addend in _RELA.iter_unpack(_rela_bytes(raw, rela)):
                sym = symbols.get(info >> 32)
                if sym is not None and sym.shndx == SHN_UNDEF and sym.name:
                    out.append(Reference(sym.name, target.name, offset, info & 0xFFFFFFFF))
        return out


def convert(src: Path, dst: Path, targets: Mapping[str, KlpTarget]) -> ConvertResult:
    """Write `src` to `dst` with every relocation against `targets`' keys made a klp relocation.

    `targets` maps undefined symbol names of `src` to where they resolve. A relocation lands in
    `.klp.rela.<obj>.<section>` for the object of its symbol: kernel/livepatch/core.c
    `klp_resolve_symbols` refuses vmlinux symbols in a module's section, and applies vmlinux
    sections when the patch module loads, module sections when that module is loaded.
    """
    with ElfBinary.open(src) as elf:
        _require_relocatable(elf)
        raw = bytearray(elf_bytes(src))
        ehdr = _EHDR.unpack_from(raw, 0)
        sections = list(elf.sections)
        symtab = next((s for s in sections if s.type == SHT_SYMTAB), None)
        if symtab is None:
            raise BinaryFormatError(f"{src}: no symbol table")
        strtab = sections[symtab.link]
        shstrtab_index = ehdr[13]
        undefined = {
            s.symtab_index: s.name
            for s in elf.iter_symbols()
            if s.shndx == SHN_UNDEF and s.name in targets
        }
        missing = sorted(set(targets) - set(undefined.values()))
        if missing:
            raise BinaryFormatError(
                f"{src}: not undefined symbols of this module: {', '.join(missing)}"
            )

        # New symbol names, appended to the string table.
        strings = bytearray(raw[strtab.offset : strtab.offset + strtab.size])
        renamed: list[tuple[str, str]] = []
        new_symtab = bytearray(raw[symtab.offset : symtab.offset + symtab.size])
        for index, name in sorted(undefined.items()):
            new_name = targets[name].symbol_name
            name_off = len(strings)
            strings += new_name.encode() + b"\0"
            _, _, other, _, value, size = _SYM.unpack_from(new_symtab, index * _SYM.size)
            # Global binding (undefined symbols are already), type NOTYPE as klp-convert writes.
            _SYM.pack_into(
                new_symtab,
                index * _SYM.size,
                name_off,
                (1 << 4) | 0,
                other,
                SHN_LIVEPATCH,
                value,
                size,
            )
            renamed.append((name, new_name))

        # Split every allocated section's relocations into kept ones and klp ones per object.
        kept: dict[int, bytes] = {}
        klp: dict[tuple[str, int], bytearray] = {}
        for rela in _alloc_relas(elf):
            data = _rela_bytes(raw, rela)
            keep = bytearray()
            for entry in _RELA.iter_unpack(data):
                sym = entry[1] >> 32
                if sym in undefined:
                    obj = targets[undefined[sym]].object
                    klp.setdefault((obj, rela.info), bytearray()).extend(_RELA.pack(*entry))
                else:
                    keep.extend(_RELA.pack(*entry))
            if len(keep) != len(data):
                kept[rela.index] = bytes(keep)

        shstrtab = sections[shstrtab_index]
        names = bytearray(raw[shstrtab.offset : shstrtab.offset + shstrtab.size])
        out = raw
        new_headers = [
            list(_SHDR.unpack_from(raw, ehdr[6] + i * _SHDR.size)) for i in range(len(sections))
        ]

        def append(data: bytes, align: int) -> int:
            pad = (-len(out)) % max(align, 1)
            out.extend(bytes(pad))
            at = len(out)
            out.extend(data)
            return at

        for index, data in kept.items():
            h = new_headers[index]
            h[4] = append(data, 8)
            h[5] = len(data)
        new_headers[symtab.index][4] = append(bytes(new_symtab), 8)
        written: list[KlpSection] = []
        for (obj, target_index), entries in sorted(klp.items()):
            target = sections[target_index]
            name = f"{KLP_RELA_PREFIX}{obj}.{target.name}"
            name_off = len(names)
            names += name.encode() + b"\0"
            offset = append(bytes(entries), 8)
            new_headers.append(
                [
                    name_off,
                    SHT_RELA,
                    SHF_ALLOC | SHF_RELA_LIVEPATCH | SHF_INFO_LINK,
                    0,
                    offset,
                    len(entries),
                    symtab.index,
                    target_index,
                    8,
                    _RELA.size,
                ]
            )
            written.append(KlpSection(name, target.name, len(entries) // _RELA.size))
        h = new_headers[strtab.index]
        h[4] = append(bytes(strings), 1)
        h[5] = len(strings)
        h = new_headers[shstrtab_index]
        h[4] = append(bytes(names), 1)
        h[5] = len(names)
        shoff = append(b"".join(_SHDR.pack(*h) for h in new_headers), 8)
        header = list(ehdr)
        header[6] = shoff
        header[12] = len(new_headers)
        _EHDR.pack_into(out, 0, *header)
    _write_atomically(dst, bytes(out))
    return ConvertResult(tuple(renamed), tuple(written))


def elf_bytes(path: Path) -> bytes:
    """The bytes of an ELF file, with a one-line error naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise BinaryFormatError(f"{path}: cannot read: {e.strerror or e}") from e


def _require_relocatable(elf: ElfBinary) -> None:
    if elf.elf_type != "ET_REL":
        raise BinaryFormatError(f"{elf.path}: not a relocatable module (ET_REL)")


def _alloc_relas(elf: ElfBinary) -> list[Section]:
    """SHT_RELA sections (not livepatch ones) whose target section is allocated."""
    sections = elf.sections
    out = []
    for s in sections:
        if s.type != SHT_RELA or s.flags & SHF_RELA_LIVEPATCH:
            continue
        if not 0 < s.info < len(sections):
            raise BinaryFormatError(f"{elf.path}: {s.name} targets a missing section {s.info}")
        if sections[s.info].is_alloc:
            out.append(s)
    return out


def _rela_bytes(raw: bytes | bytearray, s: Section) -> bytes:
    """The whole entries of a SHT_RELA section, from the file bytes."""
    size = s.size - s.size % _RELA.size
    if s.offset + size > len(raw):
        raise BinaryFormatError(f"{s.name}: relocations lie past the end of the file")
    return bytes(raw[s.offset : s.offset + size])


def _write_atomically(dst: Path, data: bytes) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    except OSError as e:
        raise BinaryFormatError(f"{dst}: cannot write: {e.strerror or e}") from e
