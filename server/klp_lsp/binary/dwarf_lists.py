"""DWARF side tables the scanner consults: line-program file names, range and location lists.

Each function reads one entry of one section, so a worker process can decode any CU on its own.
Malformed data raises `ValueError` naming the section and the offset of the entry; a list longer
than `MAX_LIST_ENTRIES` is malformed too (a corrupt one could otherwise be read to the end of its
section by every DIE that points into it).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence

from elftools.dwarf.enums import ENUM_DW_LNCT

from klp_lsp.binary.dwarf_abbrev import (
    DECODE_ERRORS,
    K_BLOCK,
    K_BLOCK1,
    K_BLOCK2,
    K_BLOCK4,
    K_FLAG,
    K_LINE_STRP,
    K_SKIP,
    K_STRING,
    K_STRP,
    K_U1,
    K_U2,
    K_U4,
    K_U8,
    K_ULEB,
    U16,
    U32,
    U64,
    cstr,
    explain,
    form_step,
    uleb,
)
from klp_lsp.limits import MAX_LIST_ENTRIES

_LNCT_PATH: int = ENUM_DW_LNCT["DW_LNCT_path"]
_LNCT_DIRECTORY_INDEX: int = ENUM_DW_LNCT["DW_LNCT_directory_index"]

Ranges = tuple[tuple[int, int], ...]


def read_addr(data: bytes, pos: int, size: int) -> int:
    """A little-endian target address of `size` bytes."""
    if size == 8:
        return U64(data, pos)[0]
    if size == 4:
        return U32(data, pos)[0]
    return int.from_bytes(data[pos : pos + size], "little")


def normalise_path(comp_dir: str, directory: str, name: str) -> str:
    """Join a line-table entry to its directory; relative to comp_dir when it lies inside it.

    The kernel compiles with relative names, so `./include/linux/list.h` becomes
    `include/linux/list.h` and `/build/linux/fs/xfs/xfs_inode.c` with comp_dir `/build/linux`
    becomes `fs/xfs/xfs_inode.c`.
    """
    path = posixpath.normpath(posixpath.join(comp_dir, directory, name))
    if comp_dir:
        root = posixpath.normpath(comp_dir)
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
    return path


def normalise_paths(comp_dir: str, entries: Sequence[tuple[str, str] | None]) -> list[str | None]:
    """`normalise_path` of every entry of a line table, each directory normalised once.

    A unit lists a few dozen directories and hundreds of files; a name without `/` or `.`
    segments joins its normalised directory as it is, which is what `normpath` would give.
    """
    root = posixpath.normpath(comp_dir) + "/" if comp_dir else ""
    dirs: dict[str, str] = {}
    out: list[str | None] = []
    for entry in entries:
        if entry is None:
            out.append(None)
            continue
        directory, name = entry
        if "/" in name or name in (".", "..") or name.startswith("."):
            out.append(normalise_path(comp_dir, directory, name))
            continue
        base = dirs.get(directory)
        if base is None:
            base = posixpath.normpath(posixpath.join(comp_dir, directory))
            if root and (base + "/").startswith(root):
                base = base[len(root) :]
            dirs[directory] = base
        out.append(f"{base}/{name}" if base and base != "." else name)
    return out


def _context(section: str, offset: int, e: BaseException) -> ValueError:
    return ValueError(f"{section}+0x{offset:x}: {explain(e)}")


def _too_long() -> ValueError:
    return ValueError(f"the list has more than {MAX_LIST_ENTRIES} entries")


def line_file_table(
    line: bytes, line_str: bytes, debug_str: bytes, offset: int, comp_dir: str
) -> list[tuple[str, str] | None]:
    """The (directory, name) of each file of the line program at `offset`, by DW_AT_decl_file.

    DWARF 5: index 0 is the primary file and directory 0 is comp_dir. DWARF 2-4: file indices are
    1-based (slot 0 is None) and directory 0 means comp_dir. `normalise_path` makes a path of an
    entry; callers do it only for the entries they use.
    """
    try:
        return _line_file_table(line, line_str, debug_str, offset, comp_dir)
    except DECODE_ERRORS as e:
        raise _context(".debug_line", offset, e) from None


def _line_file_table(
    line: bytes, line_str: bytes, debug_str: bytes, offset: int, comp_dir: str
) -> list[tuple[str, str] | None]:
    pos = offset
    unit_length = U32(line, pos)[0]
    pos += 4
    offset_size = 4
    if unit_length == 0xFFFFFFFF:
        offset_size = 8
        pos += 8
    version = U16(line, pos)[0]
    pos += 2
    if version >= 5:
        address_size = line[pos]
        pos += 2  # address_size, segment_selector_size
    else:
        address_size = 8
    pos += offset_size  # header_length
    pos += 2 if version < 4 else 3  # min_inst_length, [max_ops_per_inst], default_is_stmt
    pos += 2  # line_base, line_range
    opcode_base = line[pos]
    pos += opcode_base  # opcode_base byte itself plus standard_opcode_lengths
    if version < 5:
        dirs = [comp_dir]
        while line[pos]:
            end = line.index(0, pos)
            dirs.append(line[pos:end].decode("utf-8", "replace"))
            pos = end + 1
        pos += 1
        files: list[tuple[str, str] | None] = [None]
        while line[pos]:
            end = line.index(0, pos)
            name = line[pos:end].decode("utf-8", "replace")
            pos = end + 1
            dir_index, pos = uleb(line, pos)
            _mtime, pos = uleb(line, pos)
            _length, pos = uleb(line, pos)
            directory = dirs[dir_index] if dir_index < len(dirs) else ""
            files.append((directory, name))
        return files

    def entries(pos: int) -> tuple[list[tuple[str, int]], int]:
        nformats = line[pos]
        pos += 1
        formats = []
        for _ in range(nformats):
            ctype, pos = uleb(line, pos)
            form, pos = uleb(line, pos)
            formats.append((ctype, form_step(form, address_size, offset_size)))
        count, pos = uleb(line, pos)
        # Every entry takes at least one byte: a larger count is corrupt, and without formats
        # nothing would advance.
        if count and (not formats or count > len(line) - pos):
            raise ValueError(f"{count} entries of {len(formats)} fields do not fit the header")
        out = []
        for _ in range(count):
            path = ""
            dir_index = 0
            for ctype, (kind, size) in formats:
                value: int | str = 0
                if kind in (K_LINE_STRP, K_STRP):
                    off = U32(line, pos)[0] if size == 4 else U64(line, pos)[0]
                    value = cstr(line_str if kind == K_LINE_STRP else debug_str, off)
                    pos += size
                elif kind == K_STRING:
                    end = line.index(0, pos)
                    value = line[pos:end].decode("utf-8", "replace")
                    pos = end + 1
                elif kind == K_ULEB:
                    value, pos = uleb(line, pos)
                elif kind in (K_U1, K_FLAG):
                    value = line[pos]
                    pos += 1
                elif kind == K_U2:
                    value = U16(line, pos)[0]
                    pos += 2
                elif kind == K_U4:
                    value = U32(line, pos)[0]
                    pos += 4
                elif kind == K_U8:
                    value = U64(line, pos)[0]
                    pos += 8
                elif kind == K_SKIP:
                    pos += size
                elif kind in (K_BLOCK, K_BLOCK1, K_BLOCK2, K_BLOCK4):
                    if kind == K_BLOCK:
                        n, pos = uleb(line, pos)
                    elif kind == K_BLOCK1:
                        n, pos = line[pos], pos + 1
                    elif kind == K_BLOCK2:
                        n, pos = U16(line, pos)[0], pos + 2
                    else:
                        n, pos = U32(line, pos)[0], pos + 4
                    pos += n
                else:
                    raise ValueError(f"unsupported form in line table header (kind {kind})")
                if ctype == _LNCT_PATH and isinstance(value, str):
                    path = value
                elif ctype == _LNCT_DIRECTORY_INDEX and isinstance(value, int):
                    dir_index = value
            out.append((path, dir_index))
        return out, pos

    dir_entries, pos = entries(pos)
    file_entries, pos = entries(pos)
    dirs5 = [d for d, _ in dir_entries]
    if dirs5:
        # Directory 0 is the compilation directory (DWARF 5 section 6.2.4, item 20).
        dirs5[0] = comp_dir or dirs5[0]
    return [(dirs5[d] if d < len(dirs5) else "", name) for name, d in file_entries]


def rnglist(
    data: bytes, pos: int, base: int, address_size: int, addr: bytes, addr_base: int
) -> Ranges:
    """Decode a DWARF 5 range list (DW_RLE_*) at `pos` of .debug_rnglists."""
    start = pos
    try:
        out: list[tuple[int, int]] = []
        for _ in range(MAX_LIST_ENTRIES):
            kind = data[pos]
            pos += 1
            if kind == 0:  # DW_RLE_end_of_list
                return tuple(out)
            if kind == 1:  # DW_RLE_base_addressx
                i, pos = uleb(data, pos)
                base = read_addr(addr, addr_base + i * address_size, address_size)
            elif kind == 2:  # DW_RLE_startx_endx
                i, pos = uleb(data, pos)
                j, pos = uleb(data, pos)
                lo = read_addr(addr, addr_base + i * address_size, address_size)
                hi = read_addr(addr, addr_base + j * address_size, address_size)
                out.append((lo, hi))
            elif kind == 3:  # DW_RLE_startx_length
                i, pos = uleb(data, pos)
                n, pos = uleb(data, pos)
                lo = read_addr(addr, addr_base + i * address_size, address_size)
                out.append((lo, lo + n))
            elif kind == 4:  # DW_RLE_offset_pair
                a, pos = uleb(data, pos)
                b, pos = uleb(data, pos)
                out.append((base + a, base + b))
            elif kind == 5:  # DW_RLE_base_address
                base = read_addr(data, pos, address_size)
                pos += address_size
            elif kind == 6:  # DW_RLE_start_end
                lo = read_addr(data, pos, address_size)
                hi = read_addr(data, pos + address_size, address_size)
                pos += 2 * address_size
                out.append((lo, hi))
            elif kind == 7:  # DW_RLE_start_length
                lo = read_addr(data, pos, address_size)
                pos += address_size
                n, pos = uleb(data, pos)
                out.append((lo, lo + n))
            else:
                raise ValueError(f"unknown DW_RLE 0x{kind:x}")
        raise _too_long()
    except DECODE_ERRORS as e:
        raise _context(".debug_rnglists", start, e) from None


def ranges_v4(data: bytes, pos: int, base: int, address_size: int) -> Ranges:
    """Decode a DWARF 2-4 range list at `pos` of .debug_ranges."""
    entries = _v4_entries(data, pos, base, address_size, ".debug_ranges", expressions=False)
    return tuple((lo, hi) for lo, hi, _ in entries)


def _v4_entries(
    data: bytes, pos: int, base: int, address_size: int, section: str, *, expressions: bool
) -> Iterator[tuple[int, int, bytes]]:
    """The (lo, hi, expression) entries of a DWARF 2-4 range or location list at `pos`.

    Both are pairs of addresses ended by (0, 0), where a pair whose first address is all ones
    selects a new base address; a location list's pairs are followed by a 2-byte length and
    that many bytes of expression (`expressions`), a range list's are not (expression b"").
    """
    start = pos
    try:
        top = (1 << (8 * address_size)) - 1
        for _ in range(MAX_LIST_ENTRIES):
            lo = read_addr(data, pos, address_size)
            hi = read_addr(data, pos + address_size, address_size)
            pos += 2 * address_size
            if lo == 0 and hi == 0:
                return
            if lo == top:
                base = hi
                continue
            expression = b""
            if expressions:
                n = U16(data, pos)[0]
                pos += 2
                expression = data[pos : pos + n]
                pos += n
            yield base + lo, base + hi, expression
        raise _too_long()
    except DECODE_ERRORS as e:
        raise _context(section, start, e) from None


def iter_loclist(
    data: bytes, pos: int, base: int, address_size: int, addr: bytes, addr_base: int
) -> Iterator[tuple[int, int, bytes]]:
    """The (lo, hi, expression) entries of the DWARF 5 location list at `pos`, in order.

    A DW_LLE_default_location entry comes as (-1, -1, expression).
    """
    start = pos
    try:
        for _ in range(MAX_LIST_ENTRIES):
            kind = data[pos]
            pos += 1
            lo = hi = -1
            if kind == 0:  # DW_LLE_end_of_list
                return
            if kind == 1:  # DW_LLE_base_addressx
                i, pos = uleb(data, pos)
                base = read_addr(addr, addr_base + i * address_size, address_size)
                continue
            if kind == 6:  # DW_LLE_base_address
                base = read_addr(data, pos, address_size)
                pos += address_size
                continue
            if kind == 2:  # DW_LLE_startx_endx
                i, pos = uleb(data, pos)
                j, pos = uleb(data, pos)
                lo = read_addr(addr, addr_base + i * address_size, address_size)
                hi = read_addr(addr, addr_base + j * address_size, address_size)
            elif kind == 3:  # DW_LLE_startx_length
                i, pos = uleb(data, pos)
                n, pos = uleb(data, pos)
                lo = read_addr(addr, addr_base + i * address_size, address_size)
                hi = lo + n
            elif kind == 4:  # DW_LLE_offset_pair
                a, pos = uleb(data, pos)
                b, pos = uleb(data, pos)
                lo, hi = base + a, base + b
            elif kind == 5:  # DW_LLE_default_location
                pass
            elif kind == 7:  # DW_LLE_start_end
                lo = read_addr(data, pos, address_size)
                hi = read_addr(data, pos + address_size, address_size)
                pos += 2 * address_size
            elif kind == 8:  # DW_LLE_start_length
                lo = read_addr(data, pos, address_size)
                pos += address_size
                n, pos = uleb(data, pos)
                hi = lo + n
            else:
                raise ValueError(f"unknown DW_LLE 0x{kind:x}")
            n, pos = uleb(data, pos)
            yield lo, hi, data[pos : pos + n]
            pos += n
        raise _too_long()
    except DECODE_ERRORS as e:
        raise _context(".debug_loclists", start, e) from None


def iter_loc_v4(
    data: bytes, pos: int, base: int, address_size: int
) -> Iterator[tuple[int, int, bytes]]:
    """The (lo, hi, expression) entries of the DWARF 2-4 location list at `pos` of .debug_loc."""
    return _v4_entries(data, pos, base, address_size, ".debug_loc", expressions=True)


def expression_at(entries: Iterable[tuple[int, int, bytes]], pc: int) -> bytes | None:
    """The expression of a location list's entries that covers `pc`, if any.

    DW_LLE_default_location applies when no bounded entry covers `pc`.
    """
    default: bytes | None = None
    for lo, hi, expr in entries:
        if lo == -1 and hi == -1:
            default = expr
        elif lo <= pc < hi:
            return expr
    return default


def loclist_at(
    data: bytes, pos: int, base: int, address_size: int, addr: bytes, addr_base: int, pc: int
) -> bytes | None:
    """The expression of the DWARF 5 location list at `pos` that covers `pc`, if any."""
    return expression_at(iter_loclist(data, pos, base, address_size, addr, addr_base), pc)


def loc_v4_at(data: bytes, pos: int, base: int, address_size: int, pc: int) -> bytes | None:
    """The expression of the DWARF 2-4 location list at `pos` of .debug_loc covering `pc`."""
    return expression_at(iter_loc_v4(data, pos, base, address_size), pc)
