"""Reading livepatch modules: their replace records, klp relocations, modinfo and imports.

A livepatch `.ko` is an ET_REL module. What it replaces is data behind relocations, so every
pointer below is read as the S + A of the relocation at its place, in the module's synthetic
layout (`binary/elf.py`), never from the (zero) bytes in the file. Three shapes are read:

- static `struct klp_patch` / `klp_object[]` / `klp_func[]` (include/linux/livepatch.h), as
  kbuild builds samples/livepatch, klp-convert output and the klp-lsp skeleton. The arrays are
  found from the one relocation every patch has, `klp_patch.mod = THIS_MODULE` at offset 0, and
  each link is checked (objs and funcs point into writable data, `old_name` into a string,
  `new_func` into code), so another struct whose first member is an owner module (a
  `file_operations`) is not taken for a patch. The external members come first in every kernel
  since 5.1: `klp_patch` {mod, objs, states, replace}, `klp_object` {name, funcs, callbacks},
  `klp_func` {old_name, new_func, old_sympos}; the array strides are read from the arrays'
  symbol sizes, or from the DWARF struct sizes when a symbol has none;
- kpatch-build's `.kpatch.funcs` (kmod/patch/kpatch-patch.h `struct kpatch_patch_func`:
  new_addr, new_size, old_addr, old_size, sympos, name, objname; 56 bytes);
- klp-build's `klp_object_ext` / `klp_func_ext` sections (`__klp_objects`/`__klp_funcs`, or
  `.init.klp_objects`/`.init.klp_funcs`; include/linux/livepatch_external.h).

`.klp.rela.<obj>.<section>` sections and `.klp.sym.<obj>.<name>,<sympos>` symbols are parsed as
kernel/livepatch/core.c `klp_apply_section_relocs` and `klp_resolve_symbols` do.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.binary.elf import SHF_EXECINSTR, SHT_RELA, ElfBinary, Section
from klp_lsp.errors import BinaryFormatError, NotLivepatchModule
from klp_lsp.model import KernelModuleAbi, KlpFormat, KlpFunc, KlpRelocation, LivepatchModule

SHF_WRITE = 0x1
# include/uapi/linux/elf.h
SHF_RELA_LIVEPATCH = 0x00100000
SHN_LIVEPATCH = 0xFF20
SHN_ABS = 0xFFF1

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# 64-bit absolute relocation types: R_X86_64_64, R_AARCH64_ABS64. Pointers in data are these.
_ABS64 = {"x86_64": 1, "aarch64": 257}

# The external members of klp_func (old_name, new_func, old_sympos) and of klp_object (name,
# funcs, four callbacks and post_unpatch_enabled): no entry is smaller.
_KLP_FUNC_MIN = 24
_KLP_OBJECT_MIN = 56

# kpatch-patch.h `struct kpatch_patch_func`: 5 unsigned longs, 2 pointers.
_KPATCH_FUNC_SIZE = 56
_KPATCH_FIELDS = {"new_addr": 0, "sympos": 32, "name": 40, "objname": 48}
# livepatch_external.h `struct klp_func_ext`: old_name, new_func, sympos.
_KLP_FUNC_EXT_SIZE = 24
_KLP_BUILD_SECTIONS = (("__klp_objects", "__klp_funcs"), (".init.klp_objects", ".init.klp_funcs"))

# kernel/livepatch/core.c klp_resolve_symbols: sscanf(".klp.sym.%55[^.].%511[^,],%lu").
_KLP_SYM = re.compile(r"\.klp\.sym\.([^.]{1,55})\.([^,]{1,511}),(\d+)$")
# klp_apply_section_relocs: sscanf(".klp.rela.%55[^.]"); the rest names the patched section.
_KLP_RELA = re.compile(r"\.klp\.rela\.([^.]{1,55})\.(.*)$")

# include/linux/module.h MODULE_NAME_LEN on 64-bit: `struct modversion_info` is 64 bytes.
_MODVERSION_INFO_SIZE = 64


@dataclass(frozen=True, slots=True)
class _Pointer:
    """A pointer-sized field of data: where it points (S + A), or None when nothing does."""

    value: int
    symbol: str


class _Reader:
    """The relocated view of one module's allocated data, for walking the klp arrays."""

    def __init__(self, binary: ElfBinary) -> None:
        self.binary = binary
        self.arch = binary.arch
        self.problems: list[str] = []
        self._struct_sizes: dict[str, int | None] = {}
        symbols = binary.iter_symbols()
        values = [0] * (len(symbols) + 1)
        for s in symbols:
            if s.section is not None or s.shndx == SHN_ABS:
                values[s.symtab_index] = s.address
        # Every ordinary relocation of an allocated section, by the address it patches.
        self.pointers: dict[int, _Pointer] = {}
        for target in binary.sections:
            if not target.is_alloc or not target.size:
                continue
            for rela in binary.iter_relocation_sections(target):
                for r in binary.get_relocations(rela):
                    if r.type != _ABS64[self.arch]:
                        continue
                    sym = binary.get_symbol_by_index(r.symbol)
                    name = "" if sym is None else sym.name
                    value = (values[r.symbol] if r.symbol < len(values) else 0) + r.addend
                    self.pointers[target.address + r.offset] = _Pointer(value, name)
        self.functions = {s.address: s.name for s in binary.iter_function_symbols()}
        self.objects = [
            s
            for s in symbols
            if s.type == 1 and s.section is not None  # STT_OBJECT
        ]

    def struct_size(self, name: str) -> int | None:
        """`sizeof(struct name)` from the module's DWARF, None without DWARF or the struct."""
        if name not in self._struct_sizes:
            size = None
            if self.binary.has_dwarf:
                from klp_lsp.binary.dwarf import DwarfData

                wanted = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_str_offsets",
                          ".debug_line_str", ".debug_addr")  # fmt: skip
                dwarf = DwarfData(self.binary.get_dwarf_sections(wanted), self.arch)
                size = dwarf.find_struct_size(name)
            self._struct_sizes[name] = size
        return self._struct_sizes[name]

    def section_at(self, address: int) -> Section | None:
        return self.binary.find_section_at(address)

    def is_code(self, address: int) -> bool:
        s = self.section_at(address)
        return s is not None and bool(s.flags & SHF_EXECINSTR)

    def is_string(self, address: int) -> bool:
        s = self.section_at(address)
        return s is not None and not s.flags & (SHF_WRITE | SHF_EXECINSTR)

    def is_writable_data(self, address: int) -> bool:
        s = self.section_at(address)
        return s is not None and bool(s.flags & SHF_WRITE) and not s.flags & SHF_EXECINSTR

    def where(self, address: int) -> str:
        s = self.section_at(address)
        return f"{address:#x}" if s is None else f"{s.name}+{address - s.address:#x}"

    def u64(self, address: int) -> int:
        value: int = _U64.unpack(self.binary.read_code(address, 8))[0]
        return value

    def string(self, address: int) -> str | None:
        return self.binary.read_cstring(address, 512)

    def object_size_at(self, address: int) -> int | None:
        """The size of the OBJECT symbol that starts at `address`, if one does and is sized."""
        sizes = [s.size for s in self.objects if s.address == address and s.size]
        return max(sizes) if sizes else None

    def function_at(self, address: int) -> str | None:
        return self.functions.get(address)


def _stride(
    reader: _Reader, start: int, anchor: int, minimum: int, is_anchor: Callable[[int], bool]
) -> int | None:
    """The size of one entry of a zero-terminated array of structs at `start`.

    Every entry has a relocation at `anchor` (funcs: `old_name` at 0; objs: `funcs` at 8) whose
    target `is_anchor` accepts, and nothing links the zeroed internal members, so the second
    entry's anchor is one stride further; with a single entry, the array's symbol holds it and
    the terminator.
    """
    size = reader.object_size_at(start)
    end = start + size if size is not None else None
    for address in sorted(reader.pointers):
        offset = address - start - anchor
        if offset < minimum or (end is not None and address >= end):
            continue
        if is_anchor(reader.pointers[address].value):
            if size is None or size % offset == 0:
                return offset
            break
    if size is not None and size % 2 == 0 and size // 2 >= minimum:
        return size // 2
    from_dwarf = reader.struct_size(kind_of(anchor))
    if from_dwarf is not None and from_dwarf >= minimum:
        return from_dwarf
    reader.problems.append(
        f"the {kind_of(anchor)} array at {reader.where(start)} has no usable symbol size;"
        " cannot tell its stride"
    )
    return None


def kind_of(anchor: int) -> str:
    """The struct whose array an anchor offset belongs to (for messages)."""
    return "klp_func" if anchor == 0 else "klp_object"


def _read_klp_patch(reader: _Reader) -> tuple[list[KlpFunc], bool | None] | None:
    """The funcs of a static `klp_patch`, or None when the module has none."""
    binary = reader.binary
    this_module = binary.get_symbol_address("__this_module")
    for address, ptr in sorted(reader.pointers.items()):
        if ptr.symbol != "__this_module" and ptr.value != this_module:
            continue
        section = reader.section_at(address)
        if section is None or section.name == ".gnu.linkonce.this_module":
            continue
        objs = reader.pointers.get(address + 8)
        if objs is None or not reader.is_writable_data(objs.value):
            continue
        found = _read_objects(reader, objs.value)
        if found is None:
            continue
        try:
            replace: bool | None = bool(binary.read_code(address + 24, 1)[0])
        except BinaryFormatError:  # a truncated struct: replace stays unknown
            replace = None
        return found, replace
    return None


def _read_objects(reader: _Reader, start: int) -> list[KlpFunc] | None:
    """Walk `klp_object[]` at `start` (zero-terminated); None when it is not one."""
    stride = _stride(reader, start, 8, _KLP_OBJECT_MIN, reader.is_writable_data)
    if stride is None:
        return None
    out: list[KlpFunc] = []
    for i in range(1024):
        entry = start + i * stride
        funcs = reader.pointers.get(entry + 8)
        name_ptr = reader.pointers.get(entry)
        if funcs is None:
            if name_ptr is None:
                return out  # the terminator
            return None
        if not reader.is_writable_data(funcs.value):
            return None
        name = "vmlinux" if name_ptr is None else reader.string(name_ptr.value)
        if name is None:
            return None
        funcs_read = _read_funcs(reader, funcs.value, name, f"objs[{i}]")
        if funcs_read is None:
            return None
        out.extend(funcs_read)
    return None


def _read_funcs(reader: _Reader, start: int, obj: str, label: str) -> list[KlpFunc] | None:
    stride = _stride(reader, start, 0, _KLP_FUNC_MIN, reader.is_string)
    if stride is None:
        return None
    out: list[KlpFunc] = []
    for i in range(65536):
        entry = start + i * stride
        name_ptr = reader.pointers.get(entry)
        new_ptr = reader.pointers.get(entry + 8)
        if name_ptr is None and new_ptr is None:
            return out
        if name_ptr is None:
            reader.problems.append(
                f"{label}.funcs[{i}] at {reader.where(entry)} has no old_name: the kernel"
                " refuses the patch (klp_init_func: -EINVAL)"
            )
            continue
        found = _func_entry(reader, entry, obj, f"{label}.funcs[{i}]")
        if found is None or (new_ptr is not None and found.new_func_address is None):
            return None
        out.append(found)
    return None


def _func_entry(reader: _Reader, entry: int, obj: str, label: str) -> KlpFunc | None:
    """A `klp_func` or `klp_func_ext` at `entry`: old_name, new_func and sympos come first."""
    name_ptr = reader.pointers.get(entry)
    old_name = None if name_ptr is None else reader.string(name_ptr.value)
    if old_name is None:
        return None
    new_func, new_address = _new_func(reader, reader.pointers.get(entry + 8))
    return KlpFunc(
        object=obj,
        old_name=old_name,
        old_sympos=reader.u64(entry + 16),
        new_func=new_func,
        new_func_address=new_address,
        where=f"{label} at {reader.where(entry)}",
    )


def _new_func(reader: _Reader, ptr: _Pointer | None) -> tuple[str | None, int | None]:
    if ptr is None:
        return None, None
    if not reader.is_code(ptr.value):
        return None, None
    name = reader.function_at(ptr.value)
    return (name if name is not None else reader.where(ptr.value)), ptr.value


def _read_kpatch(reader: _Reader) -> list[KlpFunc] | None:
    """kpatch-build's `.kpatch.funcs` records, or None when the module has none."""
    section = reader.binary.get_section(".kpatch.funcs")
    if section is None:
        return None
    out: list[KlpFunc] = []
    for i in range(section.size // _KPATCH_FUNC_SIZE):
        entry = section.address + i * _KPATCH_FUNC_SIZE
        name = reader.pointers.get(entry + _KPATCH_FIELDS["name"])
        objname = reader.pointers.get(entry + _KPATCH_FIELDS["objname"])
        old_name = None if name is None else reader.string(name.value)
        obj = None if objname is None else reader.string(objname.value)
        if old_name is None or obj is None:
            reader.problems.append(f".kpatch.funcs[{i}] has no readable name or objname")
            continue
        new_func, new_address = _new_func(reader, reader.pointers.get(entry))
        out.append(
            KlpFunc(
                object=obj,
                old_name=old_name,
                old_sympos=reader.u64(entry + _KPATCH_FIELDS["sympos"]),
                new_func=new_func,
                new_func_address=new_address,
                where=f".kpatch.funcs[{i}] at {reader.where(entry)}",
            )
        )
    return out


def _read_klp_build(reader: _Reader) -> list[KlpFunc] | None:
    """klp-build's `klp_object_ext` and `klp_func_ext` records, or None without them."""
    binary = reader.binary
    for objects_name, funcs_name in _KLP_BUILD_SECTIONS:
        objects = binary.get_section(objects_name)
        funcs = binary.get_section(funcs_name)
        if objects is None or funcs is None:
            continue
        # Each object's `funcs` pointer (offset 8) starts its run of func_ext entries; a run
        # ends where the next one starts, so the object struct's tail (callbacks, nr_funcs,
        # which changed between versions) need not be known.
        starts: list[tuple[int, str]] = []
        for address, ptr in reader.pointers.items():
            if not objects.address <= address < objects.address + objects.size:
                continue
            if not funcs.address <= ptr.value < funcs.address + funcs.size:
                continue
            name_ptr = reader.pointers.get(address - 8)
            name = "vmlinux" if name_ptr is None else reader.string(name_ptr.value)
            starts.append((ptr.value, name or "vmlinux"))
        starts.sort()
        out: list[KlpFunc] = []
        for n, (start, obj) in enumerate(starts):
            end = starts[n + 1][0] if n + 1 < len(starts) else funcs.address + funcs.size
            for i in range((end - start) // _KLP_FUNC_EXT_SIZE):
                entry = start + i * _KLP_FUNC_EXT_SIZE
                found = _func_entry(reader, entry, obj, f"{funcs_name}[{i}]")
                if found is not None:
                    out.append(found)
        return out
    return None


def parse_klp_symbol(name: str) -> tuple[str, str, int] | None:
    """(object, symbol, sympos) of a `.klp.sym.<obj>.<name>,<sympos>` name, or None."""
    m = _KLP_SYM.match(name)
    if m is None:
        return None
    return m.group(1), m.group(2), int(m.group(3))


def _read_klp_relocations(binary: ElfBinary) -> list[KlpRelocation]:
    out: list[KlpRelocation] = []
    sections = binary.sections
    for rela in sections:
        if rela.type != SHT_RELA or not rela.name.startswith(".klp.rela."):
            continue
        m = _KLP_RELA.match(rela.name)
        sec_object = None if m is None else m.group(1)
        target = sections[rela.info].name if 0 < rela.info < len(sections) else "?"
        for r in binary.get_relocations(rela):
            sym = binary.get_symbol_by_index(r.symbol)
            sym_name = "" if sym is None else sym.name
            parsed = parse_klp_symbol(sym_name)
            problem = None
            if m is None:
                problem = f"section {rela.name} has an incorrectly formatted name"
            elif not rela.flags & SHF_RELA_LIVEPATCH:
                problem = f"section {rela.name} lacks SHF_RELA_LIVEPATCH: it is never applied"
            elif sym is None or sym.shndx != SHN_LIVEPATCH:
                problem = f"symbol {sym_name or '?'} is not marked as a livepatch symbol"
            elif parsed is None:
                problem = f"symbol {sym_name} has an incorrectly formatted name"
            elif sec_object != "vmlinux" and parsed[0] == "vmlinux":
                problem = (
                    f"invalid access to vmlinux symbol '{parsed[1]}' from module-specific"
                    " livepatch relocation section"
                )
            out.append(
                KlpRelocation(
                    section=rela.name,
                    object=sec_object,
                    target_section=target,
                    offset=r.offset,
                    type=r.type,
                    symbol=sym_name,
                    sym_object=None if parsed is None else parsed[0],
                    sym_name=None if parsed is None else parsed[1],
                    sympos=None if parsed is None else parsed[2],
                    livepatch_symbol=sym is not None and sym.shndx == SHN_LIVEPATCH,
                    problem=problem,
                )
            )
    return out


def _read_versions(binary: ElfBinary) -> list[tuple[str, int]]:
    data = binary.get_section_data("__versions")
    if data is None:
        return []
    raw = bytes(data)
    out = []
    for pos in range(0, len(raw) - _MODVERSION_INFO_SIZE + 1, _MODVERSION_INFO_SIZE):
        crc = _U64.unpack_from(raw, pos)[0]
        name = raw[pos + 8 : pos + _MODVERSION_INFO_SIZE].split(b"\0", 1)[0]
        out.append((name.decode("utf-8", "replace"), crc))
    return out


def _modinfo_pairs(binary: ElfBinary) -> list[tuple[str, str]]:
    data = binary.get_section_data(".modinfo")
    if data is None:
        return []
    out = []
    for entry in bytes(data).split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            out.append((key.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    return out


def read_livepatch_module(path: Path) -> LivepatchModule:
    """Read what a livepatch module replaces; `NotLivepatchModule` if it is not one."""
    with ElfBinary.open(path) as binary:
        if binary.elf_type != "ET_REL" or binary.get_section(".modinfo") is None:
            raise NotLivepatchModule(
                f"{path}: not a kernel module (no .modinfo section in a relocatable object)"
            )
        modinfo = _modinfo_pairs(binary)
        reader = _Reader(binary)
        relocations = _read_klp_relocations(binary)
        fmt: KlpFormat | None = None
        funcs: list[KlpFunc] = []
        replace: bool | None = None
        patch = _read_klp_patch(reader)
        if patch is not None:
            fmt, (funcs, replace) = "klp_patch", patch
        else:
            kpatch = _read_kpatch(reader)
            if kpatch is not None:
                fmt, funcs = "kpatch", kpatch
            else:
                ext = _read_klp_build(reader)
                if ext is not None:
                    fmt, funcs = "klp-build", ext
        marked = any(k == "livepatch" for k, _ in modinfo)
        if fmt is None and not marked and not relocations:
            raise NotLivepatchModule(
                f"{path}: not a livepatch module (no klp_patch, .kpatch.funcs or klp-build"
                " records, no .klp.rela sections, and no livepatch=Y in .modinfo)"
            )
        problems = list(reader.problems)
        if fmt is None:
            problems.append(
                "marked as a livepatch module but no klp_patch, .kpatch.funcs or klp-build"
                " records were found: nothing to check"
            )
        imports = sorted(
            {s.name for s in binary.iter_symbols() if s.shndx == 0 and s.name and s.type != 4}
        )
        return LivepatchModule(
            path=str(path),
            name=binary.object_name,
            arch=binary.arch,
            build_id=binary.build_id,
            format=fmt,
            modinfo=tuple(modinfo),
            funcs=tuple(funcs),
            relocations=tuple(relocations),
            imports=tuple(imports),
            versions=tuple(_read_versions(binary)),
            replace=replace,
            has_dwarf=binary.has_dwarf,
            problems=tuple(dict.fromkeys(problems)),
        )


def read_kernel_module_abi(vmlinux: Path) -> KernelModuleAbi:
    """The vermagic, symbol CRCs and exports a vmlinux checks modules against."""
    with ElfBinary.open(vmlinux) as binary:
        raw = binary.get_symbol_bytes("vermagic")
        vermagic = None if raw is None else raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        crcs: dict[str, int] = {}
        exports: dict[str, bool] = {}
        livepatch = False
        for s in binary.iter_symbols():
            if s.name.startswith("__crc_"):
                if s.shndx == SHN_ABS:
                    # Before Linux 4.19 a CRC was the value of an absolute symbol.
                    crcs[s.name[6:]] = s.address & 0xFFFFFFFF
                elif s.section is not None:
                    crcs[s.name[6:]] = _U32.unpack(binary.read_code(s.address, 4))[0]
            elif s.name.startswith("__ksymtab_") and s.section in ("__ksymtab", "__ksymtab_gpl"):
                exports[s.name[10:]] = s.section == "__ksymtab_gpl"
            elif s.name == "klp_enable_patch" and s.section is not None:
                livepatch = True
        release = vermagic.split(" ", 1)[0] if vermagic else None
        return KernelModuleAbi(vermagic, release, crcs, exports, livepatch)


def module_exports(path: Path) -> dict[str, bool]:
    """The symbols a module exports (`__ksymtab_<name>`), each mapped to GPL-only."""
    with ElfBinary.open(path) as binary:
        return {
            s.name[10:]: s.section == "__ksymtab_gpl"
            for s in binary.iter_symbols()
            if s.name.startswith("__ksymtab_") and s.section in ("__ksymtab", "__ksymtab_gpl")
        }
