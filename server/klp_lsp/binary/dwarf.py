"""Fast DWARF scanner: compile units, subprograms, inline sites and parameter locations.

It decodes only the DIEs the index needs. At a CU's top level every subtree that is not a
DW_TAG_subprogram is skipped through DW_AT_sibling (GCC emits it on DIEs with children) or through
its abbreviation's skip plan; inside a subprogram it descends only into formal parameters,
lexical blocks, inlined subroutines and nested subprograms. pyelftools supplies the DWARF
constants; its DIE objects are far too slow for the 16.8 M DIEs of a distro vmlinux.

`DwarfData` takes section bytes (already relocated for modules) and keeps no state that a worker
process could not rebuild from the same bytes, so `scan_unit` can run in a process pool per CU.

What the records hold:
- every DW_TAG_subprogram DIE of the CU (top level and nested in functions): abstract origins,
  concrete out-of-line copies, clones (concrete, with DW_AT_abstract_origin and no name of their
  own) and declarations; name, linkage name, decl_file/decl_line, external and noreturn are
  resolved through DW_AT_abstract_origin, then DW_AT_specification, within the CU;
- DIE references are absolute .debug_info offsets. DW_FORM_ref_addr may point into another CU
  (GCC does not emit it without LTO or dwz): the offset is kept, but nothing is resolved through
  it, since that would need a global pass;
- ranges are [low, high) in DWARF order with empty ones dropped; GCC lists a hot/cold split
  function's entry part first, so the first range starts at the function's symbol;
- a parameter's location is the one valid at the entry pc (DW_AT_entry_pc, else the start of the
  first range): a register name, "stack" (DW_OP_fbreg or a stack-pointer-based DW_OP_breg),
  "optimized-out" (no DW_AT_location, or an empty expression), "constant" (DW_AT_const_value,
  or a constant DW_OP_stack_value), "removed" (DW_OP_GNU_parameter_ref anywhere in its
  location: GCC's IPA passes took it out of this copy's arguments, and only the caller's
  DW_TAG_call_site_parameter knows its value), "unknown" (any other expression, a location list
  without an entry covering the entry pc, or a DIE without code);
- a declaration (DW_AT_declaration) gets no parameters: they describe no code;
- a concrete copy's parameters are listed in C order, its abstract origin's: GCC emits a
  clone's parameter DIEs in another order (after its local variables, removed ones last), and
  a parameter without a DIE in the copy is "optimized-out";
- the size of the return type (0 for void), through typedefs and qualifiers, for the return
  registers and the indirect result register (a struct over 16 bytes is returned in memory).

Malformed DWARF raises `BinaryFormatError` naming the file and the unit, never anything else.
The walk always moves forward inside its unit (a DW_AT_sibling must point past the DIE and not
past the unit), descends at most `MAX_DIE_DEPTH` levels, reads lists of bounded length and
checks its `Deadline` between subprograms, so its work is bounded by the unit's size. An
attribute declared with a form its class does not allow is skipped (`form_fits`), so a name is
always a string and a reference a number; `store.fact_rows` drops numbers SQLite cannot hold.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from klp_lsp import model
from klp_lsp.binary.dwarf_abbrev import (
    AT_ABSTRACT_ORIGIN,
    AT_ADDR_BASE,
    AT_BYTE_SIZE,
    AT_CALL_FILE,
    AT_CALL_LINE,
    AT_CALLING_CONVENTION,
    AT_COMP_DIR,
    AT_CONST_VALUE,
    AT_DECL_FILE,
    AT_DECL_LINE,
    AT_DECLARATION,
    AT_ENCODING,
    AT_ENTRY_PC,
    AT_EXTERNAL,
    AT_HIGH_PC,
    AT_INLINE,
    AT_LANGUAGE,
    AT_LINKAGE_NAME,
    AT_LOCATION,
    AT_LOCLISTS_BASE,
    AT_LOW_PC,
    AT_MIPS_LINKAGE_NAME,
    AT_NAME,
    AT_NORETURN,
    AT_PRODUCER,
    AT_RANGES,
    AT_RNGLISTS_BASE,
    AT_SPECIFICATION,
    AT_STMT_LIST,
    AT_STR_OFFSETS_BASE,
    AT_TYPE,
    DECODE_ERRORS,
    K_ADDR,
    K_ADDRX,
    K_ADDRX1,
    K_ADDRX2,
    K_ADDRX3,
    K_ADDRX4,
    K_BLOCK,
    K_BLOCK1,
    K_BLOCK2,
    K_BLOCK4,
    K_FLAG,
    K_FLAG_PRESENT,
    K_IMPLICIT_CONST,
    K_INDIRECT,
    K_LINE_STRP,
    K_LISTX,
    K_REF1,
    K_REF2,
    K_REF4,
    K_REF8,
    K_REF_ADDR,
    K_REF_UDATA,
    K_SEC_OFFSET,
    K_SKIP,
    K_SLEB,
    K_STRING,
    K_STRP,
    K_STRX,
    K_STRX1,
    K_STRX2,
    K_STRX3,
    K_STRX4,
    K_U1,
    K_U2,
    K_U4,
    K_U8,
    K_ULEB,
    TAG_AGGREGATE_TYPES,
    TAG_FORMAL_PARAMETER,
    TAG_INLINED_SUBROUTINE,
    TAG_LEXICAL_BLOCK,
    TAG_POINTER_TYPES,
    TAG_SUBPROGRAM,
    TAG_TYPE_ALIASES,
    U16,
    U32,
    U64,
    WANTED,
    Abbrev,
    explain,
    form_fits,
    form_step,
    parse_abbrev_table,
    sleb,
    uleb,
)
from klp_lsp.binary.dwarf_lists import (
    Ranges,
    expression_at,
    iter_loc_v4,
    iter_loclist,
    line_file_table,
    normalise_paths,
    ranges_v4,
    read_addr,
    rnglist,
)
from klp_lsp.errors import BinaryFormatError, DebugInfoMissing
from klp_lsp.limits import MAX_DIE_DEPTH, NO_DEADLINE, BudgetExceeded, Deadline
from klp_lsp.model import TypeKind, TypeShape

DW_LANG_MIPS_ASSEMBLER = 0x8001
DW_UT_COMPILE = 1

# DWARF register numbers to names, from the psABIs: x86-64 psABI table 3.36 and the AArch64
# DWARF ABI (aadwarf64) section 4.1.
REGISTER_NAMES: dict[model.Arch, dict[int, str]] = {
    "x86_64": {
        **dict(enumerate(["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp"])),
        **{n: f"r{n}" for n in range(8, 16)},
        16: "rip",
        **{17 + n: f"xmm{n}" for n in range(16)},
    },
    "aarch64": {
        **{n: f"x{n}" for n in range(31)},
        31: "sp",
        **{64 + n: f"v{n}" for n in range(32)},
    },
}
# The stack pointer's DWARF number: DW_OP_breg<sp> at entry addresses an argument slot.
_STACK_POINTER: dict[model.Arch, int] = {"x86_64": 7, "aarch64": 31}

# The DWARF sections the scanner reads (all optional but .debug_info and .debug_abbrev).
DWARF_SECTIONS = (
    ".debug_info",
    ".debug_abbrev",
    ".debug_str",
    ".debug_line_str",
    ".debug_line",
    ".debug_loclists",
    ".debug_rnglists",
    ".debug_addr",
    ".debug_str_offsets",
    ".debug_ranges",
    ".debug_loc",
)


# What `describe_type` decodes besides the scanner's attributes.
_TYPE_ATTRIBUTES = WANTED | {AT_TYPE, AT_BYTE_SIZE, AT_ENCODING}

# DW_TAG_* of the type DIEs `describe_type` follows or classifies (DWARF 5, section 7.5).
_TAG_BASE = 0x24
_TAG_POINTER = 0x0F
_TAG_REFERENCE = 0x10
_TAG_STRUCT = 0x13
_TAG_UNION = 0x17
_TAG_ENUM = 0x04
_TAG_ARRAY = 0x01
_TAG_SUBROUTINE_TYPE = 0x15
_TAG_TYPEDEF = 0x16
_QUALIFIERS = {0x26, 0x35, 0x37, 0x47}  # const, volatile, restrict, atomic
_DW_ATE_FLOAT = 0x04


class ListIndex(int):
    """A DW_FORM_loclistx/rnglistx value: an index through the unit's *lists_base."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class UnitHeader:
    """One unit of .debug_info: its header and the facts of its top DIE."""

    offset: int  # offset of the unit header in .debug_info
    size: int  # total bytes, header included
    version: int
    unit_type: int  # DW_UT_* (DWARF 4 units report DW_UT_compile)
    address_size: int
    name: str
    comp_dir: str
    producer: str
    language: int | None
    ranges: Ranges
    is_asm: bool

    def to_compile_unit(self) -> model.CompileUnit:
        """The model record of this unit."""
        return model.CompileUnit(
            offset=self.offset,
            name=self.name,
            comp_dir=self.comp_dir,
            producer=self.producer,
            language=self.language,
            is_asm=self.is_asm,
        )


@dataclass(frozen=True, slots=True)
class _Unit:
    offset: int
    end: int
    version: int
    unit_type: int
    address_size: int
    offset_size: int
    abbrev_offset: int
    die_offset: int  # offset of the top DIE


@dataclass(slots=True)
class _Bases:
    """Per-unit bases from the top DIE that forms like strx and addrx need."""

    str_offsets: int = 8
    addr: int = 8
    rnglists: int = 12
    loclists: int = 12
    low_pc: int = 0


class DwarfData:
    """The DWARF of one binary, decoded on demand one unit at a time."""

    def __init__(
        self, sections: Mapping[str, bytes], arch: model.Arch, source: str = "<dwarf>"
    ) -> None:
        self.arch = arch
        self.source = source
        if not sections.get(".debug_info"):
            raise DebugInfoMissing(f"{source}: no .debug_info section")
        self._s = {name: bytes(sections.get(name, b"")) for name in DWARF_SECTIONS}
        self._info = self._s[".debug_info"]
        self._regs = REGISTER_NAMES[arch]
        self._sp = _STACK_POINTER[arch]
        self._abbrev_cache: dict[tuple[int, int, int], dict[int, Abbrev]] = {}
        self._plans: dict[tuple[int, int], dict[bytes, Abbrev]] = {}
        # For `describe_type` and friends: plans that also decode types and sizes.
        self._type_abbrevs: dict[tuple[int, int, int], dict[int, Abbrev]] = {}
        self._type_plans: dict[tuple[int, int], dict[bytes, Abbrev]] = {}
        self._unit_bases: dict[int, _Bases] = {}
        self._unit_offsets: list[int] | None = None

    # --- units -------------------------------------------------------------------------------

    def _unit_at(self, offset: int) -> _Unit:
        info = self._info
        try:
            length = U32(info, offset)[0]
            pos = offset + 4
            offset_size = 4
            if length == 0xFFFFFFFF:
                length = U64(info, pos)[0]
                pos += 8
                offset_size = 8
            end = pos + length
            version = U16(info, pos)[0]
            pos += 2
            if version >= 5:
                unit_type = info[pos]
                address_size = info[pos + 1]
                pos += 2
                abbrev_offset = _read_off(info, pos, offset_size)
                pos += offset_size
                if unit_type in (4, 5):  # DW_UT_skeleton, DW_UT_split_compile: dwo_id
                    pos += 8
                elif unit_type in (2, 6):  # DW_UT_type, DW_UT_split_type
                    pos += 8 + offset_size
            elif version >= 2:
                unit_type = DW_UT_COMPILE
                abbrev_offset = _read_off(info, pos, offset_size)
                pos += offset_size
                address_size = info[pos]
                pos += 1
            else:
                raise BinaryFormatError(
                    f"{self.source}: unit at 0x{offset:x} has DWARF version {version}"
                )
        except DECODE_ERRORS:
            raise BinaryFormatError(
                f"{self.source}: truncated unit header at .debug_info+0x{offset:x}"
            ) from None
        if end > len(info) or version > 5:
            raise BinaryFormatError(f"{self.source}: bad unit header at .debug_info+0x{offset:x}")
        if address_size not in (4, 8):
            raise BinaryFormatError(
                f"{self.source}: unit at .debug_info+0x{offset:x} has address size {address_size}"
            )
        return _Unit(offset, end, version, unit_type, address_size, offset_size, abbrev_offset, pos)

    def _abbrevs(self, u: _Unit) -> dict[int, Abbrev]:
        key = (u.abbrev_offset, u.address_size, u.offset_size)
        table = self._abbrev_cache.get(key)
        if table is None:
            table = parse_abbrev_table(
                self._s[".debug_abbrev"], *key, self.source, self._plans_for(u)
            )
            self._abbrev_cache[key] = table
        return table

    def _plans_for(self, u: _Unit) -> dict[bytes, Abbrev]:
        return self._plans.setdefault((u.address_size, u.offset_size), {})

    def iter_unit_offsets(self) -> list[int]:
        """Offsets of every unit header in .debug_info, in file order."""
        out = []
        info = self._info
        pos = 0
        n = len(info)
        try:
            while pos + 4 <= n:
                out.append(pos)
                length = U32(info, pos)[0]
                pos += 4 + length if length != 0xFFFFFFFF else 12 + U64(info, pos + 4)[0]
        except DECODE_ERRORS:  # a 64-bit DWARF length cut short
            pos = -1
        if pos != n:
            raise BinaryFormatError(
                f"{self.source}: .debug_info ends inside the unit at 0x{out[-1] if out else 0:x}"
            )
        return out

    def list_units(self) -> list[UnitHeader]:
        """Every unit with the facts of its top DIE; reads only the top DIEs."""
        return [self.get_unit_header(off) for off in self.iter_unit_offsets()]

    def get_unit_header(self, offset: int) -> UnitHeader:
        """The header and top-DIE facts of the unit at `offset`."""
        u = self._unit_at(offset)
        try:
            code, pos = uleb(self._info, u.die_offset)
            key = (u.abbrev_offset, u.address_size, u.offset_size)
            abbrevs = self._abbrev_cache.get(key)
            if abbrevs is None:
                abbrevs = parse_abbrev_table(
                    self._s[".debug_abbrev"], *key, self.source, self._plans_for(u), code
                )
            vals, _ = self._decode(u, _Bases(), pos, abbrevs[code])
            bases = self._bases(u, vals)
            ranges = self._ranges(u, bases, vals, bases.low_pc)
        except DECODE_ERRORS as e:
            raise BinaryFormatError(
                f"{self.source}: bad top DIE of unit at .debug_info+0x{offset:x}: {explain(e)}"
            ) from None
        producer = _str(vals.get(AT_PRODUCER))
        language = _small(vals.get(AT_LANGUAGE))
        return UnitHeader(
            offset=offset,
            size=u.end - offset,
            version=u.version,
            unit_type=u.unit_type,
            address_size=u.address_size,
            name=_str(vals.get(AT_NAME)),
            comp_dir=_str(vals.get(AT_COMP_DIR)),
            producer=producer,
            language=language,
            ranges=ranges,
            is_asm=language == DW_LANG_MIPS_ASSEMBLER or (language is None and not producer),
        )

    def _bases(self, u: _Unit, top: dict[int, Any]) -> _Bases:
        # Without the *_base attributes, DWARF 5 bases point just past each section's header.
        header = 8 if u.offset_size == 4 else 16
        return _Bases(
            # Their forms are unsigned (`form_fits` drops any other), so never negative.
            str_offsets=top.get(AT_STR_OFFSETS_BASE, header),
            addr=top.get(AT_ADDR_BASE, header),
            rnglists=top.get(AT_RNGLISTS_BASE, header + 4),
            loclists=top.get(AT_LOCLISTS_BASE, header + 4),
            low_pc=top.get(AT_LOW_PC, 0),
        )

    # --- attribute decoding ------------------------------------------------------------------

    def _decode(self, u: _Unit, bases: _Bases, pos: int, ab: Abbrev) -> tuple[dict[int, Any], int]:
        """Decode the kept attributes of one DIE whose attributes start at `pos`."""
        data = self._info
        vals: dict[int, Any] = {}
        for kind, arg, attr in ab.decode_steps:
            if kind == K_SKIP:
                pos += arg
                continue
            if kind == K_REF4:
                v: Any = u.offset + U32(data, pos)[0]
                pos += 4
            elif kind in (K_U1, K_FLAG):
                v = data[pos]
                pos += 1
            elif kind in (K_IMPLICIT_CONST, K_FLAG_PRESENT):
                v = arg
            elif kind == K_STRP:
                v = self._strp(data, pos, arg)
                pos += arg
            elif kind == K_LINE_STRP:
                v = _cstr(self._s[".debug_line_str"], _read_off(data, pos, arg))
                pos += arg
            elif kind == K_U2:
                v = U16(data, pos)[0]
                pos += 2
            elif kind == K_U4:
                v = U32(data, pos)[0]
                pos += 4
            elif kind == K_U8:
                v = U64(data, pos)[0]
                pos += 8
            elif kind == K_ADDR:
                v = read_addr(data, pos, arg)
                pos += arg
                if attr in (AT_HIGH_PC, AT_ENTRY_PC):
                    v = _Address(v)
            elif kind == K_SEC_OFFSET:
                v = _read_off(data, pos, arg)
                pos += arg
            elif kind == K_BLOCK:
                n, pos = uleb(data, pos)
                v = data[pos : pos + n]
                pos += n
            elif kind == K_ULEB:
                v, pos = uleb(data, pos)
            elif kind == K_SLEB:
                v, pos = sleb(data, pos)
            elif kind == K_STRING:
                end = data.index(0, pos)
                v = data[pos:end].decode("utf-8", "replace")
                pos = end + 1
            elif kind == K_LISTX:
                i, pos = uleb(data, pos)
                v = ListIndex(i)
            elif kind == K_INDIRECT:
                form, pos = uleb(data, pos)
                k2, size = form_step(form, u.address_size, u.offset_size)
                if k2 in (K_INDIRECT, K_IMPLICIT_CONST):  # DWARF 5 section 7.5.3 forbids both
                    raise ValueError(f"DW_FORM_indirect to form 0x{form:x}")
                kept = attr if form_fits(attr, k2) else -1
                one = Abbrev(0, False, -1, (), -1, ((k2, size, kept),))
                sub, pos = self._decode(u, bases, pos, one)
                vals.update(sub)
                continue
            elif kind in (K_STRX, K_STRX1, K_STRX2, K_STRX3, K_STRX4):
                i, pos = self._index(data, pos, kind, K_STRX)
                where = bases.str_offsets + i * u.offset_size
                v = self._strp(self._s[".debug_str_offsets"], where, u.offset_size)
            elif kind in (K_ADDRX, K_ADDRX1, K_ADDRX2, K_ADDRX3, K_ADDRX4):
                i, pos = self._index(data, pos, kind, K_ADDRX)
                where = bases.addr + i * u.address_size
                v = read_addr(self._s[".debug_addr"], where, u.address_size)
                if attr in (AT_HIGH_PC, AT_ENTRY_PC):
                    v = _Address(v)
            elif kind in (K_REF1, K_REF2, K_REF8, K_REF_UDATA):
                if kind == K_REF_UDATA:
                    v, pos = uleb(data, pos)
                else:
                    v = int.from_bytes(data[pos : pos + arg], "little")
                    pos += arg
                v += u.offset
            elif kind == K_REF_ADDR:
                v = _read_off(data, pos, arg)
                pos += arg
            elif kind in (K_BLOCK1, K_BLOCK2, K_BLOCK4):
                if kind == K_BLOCK1:
                    n, pos = data[pos], pos + 1
                elif kind == K_BLOCK2:
                    n, pos = U16(data, pos)[0], pos + 2
                else:
                    n, pos = U32(data, pos)[0], pos + 4
                v = data[pos : pos + n]
                pos += n
            else:
                raise ValueError(f"unhandled form kind {kind}")
            if attr >= 0:
                vals[attr] = v
        return vals, pos

    @staticmethod
    def _index(data: bytes, pos: int, kind: int, uleb_kind: int) -> tuple[int, int]:
        if kind == uleb_kind:
            return uleb(data, pos)
        n = kind - uleb_kind  # the 1, 2, 3, 4-byte variants follow the uleb kind
        return int.from_bytes(data[pos : pos + n], "little"), pos + n

    def _strp(self, data: bytes, pos: int, size: int) -> str:
        return _cstr(self._s[".debug_str"], _read_off(data, pos, size))

    def _skip(self, u: _Unit, pos: int, ab: Abbrev) -> int:
        """Skip the attributes of one DIE (not its children)."""
        if ab.fixed_size >= 0:
            return pos + ab.fixed_size
        data = self._info
        for kind, arg in ab.skip_steps:
            if kind == K_SKIP:
                pos += arg
            elif kind == K_BLOCK:
                n, pos = uleb(data, pos)
                pos += n
            elif kind == K_STRING:
                pos = data.index(0, pos) + 1
            elif kind == K_INDIRECT:
                form, pos = uleb(data, pos)
                k2, size = form_step(form, u.address_size, u.offset_size)
                if k2 in (K_INDIRECT, K_IMPLICIT_CONST):
                    raise ValueError(f"DW_FORM_indirect to form 0x{form:x}")
                pos = self._skip(u, pos, _skip_only(k2, size))
            elif kind == K_BLOCK1:
                pos += 1 + data[pos]
            elif kind == K_BLOCK2:
                pos += 2 + U16(data, pos)[0]
            elif kind == K_BLOCK4:
                pos += 4 + U32(data, pos)[0]
            else:  # every other variable-size form is one LEB128
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
        return pos

    def _skip_tree(self, u: _Unit, abbrevs: dict[int, Abbrev], pos: int, ab: Abbrev) -> int:
        """Skip one DIE and, if it has any, all its children."""
        if not ab.has_children:
            return self._skip(u, pos, ab)
        if ab.sibling_at >= 0:
            return _sibling(u, pos, U32(self._info, pos + ab.sibling_at)[0])
        return self._skip_children(u, abbrevs, self._skip(u, pos, ab))

    def _skip_children(self, u: _Unit, abbrevs: dict[int, Abbrev], pos: int) -> int:
        """Skip a list of sibling DIEs up to and including its null entry."""
        data = self._info
        depth = 1
        unit_start, end = u.offset, u.end
        while depth:
            if pos >= end:
                raise ValueError(f"children at 0x{pos:x} run past the end of their unit")
            code = data[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(data, pos)
            if code == 0:
                depth -= 1
                continue
            ab = abbrevs[code]
            if ab.has_children:
                if ab.sibling_at >= 0:
                    nxt = unit_start + U32(data, pos + ab.sibling_at)[0]
                    if nxt <= pos:
                        raise _bad_sibling(u, pos, nxt)
                    pos = nxt
                else:
                    pos = self._skip(u, pos, ab)
                    depth += 1
            elif ab.fixed_size >= 0:
                pos += ab.fixed_size
            else:
                pos = self._skip(u, pos, ab)
        return pos

    def _ranges(self, u: _Unit, bases: _Bases, vals: dict[int, Any], base: int) -> Ranges:
        """The code ranges of a DIE from low/high pc or DW_AT_ranges, without empty ones."""
        low = vals.get(AT_LOW_PC)
        high = vals.get(AT_HIGH_PC)
        out: Ranges = ()
        if low is not None and high is not None:
            out = ((low, high if isinstance(high, _Address) else low + high),)
        elif AT_RANGES in vals:
            r = vals[AT_RANGES]
            if u.version >= 5:
                sec = self._s[".debug_rnglists"]
                if isinstance(r, ListIndex):
                    r = bases.rnglists + _read_off(sec, bases.rnglists + r * u.offset_size,
                                                   u.offset_size)  # fmt: skip
                out = rnglist(sec, r, base, u.address_size, self._s[".debug_addr"], bases.addr)
            else:
                out = ranges_v4(self._s[".debug_ranges"], r, base, u.address_size)
        # Empty ranges say nothing; one that ends past the address space is corrupt.
        top = 1 << (8 * u.address_size)
        return tuple(x for x in out if x[0] < x[1] < top)

    # --- the scan ----------------------------------------------------------------------------

    def scan_unit(self, offset: int, deadline: Deadline = NO_DEADLINE) -> model.CuFacts:
        """Decode the subprograms, parameters and inline sites of the unit at `offset`.

        `deadline` bounds the time spent; past it, `BudgetExceeded` (a BinaryFormatError).
        """
        u = self._unit_at(offset)
        self._abbrevs(u)  # the whole table, so the top DIE below need not parse it again
        header = self.get_unit_header(offset)
        try:
            return _UnitScan(self, u, header, deadline).run()
        except BudgetExceeded as e:
            raise BudgetExceeded(
                f"{self.source}: unit at .debug_info+0x{offset:x} ({header.name}): {e}"
            ) from None
        except (*DECODE_ERRORS, RecursionError) as e:
            raise BinaryFormatError(
                f"{self.source}: corrupt DWARF in unit at .debug_info+0x{offset:x}"
                f" ({header.name}): {explain(e)}"
            ) from None

    # --- single DIEs and types ----------------------------------------------------------------

    def _unit_containing(self, die_offset: int) -> _Unit:
        offsets = self._unit_offsets
        if offsets is None:
            offsets = self._unit_offsets = self.iter_unit_offsets()
        i = bisect.bisect_right(offsets, die_offset) - 1
        if i < 0:
            raise BinaryFormatError(f"{self.source}: no unit holds DIE 0x{die_offset:x}")
        return self._unit_at(offsets[i])

    def _die(self, die_offset: int) -> tuple[int, dict[int, Any]]:
        """The tag and the name, type and size attributes of the DIE at `die_offset`."""
        u = self._unit_containing(die_offset)
        key = (u.abbrev_offset, u.address_size, u.offset_size)
        table = self._type_abbrevs.get(key)
        if table is None:
            plans = self._type_plans.setdefault((u.address_size, u.offset_size), {})
            table = parse_abbrev_table(
                self._s[".debug_abbrev"], *key, self.source, plans, wanted=_TYPE_ATTRIBUTES
            )
            self._type_abbrevs[key] = table
        try:
            bases = self._unit_bases.get(u.offset)
            if bases is None:
                code, pos = uleb(self._info, u.die_offset)
                top, _ = self._decode(u, _Bases(), pos, table[code])
                bases = self._unit_bases[u.offset] = self._bases(u, top)
            code, pos = uleb(self._info, die_offset)
            ab = table[code]
            vals, _ = self._decode(u, bases, pos, ab)
        except DECODE_ERRORS as e:
            raise BinaryFormatError(
                f"{self.source}: bad DIE at .debug_info+0x{die_offset:x}: {explain(e)}"
            ) from None
        return ab.tag, vals

    def describe_type(self, type_die: int | None) -> TypeShape:
        """The calling-convention class of the type at `type_die` (None: void)."""
        names: list[str] = []
        for _ in range(32):  # typedef and qualifier chains are short
            if type_die is None:
                return TypeShape("void", 0, " ".join([*names, "void"]).strip())
            tag, vals = self._die(type_die)
            name = _str(vals.get(AT_NAME))
            size = vals.get(AT_BYTE_SIZE)
            if tag in _QUALIFIERS or tag == _TAG_TYPEDEF:
                if tag == _TAG_TYPEDEF and name and not names:
                    names.append(name)
                type_die = vals.get(AT_TYPE)
                continue
            label = names[0] if names else name
            if tag == _TAG_BASE:
                kind: TypeKind = "float" if vals.get(AT_ENCODING) == _DW_ATE_FLOAT else "integer"
                return TypeShape(kind, int(size or 0), label)
            if tag == _TAG_ENUM:
                return TypeShape("integer", int(size or 4), label or f"enum {name}".strip())
            if tag in (_TAG_POINTER, _TAG_REFERENCE):
                return TypeShape("pointer", int(size or 8), label or "pointer")
            if tag in (_TAG_STRUCT, _TAG_UNION):
                word = "struct" if tag == _TAG_STRUCT else "union"
                return TypeShape("aggregate", int(size or 0), label or f"{word} {name}".strip())
            if tag in (_TAG_ARRAY, _TAG_SUBROUTINE_TYPE):
                return TypeShape("unknown", int(size or 0), label)
            return TypeShape("unknown", int(size or 0), label)
        return TypeShape("unknown", 0, "")

    def return_type(self, function_die: int) -> TypeShape:
        """The return type of a subprogram DIE, through its abstract origin or specification."""
        die: int | None = function_die
        for _ in range(8):
            if die is None:
                break
            _tag, vals = self._die(die)
            if AT_TYPE in vals:
                return self.describe_type(vals[AT_TYPE])
            die = vals.get(AT_ABSTRACT_ORIGIN, vals.get(AT_SPECIFICATION))
        return self.describe_type(None)

    def find_struct_size(self, name: str) -> int | None:
        """DW_AT_byte_size of the first defined `struct name` at the top level of any unit."""
        for offset in self.iter_unit_offsets():
            u = self._unit_at(offset)
            abbrevs = self._abbrevs(u)
            data = self._info
            code, pos = uleb(data, u.die_offset)
            top = abbrevs[code]
            pos = self._skip(u, pos, top)
            if not top.has_children:
                continue
            while pos < u.end:
                die = pos
                code, pos = uleb(data, pos)
                if code == 0:
                    continue
                ab = abbrevs[code]
                if ab.tag == _TAG_STRUCT:
                    _tag, vals = self._die(die)
                    if _str(vals.get(AT_NAME)) == name and AT_BYTE_SIZE in vals:
                        return int(vals[AT_BYTE_SIZE])
                pos = self._skip_tree(u, abbrevs, pos, ab)
        return None

    def location_at_entry(self, expr: bytes) -> str:
        """Name where a DWARF location expression puts a value: register, stack or unknown."""
        if not expr:
            return "optimized-out"
        op = expr[0]
        if op == _DW_OP_GNU_PARAMETER_REF:
            return "removed"
        if _is_constant(expr):
            return "constant"
        if 0x50 <= op <= 0x6F:  # DW_OP_reg0..31
            return self._reg(op - 0x50)
        if op == 0x90:  # DW_OP_regx
            return self._reg(uleb(expr, 1)[0])
        if op == 0x91:  # DW_OP_fbreg
            return "stack"
        if 0x70 <= op <= 0x8F and op - 0x70 == self._sp:  # DW_OP_breg<sp>
            return "stack"
        if op == 0x92 and uleb(expr, 1)[0] == self._sp:  # DW_OP_bregx sp
            return "stack"
        return "unknown"

    def _reg(self, n: int) -> str:
        return self._regs.get(n, f"dwarf-reg{n}")


# GCC's DW_OP_GNU_parameter_ref: "the value the caller passed for this parameter", for a
# parameter an IPA pass removed from a clone (gcc/dwarf2out.cc, DECL_HAS_DEBUG_ARGS_P).
_DW_OP_GNU_PARAMETER_REF = 0xFA
_PARAMETER_REF = bytes((_DW_OP_GNU_PARAMETER_REF,))
_DW_OP_STACK_VALUE = 0x9F


def _is_constant(expr: bytes) -> bool:
    """Whether `expr` is a literal pushed as the value: DW_OP_lit<n>, DW_OP_const<k><u|s>,
    DW_OP_constu/consts, each followed by DW_OP_stack_value."""
    if expr[-1] != _DW_OP_STACK_VALUE:
        return False
    op = expr[0]
    if 0x30 <= op <= 0x4F:  # DW_OP_lit0..31
        return len(expr) == 2
    sizes = {0x08: 1, 0x09: 1, 0x0A: 2, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8, 0x0F: 8}
    if op in sizes:
        return len(expr) == 2 + sizes[op]
    if op in (0x10, 0x11):  # DW_OP_constu, DW_OP_consts
        return uleb(expr, 1)[1] == len(expr) - 1
    return False


class _Address(int):
    """A DW_AT_high_pc or DW_AT_entry_pc given as an address rather than an offset."""

    __slots__ = ()


def _skip_only(kind: int, size: int) -> Abbrev:
    if size > 0:
        return Abbrev(0, False, size, (), -1, ())
    return Abbrev(0, False, -1, ((kind, 0),), -1, ())


def _sibling(u: _Unit, pos: int, value: int) -> int:
    """The DIE a DW_AT_sibling (CU-relative, read at `pos`) points to: after `pos`, in the unit."""
    target = u.offset + value
    if target <= pos or target > u.end:
        raise _bad_sibling(u, pos, target)
    return target


def _bad_sibling(u: _Unit, pos: int, target: int) -> ValueError:
    if target <= pos:
        return ValueError(f"a DW_AT_sibling near 0x{pos:x} points back to 0x{target:x}")
    return ValueError(f"a DW_AT_sibling near 0x{pos:x} points past the end of its unit")


def _small(v: object) -> int | None:
    """A DW_AT_language that is a sane number (stored as an SQLite integer), else None."""
    return v if isinstance(v, int) and 0 <= v < 1 << 32 else None


def _read_off(data: bytes, pos: int, size: int) -> int:
    return U32(data, pos)[0] if size == 4 else U64(data, pos)[0]


def _cstr(data: bytes, pos: int) -> str:
    end = data.index(0, pos)
    return data[pos:end].decode("utf-8", "replace")


def _str(v: object) -> str:
    return v if isinstance(v, str) else ""


class _UnitScan:
    """The walk over one unit; holds the raw DIE values until names are resolved."""

    def __init__(
        self, dwarf: DwarfData, u: _Unit, header: UnitHeader, deadline: Deadline = NO_DEADLINE
    ) -> None:
        self.d = dwarf
        self.u = u
        self.header = header
        self.deadline = deadline
        self.data = dwarf._info
        self.abbrevs = dwarf._abbrevs(u)
        self.bases = _Bases()
        # Raw subprograms: (die offset, attributes, parameter DIE offsets).
        self.subs: list[tuple[int, dict[int, Any], list[int]]] = []
        self.params: dict[int, dict[int, Any]] = {}
        # Raw inline sites: (die offset, attributes, container, parent).
        self.inlines: list[tuple[int, dict[int, Any], int, int | None]] = []
        self.types: dict[int, tuple[str | None, int | None]] = {}

    def run(self) -> model.CuFacts:
        u, data, abbrevs = self.u, self.data, self.abbrevs
        code, pos = uleb(data, u.die_offset)
        top = abbrevs[code]
        top_vals, pos = self.d._decode(u, self.bases, pos, top)
        self.bases = self.d._bases(u, top_vals)
        comp_dir = _str(top_vals.get(AT_COMP_DIR))
        files: list[tuple[str, str] | None] = []
        stmt = top_vals.get(AT_STMT_LIST)
        if stmt is not None and self.d._s[".debug_line"]:
            s = self.d._s
            files = line_file_table(
                s[".debug_line"], s[".debug_line_str"], s[".debug_str"], stmt, comp_dir
            )
        if top.has_children:
            unit_start, end = u.offset, u.end
            while pos < end:
                die = pos
                code = data[pos]
                if code < 0x80:
                    pos += 1
                else:
                    code, pos = uleb(data, pos)
                if code == 0:
                    continue
                ab = abbrevs[code]
                if ab.tag == TAG_SUBPROGRAM:
                    pos = self.subprogram(die, pos, ab)
                elif ab.has_children:
                    if ab.sibling_at >= 0:
                        # Inline, not `_sibling()`: this is the scanner's hottest branch. Only a
                        # pointer backwards is checked; one past the unit ends the loop above.
                        nxt = unit_start + U32(data, pos + ab.sibling_at)[0]
                        if nxt <= pos:
                            raise _bad_sibling(u, pos, nxt)
                        pos = nxt
                    else:
                        pos = self.d._skip_tree(u, abbrevs, pos, ab)
                elif ab.fixed_size >= 0:
                    pos += ab.fixed_size
                else:
                    pos = self.d._skip(u, pos, ab)
        return self.resolve(files, comp_dir)

    def subprogram(self, die: int, pos: int, ab: Abbrev, depth: int = 0) -> int:
        self.deadline.check()
        vals, pos = self.d._decode(self.u, self.bases, pos, ab)
        params: list[int] = []
        self.subs.append((die, vals, params))
        if ab.has_children:
            pos = self.children(pos, die, None, params, depth + 1)
        return pos

    def children(
        self,
        pos: int,
        container: int,
        parent: int | None,
        params: list[int] | None,
        depth: int = 1,
    ) -> int:
        data, abbrevs, u = self.data, self.abbrevs, self.u
        unit_start, end = u.offset, u.end
        if depth > MAX_DIE_DEPTH:
            raise ValueError(f"DIEs at 0x{pos:x} nest more than {MAX_DIE_DEPTH} levels deep")
        while True:
            if pos >= end:
                raise ValueError(f"children at 0x{pos:x} run past the end of their unit")
            die = pos
            code = data[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(data, pos)
            if code == 0:
                return pos
            ab = abbrevs[code]
            tag = ab.tag
            if tag == TAG_FORMAL_PARAMETER and params is not None:
                vals, pos = self.d._decode(u, self.bases, pos, ab)
                self.params[die] = vals
                params.append(die)
                if ab.has_children:
                    pos = self.d._skip_children(u, abbrevs, pos)
            elif tag == TAG_INLINED_SUBROUTINE:
                vals, pos = self.d._decode(self.u, self.bases, pos, ab)
                self.inlines.append((die, vals, container, parent))
                if ab.has_children:
                    pos = self.children(pos, container, die, None, depth + 1)
            elif tag == TAG_LEXICAL_BLOCK:
                pos = self.d._skip(u, pos, ab)
                if ab.has_children:
                    pos = self.children(pos, container, parent, None, depth + 1)
            elif tag == TAG_SUBPROGRAM:
                pos = self.subprogram(die, pos, ab, depth)
            elif ab.has_children:
                if ab.sibling_at >= 0:
                    nxt = unit_start + U32(data, pos + ab.sibling_at)[0]
                    if nxt <= pos:
                        raise _bad_sibling(u, pos, nxt)
                    pos = nxt
                else:
                    pos = self.d._skip_tree(u, abbrevs, pos, ab)
            elif ab.fixed_size >= 0:
                pos += ab.fixed_size
            else:
                pos = self.d._skip(u, pos, ab)

    # --- resolution --------------------------------------------------------------------------

    def resolve(self, files: list[tuple[str, str] | None], comp_dir: str) -> model.CuFacts:
        """Turn the raw DIE values into records, following abstract_origin and specification."""
        by_off = {die: vals for die, vals, _ in self.subs}
        base = self.bases.low_pc

        def chain(vals: dict[int, Any], table: dict[int, dict[int, Any]]) -> list[dict[int, Any]]:
            out = [vals]
            # A short bound: GCC chains are concrete -> abstract -> declaration at most.
            for _ in range(8):
                nxt = vals.get(AT_ABSTRACT_ORIGIN)
                if nxt is None:
                    nxt = vals.get(AT_SPECIFICATION)
                if nxt is None or nxt not in table:
                    break
                vals = table[nxt]
                out.append(vals)
            return out

        def first(vs: list[dict[int, Any]], *attrs: int) -> Any:
            for v in vs:
                for a in attrs:
                    if a in v:
                        return v[a]
            return None

        paths = normalise_paths(comp_dir, files)

        def path(index: Any) -> str | None:
            return paths[index] if isinstance(index, int) and 0 <= index < len(paths) else None

        param_lists = {die: param_dies for die, _vals, param_dies in self.subs}
        subprograms = []
        deadline = self.deadline
        for die, vals, param_dies in self.subs:
            deadline.check()
            vs = chain(vals, by_off)
            ranges = self.d._ranges(self.u, self.bases, vals, base)
            entry = vals.get(AT_ENTRY_PC)
            if entry is not None and not isinstance(entry, _Address):
                entry = ranges[0][0] + entry if ranges else None
            pc = entry if entry is not None else (ranges[0][0] if ranges else None)
            params: list[model.Param] = []
            if not vals.get(AT_DECLARATION):
                # A declaration's parameters describe no code: nothing reads them.
                located = {p: self._param(p, pc, chain) for p in param_dies}
                params = list(located.values())
                origin = vals.get(AT_ABSTRACT_ORIGIN)
                if origin in param_lists:
                    params = self._in_c_order(param_dies, param_lists[origin], located, chain)
            ret_type = first(vs, AT_TYPE)
            if ret_type is not None:
                return_size = self.type_info(ret_type)[1]
            elif any(r in vs[-1] for r in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION)):
                return_size = None  # The chain leaves this unit: the type is not known here.
            else:
                return_size = 0  # No DW_AT_type anywhere on the chain: void.
            subprograms.append(
                model.Subprogram(
                    die_offset=die,
                    cu_offset=self.u.offset,
                    name=first(vs, AT_NAME),
                    linkage_name=first(vs, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME),
                    decl_file=path(first(vs, AT_DECL_FILE)),
                    decl_line=first(vs, AT_DECL_LINE),
                    external=bool(first(vs, AT_EXTERNAL)),
                    declaration=bool(vals.get(AT_DECLARATION)),
                    inline=vals.get(AT_INLINE),
                    calling_convention=vals.get(AT_CALLING_CONVENTION),
                    noreturn=bool(first(vs, AT_NORETURN)),
                    abstract_origin=vals.get(AT_ABSTRACT_ORIGIN),
                    specification=vals.get(AT_SPECIFICATION),
                    ranges=ranges,
                    params=tuple(params),
                    entry_pc=None if entry is None else int(entry),
                    return_size=return_size,
                )
            )
        sites: list[model.InlineSite] = []
        for n, (die, vals, container, parent) in enumerate(self.inlines):
            if AT_ABSTRACT_ORIGIN not in vals:
                continue
            if n % 256 == 0:
                deadline.check()
            sites.append(
                model.InlineSite(
                    die_offset=die,
                    cu_offset=self.u.offset,
                    origin=vals[AT_ABSTRACT_ORIGIN],
                    call_file=path(vals.get(AT_CALL_FILE)),
                    call_line=vals.get(AT_CALL_LINE),
                    ranges=self.d._ranges(self.u, self.bases, vals, base),
                    container=container,
                    parent=parent,
                )
            )
        subprograms.sort(key=lambda s: s.die_offset)
        return model.CuFacts(
            unit=self.header.to_compile_unit(),
            subprograms=tuple(subprograms),
            inline_sites=tuple(sites),
            files=tuple(dict.fromkeys(p for p in paths if p is not None)),
        )

    def _param(
        self,
        die: int,
        pc: int | None,
        chain: Callable[[dict[int, Any], dict[int, dict[int, Any]]], list[dict[int, Any]]],
    ) -> model.Param:
        vs = chain(self.params[die], self.params)
        type_ref = next((v[AT_TYPE] for v in vs if AT_TYPE in v), None)
        return model.Param(
            name=next((v[AT_NAME] for v in vs if AT_NAME in v), None),
            location=self.param_location(self.params[die], pc),
            type_kind=None if type_ref is None else self.type_info(type_ref)[0],
        )

    def _in_c_order(
        self,
        own: list[int],
        abstract: list[int],
        located: dict[int, model.Param],
        chain: Callable[[dict[int, Any], dict[int, dict[int, Any]]], list[dict[int, Any]]],
    ) -> list[model.Param]:
        """A concrete copy's parameters in the order of its abstract origin's (C order)."""
        by_origin = {self.params[p].get(AT_ABSTRACT_ORIGIN): p for p in own}
        out = []
        for a in abstract:
            p = by_origin.pop(a, None)
            if p is not None:
                out.append(located[p])
            else:
                out.append(
                    dataclasses.replace(self._param(a, None, chain), location="optimized-out")
                )
        # Parameters whose origin is not among the abstract ones (not seen from GCC).
        out.extend(located[p] for p in by_origin.values())
        return out

    def type_info(self, offset: int) -> tuple[str | None, int | None]:
        """(kind, byte size) of the type DIE at `offset`, through typedefs and qualifiers:
        kind "pointer", "aggregate", "scalar" or "void" (size 0); None when not known."""
        found = self.types.get(offset)
        if found is not None:
            return found
        info: tuple[str | None, int | None] = (None, None)
        at = offset
        u = self.u
        try:
            for _ in range(16):
                if not u.die_offset <= at < u.end:
                    break  # Another unit (DW_FORM_ref_addr): not resolved.
                code, pos = uleb(self.data, at)
                ab = self.abbrevs[code]
                vals, _ = self.d._decode(u, self.bases, pos, ab)
                if ab.tag in TAG_TYPE_ALIASES:
                    nxt = vals.get(AT_TYPE)
                    if nxt is None:
                        info = ("void", 0)  # `typedef void t;` or `const void`
                        break
                    at = nxt
                    continue
                size = vals.get(AT_BYTE_SIZE)
                if ab.tag in TAG_POINTER_TYPES:
                    info = ("pointer", size if isinstance(size, int) else u.address_size)
                elif ab.tag in TAG_AGGREGATE_TYPES:
                    # An incomplete struct (a declaration) has no size here.
                    info = ("aggregate", size if isinstance(size, int) else None)
                else:
                    info = ("scalar", size if isinstance(size, int) else None)
                break
        except DECODE_ERRORS:
            info = (None, None)
        self.types[offset] = info
        return info

    def param_location(self, vals: dict[int, Any], pc: int | None) -> str:
        """Where a parameter lives at entry `pc`, from its DIE's attributes."""
        loc = vals.get(AT_LOCATION)
        if loc is None:
            return "constant" if AT_CONST_VALUE in vals else "optimized-out"
        if isinstance(loc, bytes):
            return self.d.location_at_entry(loc)
        u, s, b = self.u, self.d._s, self.bases

        def entries() -> Iterator[tuple[int, int, bytes]]:
            if u.version >= 5:
                sec = s[".debug_loclists"]
                off = int(loc)
                if isinstance(loc, ListIndex):
                    off = b.loclists + _read_off(
                        sec, b.loclists + off * u.offset_size, u.offset_size
                    )
                return iter_loclist(sec, off, b.low_pc, u.address_size, s[".debug_addr"], b.addr)
            return iter_loc_v4(s[".debug_loc"], int(loc), b.low_pc, u.address_size)

        expr = None if pc is None else expression_at(entries(), pc)
        if expr is not None:
            return self.d.location_at_entry(expr)
        # Not located at entry: GCC describes a parameter it removed from a clone only after
        # the prologue (`DW_OP_GNU_parameter_ref` from the first instruction past it).
        if any(e[:1] == _PARAMETER_REF for _lo, _hi, e in entries()):
            return "removed"
        return "unknown"
