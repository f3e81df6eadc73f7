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
  "optimized-out" (no DW_AT_location, or an empty expression), "unknown" (any other expression,
  or a location list without an entry covering the entry pc, or a DIE without code).

Malformed DWARF raises `BinaryFormatError` naming the file and the unit, never anything else.
The walk always moves forward inside its unit (a DW_AT_sibling must point past the DIE and not
past the unit), descends at most `MAX_DIE_DEPTH` levels, reads lists of bounded length and
checks its `Deadline` between subprograms, so its work is bounded by the unit's size. An
attribute declared with a form its class does not allow is skipped (`form_fits`), so a name is
always a string and a reference a number; `store.fact_rows` drops numbers SQLite cannot hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from klp_lsp import model
from klp_lsp.binary.dwarf_abbrev import (
    AT_ABSTRACT_ORIGIN,
    AT_ADDR_BASE,
    AT_CALL_FILE,
    AT_CALL_LINE,
    AT_CALLING_CONVENTION,
    AT_COMP_DIR,
    AT_DECL_FILE,
    AT_DECL_LINE,
    AT_DECLARATION,
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
    TAG_FORMAL_PARAMETER,
    TAG_INLINED_SUBROUTINE,
    TAG_LEXICAL_BLOCK,
    TAG_SUBPROGRAM,
    U16,
    U32,
    U64,
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
    line_file_table,
    loc_v4_at,
    loclist_at,
    normalise_path,
    ranges_v4,
    read_addr,
    rnglist,
)
from klp_lsp.errors import BinaryFormatError, DebugInfoMissing
from klp_lsp.limits import MAX_DIE_DEPTH, NO_DEADLINE, BudgetExceeded, Deadline

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
            str_offsets=_offset(top.get(AT_STR_OFFSETS_BASE), header),
            addr=_offset(top.get(AT_ADDR_BASE), header),
            rnglists=_offset(top.get(AT_RNGLISTS_BASE), header + 4),
            loclists=_offset(top.get(AT_LOCLISTS_BASE), header + 4),
            low_pc=_offset(top.get(AT_LOW_PC), 0),
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
        return tuple(x for x in out if 0 <= x[0] < x[1] < top)

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

    def location_at_entry(self, expr: bytes) -> str:
        """Name where a DWARF location expression puts a value: register, stack or unknown."""
        if not expr:
            return "optimized-out"
        op = expr[0]
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


def _offset(v: object, default: int) -> int:
    """An attribute that must be a non-negative offset or address; `default` if it is not."""
    return v if isinstance(v, int) and v >= 0 else default


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

        paths: dict[int, str | None] = {}

        def path(index: Any) -> str | None:
            if index in paths:
                return paths[index]
            entry = files[index] if isinstance(index, int) and 0 <= index < len(files) else None
            p = None if entry is None else normalise_path(comp_dir, *entry)
            paths[index] = p
            return p

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
            params = []
            for p in param_dies:
                pv = self.params[p]
                params.append(
                    model.Param(
                        name=first(chain(pv, self.params), AT_NAME),
                        location=self.param_location(pv.get(AT_LOCATION), pc),
                    )
                )
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
        )

    def param_location(self, loc: Any, pc: int | None) -> str:
        """Where a parameter lives at entry `pc`, from its DW_AT_location value."""
        if loc is None:
            return "optimized-out"
        if isinstance(loc, bytes):
            return self.d.location_at_entry(loc)
        if pc is None or loc < 0:
            return "unknown"
        u, s, b = self.u, self.d._s, self.bases
        if u.version >= 5:
            sec = s[".debug_loclists"]
            off = int(loc)
            if isinstance(loc, ListIndex):
                off = b.loclists + _read_off(sec, b.loclists + off * u.offset_size, u.offset_size)
            expr = loclist_at(sec, off, b.low_pc, u.address_size, s[".debug_addr"], b.addr, pc)
        else:
            expr = loc_v4_at(s[".debug_loc"], int(loc), b.low_pc, u.address_size, pc)
        return "unknown" if expr is None else self.d.location_at_entry(expr)
