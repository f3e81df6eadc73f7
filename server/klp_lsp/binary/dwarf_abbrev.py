"""Byte-level DWARF primitives for the fast scanner: LEB128, strings, and per-abbreviation plans.

An abbreviation's plan says how to skip a DIE of that shape (a fixed byte count when every form
has a fixed size, else a short list of steps) and how to decode only the attributes the scanner
keeps. Plans are built once per abbreviation table, so the hot loop never looks at forms again.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from elftools.dwarf.enums import ENUM_DW_AT, ENUM_DW_FORM, ENUM_DW_TAG

from klp_lsp.errors import BinaryFormatError

U16: Callable[[bytes, int], tuple[int]] = struct.Struct("<H").unpack_from
U32: Callable[[bytes, int], tuple[int]] = struct.Struct("<I").unpack_from
U64: Callable[[bytes, int], tuple[int]] = struct.Struct("<Q").unpack_from

_F = ENUM_DW_FORM
_A = ENUM_DW_AT
_T = ENUM_DW_TAG

TAG_SUBPROGRAM: int = _T["DW_TAG_subprogram"]
TAG_FORMAL_PARAMETER: int = _T["DW_TAG_formal_parameter"]
TAG_LEXICAL_BLOCK: int = _T["DW_TAG_lexical_block"]
TAG_INLINED_SUBROUTINE: int = _T["DW_TAG_inlined_subroutine"]
# Tags that only qualify or rename another type (a return type's size is the named type's).
TAG_TYPE_ALIASES: frozenset[int] = frozenset(
    _T[t]
    for t in (
        "DW_TAG_typedef",
        "DW_TAG_const_type",
        "DW_TAG_volatile_type",
        "DW_TAG_restrict_type",
        "DW_TAG_atomic_type",
    )
)
TAG_POINTER_TYPES: frozenset[int] = frozenset(
    _T[t] for t in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_ptr_to_member_type")
)
TAG_AGGREGATE_TYPES: frozenset[int] = frozenset(
    _T[t]
    for t in (
        "DW_TAG_structure_type",
        "DW_TAG_union_type",
        "DW_TAG_class_type",
        "DW_TAG_array_type",
    )
)

AT_SIBLING: int = _A["DW_AT_sibling"]
AT_LOCATION: int = _A["DW_AT_location"]
AT_NAME: int = _A["DW_AT_name"]
AT_LOW_PC: int = _A["DW_AT_low_pc"]
AT_HIGH_PC: int = _A["DW_AT_high_pc"]
AT_LANGUAGE: int = _A["DW_AT_language"]
AT_STMT_LIST: int = _A["DW_AT_stmt_list"]
AT_COMP_DIR: int = _A["DW_AT_comp_dir"]
AT_PRODUCER: int = _A["DW_AT_producer"]
AT_INLINE: int = _A["DW_AT_inline"]
AT_ABSTRACT_ORIGIN: int = _A["DW_AT_abstract_origin"]
AT_CALLING_CONVENTION: int = _A["DW_AT_calling_convention"]
AT_DECL_FILE: int = _A["DW_AT_decl_file"]
AT_DECL_LINE: int = _A["DW_AT_decl_line"]
AT_DECLARATION: int = _A["DW_AT_declaration"]
AT_EXTERNAL: int = _A["DW_AT_external"]
AT_SPECIFICATION: int = _A["DW_AT_specification"]
AT_RANGES: int = _A["DW_AT_ranges"]
AT_CALL_FILE: int = _A["DW_AT_call_file"]
AT_CALL_LINE: int = _A["DW_AT_call_line"]
AT_ENTRY_PC: int = _A["DW_AT_entry_pc"]
AT_LINKAGE_NAME: int = _A["DW_AT_linkage_name"]
AT_MIPS_LINKAGE_NAME: int = _A["DW_AT_MIPS_linkage_name"]
AT_NORETURN: int = _A["DW_AT_noreturn"]
AT_STR_OFFSETS_BASE: int = _A["DW_AT_str_offsets_base"]
AT_ADDR_BASE: int = _A["DW_AT_addr_base"]
AT_RNGLISTS_BASE: int = _A["DW_AT_rnglists_base"]
AT_LOCLISTS_BASE: int = _A["DW_AT_loclists_base"]
AT_TYPE: int = _A["DW_AT_type"]
AT_BYTE_SIZE: int = _A["DW_AT_byte_size"]
AT_CONST_VALUE: int = _A["DW_AT_const_value"]
AT_ENCODING: int = _A["DW_AT_encoding"]

# The attributes the scanner keeps; every other attribute is skipped without decoding.
WANTED: frozenset[int] = frozenset(
    {
        AT_SIBLING, AT_LOCATION, AT_NAME, AT_LOW_PC, AT_HIGH_PC, AT_LANGUAGE, AT_STMT_LIST,
        AT_COMP_DIR, AT_PRODUCER, AT_INLINE, AT_ABSTRACT_ORIGIN, AT_CALLING_CONVENTION,
        AT_DECL_FILE, AT_DECL_LINE, AT_DECLARATION, AT_EXTERNAL, AT_SPECIFICATION, AT_RANGES,
        AT_CALL_FILE, AT_CALL_LINE, AT_ENTRY_PC, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME,
        AT_NORETURN, AT_STR_OFFSETS_BASE, AT_ADDR_BASE, AT_RNGLISTS_BASE, AT_LOCLISTS_BASE,
        AT_TYPE, AT_BYTE_SIZE, AT_CONST_VALUE,
    }
)  # fmt: skip

# Step kinds of a plan. SKIP carries a byte count; the others read one form.
K_SKIP = 0
K_U1 = 1
K_U2 = 2
K_U4 = 3
K_U8 = 4
K_ULEB = 5
K_SLEB = 6
K_STRING = 7  # inline NUL-terminated string
K_STRP = 8  # offset into .debug_str
K_LINE_STRP = 9  # offset into .debug_line_str
K_STRX = 10  # index into .debug_str_offsets (uleb)
K_STRX1 = 11
K_STRX2 = 12
K_STRX3 = 13
K_STRX4 = 14
K_ADDR = 15  # target address
K_ADDRX = 16  # index into .debug_addr (uleb)
K_ADDRX1 = 17
K_ADDRX2 = 18
K_ADDRX3 = 19
K_ADDRX4 = 20
K_REF1 = 21  # CU-relative references
K_REF2 = 22
K_REF4 = 23
K_REF8 = 24
K_REF_UDATA = 25
K_REF_ADDR = 26  # absolute .debug_info offset, may point into another CU
K_SEC_OFFSET = 27
K_BLOCK1 = 28
K_BLOCK2 = 29
K_BLOCK4 = 30
K_BLOCK = 31  # uleb length (also exprloc)
K_FLAG_PRESENT = 32
K_IMPLICIT_CONST = 33
K_INDIRECT = 34
K_LISTX = 35  # loclistx / rnglistx (uleb index)
K_FLAG = 36


_STRINGS = frozenset({K_STRING, K_STRP, K_LINE_STRP, K_STRX, K_STRX1, K_STRX2, K_STRX3, K_STRX4})
_CONSTANTS = frozenset({K_U1, K_U2, K_U4, K_U8, K_ULEB, K_SLEB, K_IMPLICIT_CONST})
_REFERENCES = frozenset({K_REF1, K_REF2, K_REF4, K_REF8, K_REF_UDATA, K_REF_ADDR})
_ADDRESSES = frozenset({K_ADDR, K_ADDRX, K_ADDRX1, K_ADDRX2, K_ADDRX3, K_ADDRX4})
# Section offsets: DW_FORM_sec_offset, the DWARF 5 list indices, and the unsigned constants
# (DWARF 2-3 give them as data4/data8); never a signed one.
_OFFSETS = frozenset({K_SEC_OFFSET, K_LISTX, K_U1, K_U2, K_U4, K_U8, K_ULEB})
_BLOCKS = frozenset({K_BLOCK, K_BLOCK1, K_BLOCK2, K_BLOCK4})

# The forms (step kinds) each kept attribute may have (DWARF 5 section 7.5.5, table 7.5): a
# declaration giving another form is corrupt, and the attribute is skipped rather than decoded
# into a value of a type the scanner does not expect (a name that is a number, a reference
# that is a block). Checked once per abbreviation, so the DIE walk pays nothing for it.
_ALLOWED: dict[int, frozenset[int]] = {
    AT_NAME: _STRINGS,
    AT_COMP_DIR: _STRINGS,
    AT_PRODUCER: _STRINGS,
    AT_LINKAGE_NAME: _STRINGS,
    AT_MIPS_LINKAGE_NAME: _STRINGS,
    AT_ABSTRACT_ORIGIN: _REFERENCES,
    AT_SPECIFICATION: _REFERENCES,
    AT_SIBLING: _REFERENCES,
    AT_DECL_FILE: _CONSTANTS,
    AT_DECL_LINE: _CONSTANTS,
    AT_CALL_FILE: _CONSTANTS,
    AT_CALL_LINE: _CONSTANTS,
    AT_INLINE: _CONSTANTS,
    AT_CALLING_CONVENTION: _CONSTANTS,
    AT_LANGUAGE: _CONSTANTS,
    AT_EXTERNAL: _CONSTANTS | {K_FLAG, K_FLAG_PRESENT},
    AT_DECLARATION: _CONSTANTS | {K_FLAG, K_FLAG_PRESENT},
    AT_NORETURN: _CONSTANTS | {K_FLAG, K_FLAG_PRESENT},
    AT_LOW_PC: _ADDRESSES,
    AT_HIGH_PC: _ADDRESSES | _CONSTANTS,
    AT_ENTRY_PC: _ADDRESSES | _CONSTANTS,
    AT_RANGES: _OFFSETS,
    AT_STMT_LIST: _OFFSETS,
    AT_STR_OFFSETS_BASE: _OFFSETS,
    AT_ADDR_BASE: _OFFSETS,
    AT_RNGLISTS_BASE: _OFFSETS,
    AT_LOCLISTS_BASE: _OFFSETS,
    AT_LOCATION: _BLOCKS | _OFFSETS,
    AT_TYPE: _REFERENCES,
    AT_BYTE_SIZE: _CONSTANTS,
    AT_ENCODING: _CONSTANTS,
}


def form_fits(attr: int, kind: int) -> bool:
    """Whether a kept attribute may have a form of this step kind (DW_FORM_indirect always may:
    its real form is checked when a DIE is decoded)."""
    allowed = _ALLOWED.get(attr)
    return allowed is None or kind in allowed or kind == K_INDIRECT


def form_step(form: int, address_size: int, offset_size: int) -> tuple[int, int]:
    """The (step kind, fixed size or 0) that decodes one form; fixed size 0 means variable."""
    f = _FORM_STEPS.get(form)
    if f is None:
        raise ValueError(f"unknown DW_FORM 0x{form:x}")
    kind, size = f
    if kind in (K_ADDR,):
        size = address_size
    elif kind in (K_STRP, K_LINE_STRP, K_REF_ADDR, K_SEC_OFFSET):
        size = offset_size
    return kind, size


_FORM_STEPS: dict[int, tuple[int, int]] = {
    _F["DW_FORM_addr"]: (K_ADDR, -1),
    _F["DW_FORM_block2"]: (K_BLOCK2, 0),
    _F["DW_FORM_block4"]: (K_BLOCK4, 0),
    _F["DW_FORM_data2"]: (K_U2, 2),
    _F["DW_FORM_data4"]: (K_U4, 4),
    _F["DW_FORM_data8"]: (K_U8, 8),
    _F["DW_FORM_string"]: (K_STRING, 0),
    _F["DW_FORM_block"]: (K_BLOCK, 0),
    _F["DW_FORM_block1"]: (K_BLOCK1, 0),
    _F["DW_FORM_data1"]: (K_U1, 1),
    _F["DW_FORM_flag"]: (K_FLAG, 1),
    _F["DW_FORM_sdata"]: (K_SLEB, 0),
    _F["DW_FORM_strp"]: (K_STRP, -1),
    _F["DW_FORM_udata"]: (K_ULEB, 0),
    _F["DW_FORM_ref_addr"]: (K_REF_ADDR, -1),
    _F["DW_FORM_ref1"]: (K_REF1, 1),
    _F["DW_FORM_ref2"]: (K_REF2, 2),
    _F["DW_FORM_ref4"]: (K_REF4, 4),
    _F["DW_FORM_ref8"]: (K_REF8, 8),
    _F["DW_FORM_ref_udata"]: (K_REF_UDATA, 0),
    _F["DW_FORM_indirect"]: (K_INDIRECT, 0),
    _F["DW_FORM_sec_offset"]: (K_SEC_OFFSET, -1),
    _F["DW_FORM_exprloc"]: (K_BLOCK, 0),
    _F["DW_FORM_flag_present"]: (K_FLAG_PRESENT, 0),
    _F["DW_FORM_strx"]: (K_STRX, 0),
    _F["DW_FORM_addrx"]: (K_ADDRX, 0),
    _F["DW_FORM_ref_sup4"]: (K_U4, 4),
    _F["DW_FORM_strp_sup"]: (K_SEC_OFFSET, -1),
    _F["DW_FORM_data16"]: (K_SKIP, 16),
    _F["DW_FORM_line_strp"]: (K_LINE_STRP, -1),
    _F["DW_FORM_ref_sig8"]: (K_U8, 8),
    _F["DW_FORM_implicit_const"]: (K_IMPLICIT_CONST, 0),
    _F["DW_FORM_loclistx"]: (K_LISTX, 0),
    _F["DW_FORM_rnglistx"]: (K_LISTX, 0),
    _F["DW_FORM_ref_sup8"]: (K_U8, 8),
    _F["DW_FORM_strx1"]: (K_STRX1, 1),
    _F["DW_FORM_strx2"]: (K_STRX2, 2),
    _F["DW_FORM_strx3"]: (K_STRX3, 3),
    _F["DW_FORM_strx4"]: (K_STRX4, 4),
    _F["DW_FORM_addrx1"]: (K_ADDRX1, 1),
    _F["DW_FORM_addrx2"]: (K_ADDRX2, 2),
    _F["DW_FORM_addrx3"]: (K_ADDRX3, 3),
    _F["DW_FORM_addrx4"]: (K_ADDRX4, 4),
    # GNU extensions GCC may emit for split DWARF and dwz.
    _F["DW_FORM_GNU_addr_index"]: (K_ADDRX, 0),
    _F["DW_FORM_GNU_str_index"]: (K_STRX, 0),
    _F["DW_FORM_GNU_ref_alt"]: (K_SEC_OFFSET, -1),
    _F["DW_FORM_GNU_strp_alt"]: (K_SEC_OFFSET, -1),
}


# What decoding malformed bytes raises: reading past the end of a section (IndexError,
# struct.error), an undefined abbreviation code (KeyError), a bad form or an unterminated string
# (ValueError). The entry points turn these into a `BinaryFormatError` naming the place.
DECODE_ERRORS = (IndexError, ValueError, KeyError, struct.error)

# A LEB128 value longer than 10 bytes (a shift past 70 bits) is corrupt: no DWARF value needs more
# than 64 bits, and decoding an endless run of continuation bytes would build an ever larger
# integer. `uleb` and `sleb` check the literal 70: they are the hottest functions of the scanner.


def explain(e: BaseException) -> str:
    """A short description of a decoding error, for a one-line message."""
    if isinstance(e, KeyError):
        return f"undefined abbreviation code {e.args[0] if e.args else '?'}"
    if isinstance(e, (IndexError, struct.error)):
        return "data runs past the end of its section"
    if isinstance(e, RecursionError):
        return "DIEs nest too deeply"
    text = str(e)
    if text in ("subsection not found", "substring not found"):
        return "unterminated string"
    return text or type(e).__name__


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 at `pos`; return (value, next position)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise ValueError(f"LEB128 value at 0x{pos:x} is longer than 10 bytes")


def sleb(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a signed LEB128 at `pos`; return (value, next position)."""
    value = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                value -= 1 << shift
            return value, pos
        if shift > 70:
            raise ValueError(f"LEB128 value at 0x{pos:x} is longer than 10 bytes")


def cstr(data: bytes, pos: int) -> str:
    """The NUL-terminated string at `pos`, decoded as UTF-8 (bad bytes replaced)."""
    end = data.index(0, pos)
    return data[pos:end].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Abbrev:
    """One abbreviation with its precomputed skip and decode plans."""

    tag: int
    has_children: bool
    # Skip plan: total size when every form is fixed, else -1 and `skip_steps` is used.
    fixed_size: int
    skip_steps: tuple[tuple[int, int], ...]
    # Offset of a 4-byte CU-relative DW_AT_sibling from the DIE's first attribute byte, or -1.
    sibling_at: int
    # Decode plan: (kind, size/implicit value, attribute or -1 to skip) per step.
    decode_steps: tuple[tuple[int, int, int], ...]


def parse_abbrev_table(
    data: bytes,
    offset: int,
    address_size: int,
    offset_size: int,
    source: str,
    plans: dict[bytes, Abbrev],
    only_code: int | None = None,
    wanted: frozenset[int] = WANTED,
) -> dict[int, Abbrev]:
    """Parse the abbreviation table at `offset` of .debug_abbrev into plans keyed by code.

    `plans` caches plans by the declaration's bytes (for one address and offset size): the
    kernel's 2,172 tables repeat the same few thousand declarations. With `only_code`, return
    just that abbreviation: reading a unit's top DIE then costs a fraction of the whole table.
    `wanted` are the attributes the plans decode (a cache of plans is for one `wanted` only).
    """
    table: dict[int, Abbrev] = {}
    pos = offset
    if only_code is not None:
        found = _skip_to_code(data, offset, only_code)
        if found is not None:
            pos = found
    try:
        while True:
            code = data[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(data, pos)
            if code == 0:
                return table
            start = pos
            # Walk to the end of the declaration; plan it only when its bytes are new.
            _tag, pos = uleb(data, pos)
            pos += 1  # DW_CHILDREN_*
            while True:
                attr = data[pos]
                if attr < 0x80:
                    pos += 1
                else:
                    attr, pos = uleb(data, pos)
                form = data[pos]
                if form < 0x80:
                    pos += 1
                else:
                    form, pos = uleb(data, pos)
                if attr == 0 and form == 0:
                    break
                if form == _IMPLICIT_CONST:
                    _value, pos = sleb(data, pos)
            if only_code is not None and code != only_code:
                continue
            key = data[start:pos]
            plan = plans.get(key)
            if plan is None:
                plan = _plan_declaration(data, start, address_size, offset_size, wanted)
                plans[key] = plan
            table[code] = plan
            if only_code is not None:
                return table
    except DECODE_ERRORS as e:
        raise BinaryFormatError(
            f"{source}: bad .debug_abbrev table at 0x{offset:x}: {explain(e)}"
        ) from None


_IMPLICIT_CONST: int = _F["DW_FORM_implicit_const"]


def _skip_to_code(data: bytes, offset: int, code: int) -> int | None:
    """Where abbreviation `code`'s declaration starts in the table at `offset`, or None.

    GCC numbers a table's abbreviations 1, 2, 3... in order, so `code` is usually the code-th
    declaration: skip code - 1 declarations and check the code found there; None (read the
    table declaration by declaration) when it is not. A declaration's attribute list ends at the
    first (0, 0) byte pair, found with `bytes.index`. In minimal LEB128 the only other zero byte
    is the last one of a DW_FORM_implicit_const value; when that value is the last attribute,
    the pair found is one byte early and a third zero follows it, so that case (or the end of
    the table) is walked attribute by attribute.
    """
    pos = offset
    try:
        for _ in range(code - 1):
            if data[pos] >= 0x80:
                _, pos = uleb(data, pos)
            elif data[pos]:
                pos += 1
            else:
                return None  # the end of the table before `code`
            if data[pos] >= 0x80:
                _, pos = uleb(data, pos)
            else:
                pos += 1
            pos += 1  # DW_CHILDREN_*
            end = data.index(b"\0\0", pos) + 2
            pos = end if data[end] else _walk_attributes(data, pos)
        found, _ = uleb(data, pos)
    except DECODE_ERRORS:
        return None
    return pos if found == code else None


def _walk_attributes(data: bytes, pos: int) -> int:
    """The end of the (attribute, form) pairs of a declaration that start at `pos`."""
    while True:
        attr, pos = uleb(data, pos)
        form, pos = uleb(data, pos)
        if attr == 0 and form == 0:
            return pos
        if form == _IMPLICIT_CONST:
            _value, pos = sleb(data, pos)


def _plan_declaration(
    data: bytes, pos: int, address_size: int, offset_size: int, wanted: frozenset[int]
) -> Abbrev:
    tag, pos = uleb(data, pos)
    has_children = data[pos] != 0
    pos += 1
    specs: list[tuple[int, int, int]] = []
    while True:
        attr, pos = uleb(data, pos)
        form, pos = uleb(data, pos)
        if attr == 0 and form == 0:
            return _plan(tag, has_children, specs, address_size, offset_size, wanted)
        implicit = 0
        if form == _IMPLICIT_CONST:
            implicit, pos = sleb(data, pos)
        specs.append((attr, form, implicit))


def _plan(
    tag: int,
    has_children: bool,
    specs: list[tuple[int, int, int]],
    address_size: int,
    offset_size: int,
    wanted_attributes: frozenset[int],
) -> Abbrev:
    skip: list[tuple[int, int]] = []
    decode: list[tuple[int, int, int]] = []
    fixed = 0  # bytes of fixed-size forms since the last variable one
    all_fixed = True
    sibling_at = -1
    prefix = 0  # fixed offset of the current attribute, while every earlier one is fixed
    for attr, form, implicit in specs:
        kind, size = form_step(form, address_size, offset_size)
        if attr == AT_SIBLING and kind == K_REF4 and all_fixed:
            sibling_at = prefix
        wanted = attr in wanted_attributes and form_fits(attr, kind)
        if kind == K_IMPLICIT_CONST:
            if wanted:
                decode.append((kind, implicit, attr))
            continue
        if kind == K_FLAG_PRESENT:
            if wanted:
                decode.append((kind, 1, attr))
            continue
        if size > 0:
            fixed += size
            prefix += size
            if wanted:
                decode.append((kind, size, attr))
            elif decode and decode[-1][0] == K_SKIP:
                decode[-1] = (K_SKIP, decode[-1][1] + size, -1)
            else:
                decode.append((K_SKIP, size, -1))
            continue
        all_fixed = False
        if fixed:
            skip.append((K_SKIP, fixed))
            fixed = 0
        skip.append((kind, 0))
        decode.append((kind, 0, attr if wanted else -1))
    if fixed:
        skip.append((K_SKIP, fixed))
    return Abbrev(
        tag=tag,
        has_children=has_children,
        fixed_size=prefix if all_fixed else -1,
        skip_steps=tuple(skip),
        sibling_at=sibling_at,
        decode_steps=tuple(decode),
    )
