"""Fast, struct-based reading of kernel ELF objects: sections, FUNC symbols, ftrace records, DWARF.

vmlinux (ET_EXEC on x86-64, PIE ET_DYN on arm64) uses its run-time addresses. A relocatable
module (ET_REL `.ko`) gets a synthetic layout: every SHF_ALLOC section, in section-header order,
is placed at the next address aligned to its `sh_addralign`, starting from 0. Symbol addresses,
relocated DWARF addresses, mcount records and `read_code` all use that same layout.

Every count, size and offset read from the file is checked before use: a malformed file raises
`BinaryFormatError` naming the file and the section or table entry. Nothing larger than
`limits.MAX_SECTION_BYTES` is ever decompressed or zero-filled, nor a compressed module larger
than `limits.MAX_MODULE_BYTES` once decompressed, so a header that claims 2^40 bytes costs
nothing. Addresses stay below 2^64 and FUNC symbols lie inside their sections, so every value
the index stores fits SQLite's signed 64-bit integers.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import lzma
import mmap
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, NamedTuple

from klp_lsp.errors import BinaryFormatError, DebugInfoMissing, UnsupportedArchitecture
from klp_lsp.limits import MAX_MODULE_BYTES, MAX_SECTION_BYTES
from klp_lsp.model import Arch, Binding, ElfSymbol

ElfType = Literal["ET_EXEC", "ET_DYN", "ET_REL"]
ObjectKind = Literal["vmlinux", "module", "other"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_CHDR = struct.Struct("<IIQQ")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

_MACHINES: dict[int, Arch] = {62: "x86_64", 183: "aarch64"}
_ELF_TYPES: dict[int, ElfType] = {1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN"}

SHT_NOBITS = 8
SHT_RELA = 4
SHT_REL = 9
SHT_NOTE = 7
SHT_SYMTAB = 2
SHT_SYMTAB_SHNDX = 18
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
STT_FUNC = 2
STT_GNU_IFUNC = 10
NT_GNU_BUILD_ID = 3

_BINDINGS: dict[int, Binding] = {0: "local", 1: "global", 2: "weak", 10: "global"}
_ADDRESS_SPACE = 1 << 64
# GNU build-ids are 8 to 20 bytes (xxhash, md5, uuid, sha1); a custom `--build-id=0x...` can be
# longer, but a descriptor beyond this is a corrupt note, not a name for an index file.
_MAX_BUILD_ID_BYTES = 64

# Relocation types that only store S + A, by machine: type -> width in bytes. These are the
# only kinds found in the corpus modules' `.rela.debug_*` and `.rela__mcount_loc` /
# `.rela__patchable_function_entries` sections (counted with `readelf -rW` on xfs.ko).
_ABS_RELOCS: dict[Arch, dict[int, int]] = {
    # R_X86_64_64, R_X86_64_32, R_X86_64_32S
    "x86_64": {1: 8, 10: 4, 11: 4},
    # R_AARCH64_ABS64, R_AARCH64_ABS32
    "aarch64": {257: 8, 258: 4},
}
# R_X86_64_RELATIVE, R_AARCH64_RELATIVE: the value is the addend (vmlinux runs at its link
# address; KASLR adds its offset at boot to every record alike).
_RELATIVE_RELOCS: dict[Arch, int] = {"x86_64": 8, "aarch64": 1027}

# Sections whose code ftrace never patches. `.noinstr.text` holds `noinstr` functions
# (include/linux/compiler_types.h puts them there and objtool forbids instrumentation).
INIT_TEXT_SECTIONS = frozenset({".init.text"})
EXIT_TEXT_SECTIONS = frozenset({".exit.text"})
NOINSTR_TEXT_SECTIONS = frozenset({".noinstr.text"})

# Sections holding ftrace call-site records in relocatable objects: x86-64 `-mrecord-mcount`
# writes `__mcount_loc`; arm64 `-fpatchable-function-entry=2` writes
# `__patchable_function_entries` (Debian's arm64 xfs.ko has no `__mcount_loc`).
_MCOUNT_SECTIONS = ("__mcount_loc", "__patchable_function_entries")


@dataclass(frozen=True, slots=True)
class Section:
    """One section header, with its address in the run-time or synthetic layout."""

    index: int
    name: str
    type: int
    flags: int
    address: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int

    @property
    def is_alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def is_exec(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


class Relocation(NamedTuple):
    """One `Elf64_Rela` entry: where (offset in the target section), type, symbol, addend."""

    offset: int
    type: int
    symbol: int  # index into `.symtab` (0: no symbol)
    addend: int


class RawSymbol(NamedTuple):
    """One `.symtab` entry of any type, its address already in this object's layout.

    A NamedTuple rather than a frozen dataclass: a vmlinux has 119 k of them and building
    frozen dataclasses was half of `iter_symbols` (0.22 of 0.43 s on the Debian amd64 vmlinux).
    """

    symtab_index: int  # its index in `.symtab` (relocations name symbols by it)
    name: str
    address: int
    size: int
    type: int
    binding: int
    shndx: int
    section: str | None  # None for undefined, absolute and common symbols


def parse_gnu_build_id(notes: bytes, align: int = 4) -> str | None:
    """The hex NT_GNU_BUILD_ID descriptor in a run of ELF notes (a section, /sys/kernel/notes).

    `align` is the note alignment: 4 normally, 8 in a section whose `sh_addralign` is 8.
    """
    step = 8 if align == 8 else 4
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_start = pos + 12
        desc_start = (name_start + namesz + step - 1) // step * step
        if ntype == NT_GNU_BUILD_ID and notes[name_start : name_start + namesz] == b"GNU\0":
            if descsz > _MAX_BUILD_ID_BYTES:
                return None
            return notes[desc_start : desc_start + descsz].hex() or None
        pos = (desc_start + descsz + step - 1) // step * step
    return None


def _too_large(
    name: str | Path, what: str, limit: int, limit_is: str = "the limit"
) -> BinaryFormatError:
    whole_mib = limit >= 1 << 20 and not limit % (1 << 20)
    size = f"{limit >> 20} MiB" if whole_mib else f"{limit} bytes"
    return BinaryFormatError(f"{name}: {what} is larger than {size} ({limit_is})")


_CHUNK = 1 << 20


def _inflate(
    name: str | Path,
    codec: str,
    raw: bytes,
    limit: int,
    out: BinaryIO,
    limit_is: str = "the limit",
) -> None:
    """Decompress `codec` ("xz" or "zstd") data into `out`, a chunk at a time; errors begin
    with `name` (a file, or a file and section).

    More than `limit` bytes of output is an error, raised as soon as it is reached, so a small
    file that inflates to gigabytes costs no more than `limit` bytes of `out`.
    """
    written = 0

    def put(chunk: bytes) -> None:
        nonlocal written
        written += len(chunk)
        if written > limit:
            raise _too_large(name, "the decompressed data", limit, limit_is)
        out.write(chunk)

    if codec == "xz":
        xz = lzma.LZMADecompressor()
        try:
            put(xz.decompress(raw, max_length=_CHUNK))
            while not xz.eof and not xz.needs_input:
                put(xz.decompress(b"", max_length=_CHUNK))
        except lzma.LZMAError as e:
            raise BinaryFormatError(f"{name}: cannot decompress xz: {e}") from e
        if not xz.eof:
            raise BinaryFormatError(f"{name}: cannot decompress xz: the data is truncated")
        return
    try:
        import zstandard
    except ImportError:
        tool = shutil.which("zstd")
        if tool is None:
            raise DebugInfoMissing(
                f"{name}: is zstd-compressed; install the python 'zstandard' package"
                " or the 'zstd' program"
            ) from None
        _inflate_with_tool(name, tool, raw, put)
        return
    try:
        declared = zstandard.get_frame_parameters(raw).content_size
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
            while chunk := reader.read(_CHUNK):
                put(chunk)
    except zstandard.ZstdError as e:
        raise BinaryFormatError(f"{name}: cannot decompress zstd: {e}") from e
    # The stream reader ends quietly on a truncated frame; the frame header says how much the
    # compressor wrote (zstd records it whenever it knew the input size).
    if declared not in (zstandard.CONTENTSIZE_UNKNOWN, written):
        raise BinaryFormatError(f"{name}: cannot decompress zstd: the data is truncated")


def _inflate_with_tool(
    name: str | Path, tool: str, raw: bytes, put: Callable[[bytes], None]
) -> None:
    """`zstd -dc`, its output passed to `put` a chunk at a time."""
    import threading

    with subprocess.Popen(
        [tool, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        assert stdin is not None and stdout is not None and stderr is not None

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError):
                stdin.write(raw)
            stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            while chunk := stdout.read(_CHUNK):
                put(chunk)
        except BinaryFormatError:
            proc.kill()
            raise
        message = stderr.read().decode(errors="replace").strip().splitlines()
        feeder.join()
    if proc.returncode != 0:
        raise BinaryFormatError(f"{name}: cannot decompress zstd: {' '.join(message)}")


def _decompress_to_mapping(path: Path, raw: bytes) -> mmap.mmap:
    """A compressed module's ELF bytes, decompressed into an unlinked temporary file and mapped.

    The module is never held in memory: the mapping is backed by the file, like an
    uncompressed one.
    """
    with tempfile.TemporaryFile(prefix="klp-lsp-") as f:
        _inflate(path, "xz" if path.name.endswith(".xz") else "zstd", raw, MAX_MODULE_BYTES, f)
        f.flush()
        if f.tell() == 0:
            raise BinaryFormatError(f"{path}: decompresses to nothing, not an ELF object")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _decompress_bytes(name: str, codec: str, raw: bytes, limit: int, limit_is: str) -> bytes:
    """Decompressed bytes of an xz or zstd payload, at most `limit` of them."""
    out = io.BytesIO()
    _inflate(name, codec, raw, limit, out, limit_is)
    return out.getvalue()


class ElfBinary:
    """A little-endian ELF64 object (vmlinux, module, or any other) mapped read-only."""

    def __init__(self, path: Path, data: mmap.mmap | bytes, owner: mmap.mmap | None) -> None:
        self._path = path
        self._mmap = owner
        self._data = memoryview(data)
        try:
            self._parse_headers()
        except BaseException:
            # Drop the view so that `open` can close the mapping it made.
            self._data.release()
            raise
        self._symbols: tuple[RawSymbol, ...] | None = None
        self._function_symbols: tuple[ElfSymbol, ...] | None = None
        self._by_name: dict[str, int] | None = None

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ElfBinary:
        """Open `path` (also `.ko.xz`, `.ko.zst`); raise a klp_lsp error if it is not usable."""
        p = Path(path)
        try:
            if p.name.endswith((".xz", ".zst")):
                if p.stat().st_size > MAX_MODULE_BYTES:
                    raise _too_large(p, "the compressed file", MAX_MODULE_BYTES)
                mapped = _decompress_to_mapping(p, p.read_bytes())
                try:
                    return cls(p, mapped, mapped)
                except BaseException:
                    mapped.close()
                    raise
            with p.open("rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    raise BinaryFormatError(f"{p}: empty file, not an ELF object")
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise BinaryFormatError(f"{p}: cannot read: {e.strerror or e}") from e
        try:
            return cls(p, mapped, mapped)
        except BaseException:
            mapped.close()
            raise

    def close(self) -> None:
        """Release the mapping; the object must not be used afterwards."""
        self._data.release()
        if self._mmap is not None:
            # A caller may still hold a view of section data; the mapping is then released when
            # that view is garbage-collected.
            with contextlib.suppress(BufferError):
                self._mmap.close()
            self._mmap = None

    def __enter__(self) -> ElfBinary:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fail(self, what: str) -> BinaryFormatError:
        return BinaryFormatError(f"{self._path}: {what}")

    def _parse_headers(self) -> None:
        data = self._data
        if len(data) < 16 or bytes(data[:4]) != b"\x7fELF":
            raise self._fail("not an ELF file")
        if data[4] != 2:
            raise UnsupportedArchitecture(f"{self._path}: 32-bit ELF is not supported")
        if data[5] != 1:
            raise UnsupportedArchitecture(f"{self._path}: big-endian ELF is not supported")
        if len(data) < _EHDR.size:
            raise self._fail("truncated ELF header")
        (_, e_type, e_machine, _, _, _, e_shoff, _, _, _, _, e_shentsize, e_shnum, e_shstrndx) = (
            _EHDR.unpack_from(data, 0)
        )
        if e_machine not in _MACHINES:
            raise UnsupportedArchitecture(
                f"{self._path}: ELF machine {e_machine} is not supported (only x86-64 and aarch64)"
            )
        if e_type not in _ELF_TYPES:
            raise self._fail(
                f"ELF type {e_type} is not an executable, shared or relocatable object"
            )
        self._arch: Arch = _MACHINES[e_machine]
        self._elf_type: ElfType = _ELF_TYPES[e_type]
        if e_shoff == 0:
            raise self._fail("no section headers")
        if e_shentsize != _SHDR.size:
            raise self._fail(f"section header size {e_shentsize}, expected {_SHDR.size}")
        if e_shoff + _SHDR.size > len(data):
            raise self._fail("truncated: section headers lie past the end of the file")
        first = _SHDR.unpack_from(data, e_shoff)
        # Extended numbering (ELF gABI): counts that do not fit live in section 0.
        shnum = e_shnum or first[5]
        shstrndx = first[6] if e_shstrndx == SHN_XINDEX else e_shstrndx
        if e_shoff + shnum * _SHDR.size > len(data):
            raise self._fail("truncated: section headers lie past the end of the file")
        raw = [_SHDR.unpack_from(data, e_shoff + i * _SHDR.size) for i in range(shnum)]
        for i, h in enumerate(raw):
            if h[1] != SHT_NOBITS and h[4] + h[5] > len(data):
                raise self._fail(f"truncated: section {i} lies past the end of the file")
        if not 0 < shstrndx < shnum:
            raise self._fail("no section name table")
        names_off, names_size = raw[shstrndx][4], raw[shstrndx][5]
        names = bytes(data[names_off : names_off + names_size])

        addresses = [h[3] for h in raw]
        if self._elf_type == "ET_REL":
            # The synthetic layout (see the module docstring); non-ALLOC sections stay at 0 so
            # relocations against `.debug_str` and friends resolve to section offsets.
            next_address = 0
            for i, h in enumerate(raw):
                if i and h[2] & SHF_ALLOC:
                    align = max(h[8], 1)
                    next_address = (next_address + align - 1) // align * align
                    addresses[i] = next_address
                    next_address += h[5]
                    if next_address > _ADDRESS_SPACE:
                        raise self._fail(
                            f"section {i}: sh_size {h[5]:#x} or sh_addralign {h[8]:#x}"
                            " puts the module's sections past 2^64"
                        )
                else:
                    addresses[i] = 0
        self._sections: list[Section] = []
        for i, h in enumerate(raw):
            end = names.find(b"\0", h[0])
            name = names[h[0] : end if end >= 0 else None].decode("utf-8", "replace")
            self._sections.append(
                Section(i, name, h[1], h[2], addresses[i], h[4], h[5], h[6], h[7], h[8], h[9])
            )
        self._section_by_name: dict[str, Section] = {}
        for s in self._sections:
            self._section_by_name.setdefault(s.name, s)
        self._alloc_sorted = sorted(
            (s for s in self._sections if s.is_alloc and s.size), key=lambda s: s.address
        )
        self._alloc_starts = [s.address for s in self._alloc_sorted]

    # --- properties ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def arch(self) -> Arch:
        return self._arch

    @property
    def elf_type(self) -> ElfType:
        return self._elf_type

    @property
    def sections(self) -> tuple[Section, ...]:
        return tuple(self._sections)

    @property
    def kind(self) -> ObjectKind:
        """`module` for a relocatable object with `.modinfo`; `vmlinux` for a linked kernel."""
        if self._elf_type == "ET_REL":
            return "module" if ".modinfo" in self._section_by_name else "other"
        if self._path.name.startswith("vmlinux") or self.get_symbol_address("linux_banner"):
            return "vmlinux"
        return "other"

    @property
    def object_name(self) -> str:
        """The livepatch object name: `vmlinux`, the `.modinfo` `name=`, or the file name."""
        kind = self.kind
        if kind == "vmlinux":
            return "vmlinux"
        if kind == "module":
            name = self.get_modinfo().get("name")
            if name:
                return name
            # The kernel derives KBUILD_MODNAME from the file name with '-' turned into '_'.
            base = self._path.name
            for suffix in (".xz", ".zst", ".ko"):
                base = base.removesuffix(suffix)
            return base.replace("-", "_")
        return self._path.name

    @property
    def build_id(self) -> str:
        """Hex GNU build-id; without a `.note.gnu.build-id`, `sha1:` + the sha1 of the file bytes.

        The sha1 fallback is stable for the same file content, so an index keyed by it is reused,
        but it is slower (reads the whole file) and differs from any kernel-reported build-id.
        """
        found = self.get_gnu_build_id()
        if found is not None:
            return found
        return "sha1:" + hashlib.sha1(self._data).hexdigest()

    @property
    def has_dwarf(self) -> bool:
        return ".debug_info" in self._section_by_name

    def section_size(self, s: Section) -> int:
        """The size of `s`'s contents once decompressed (its ch_size when SHF_COMPRESSED)."""
        if not s.flags & SHF_COMPRESSED or s.size < _CHDR.size:
            return s.size
        return int(_CHDR.unpack_from(self._data, s.offset)[2])

    @property
    def dwarf_size(self) -> int:
        """Bytes of the DWARF an index walks (.debug_info and location lists, decompressed): a
        binary's indexing cost, which its file size is not (an amd64 vmlinux file is twice an
        arm64 one's size and takes less time)."""
        names = (".debug_info", ".debug_loclists", ".debug_loc")
        return sum(self.section_size(s) for s in self._sections if s.name in names)

    def get_gnu_build_id(self) -> str | None:
        """The NT_GNU_BUILD_ID note of any SHT_NOTE section, in hex, or None."""
        for s in self._sections:
            if s.type == SHT_NOTE and s.size:
                found = parse_gnu_build_id(bytes(self._data[s.offset : s.offset + s.size]), s.align)
                if found is not None:
                    return found
        return None

    def iter_notes(self) -> Iterator[tuple[bytes, int, bytes]]:
        """(name, type, descriptor) of every ELF note in the SHT_NOTE sections."""
        for s in self._sections:
            if s.type != SHT_NOTE or not s.size:
                continue
            data = bytes(self._data[s.offset : s.offset + s.size])
            step = 8 if s.align == 8 else 4
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                name_start = pos + 12
                desc_start = (name_start + namesz + step - 1) // step * step
                yield (
                    data[name_start : name_start + namesz].rstrip(b"\0"),
                    ntype,
                    data[desc_start : desc_start + descsz],
                )
                pos = (desc_start + descsz + step - 1) // step * step

    def get_modinfo(self) -> dict[str, str]:
        """The `key=value` strings of `.modinfo` (the first value of each key)."""
        data = self.get_section_data(".modinfo")
        info: dict[str, str] = {}
        if data is None:
            return info
        for entry in bytes(data).split(b"\0"):
            key, sep, value = entry.partition(b"=")
            if sep:
                info.setdefault(key.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
        return info

    # --- sections -----------------------------------------------------------------------------

    def get_section(self, name: str) -> Section | None:
        """The first section called `name`, or None."""
        return self._section_by_name.get(name)

    def _section_bytes(self, s: Section) -> memoryview | bytes:
        if s.type == SHT_NOBITS:
            if s.size > MAX_SECTION_BYTES:
                raise _too_large(
                    self._path, f"section {s.name} ({s.size:#x} bytes)", MAX_SECTION_BYTES
                )
            return bytes(s.size)
        view = self._data[s.offset : s.offset + s.size]
        if not s.flags & SHF_COMPRESSED:
            return view
        if s.size < _CHDR.size:
            raise self._fail(f"compressed section {s.name} is truncated")
        ch_type, _, ch_size, _ = _CHDR.unpack_from(view, 0)
        if ch_size > MAX_SECTION_BYTES:
            raise _too_large(
                self._path, f"section {s.name} (ch_size {ch_size:#x})", MAX_SECTION_BYTES
            )
        payload = bytes(view[_CHDR.size :])
        try:
            if ch_type == 1:  # ELFCOMPRESS_ZLIB
                inflate = zlib.decompressobj()
                out = inflate.decompress(payload, ch_size + 1)
            elif ch_type == 2:  # ELFCOMPRESS_ZSTD
                where = f"{self._path}: section {s.name}"
                out = _decompress_bytes(where, "zstd", payload, ch_size, "its ch_size")
            else:
                raise self._fail(f"section {s.name} uses unknown compression {ch_type}")
        except zlib.error as e:
            raise self._fail(f"section {s.name}: cannot decompress: {e}") from e
        if len(out) != ch_size:
            raise self._fail(f"section {s.name}: decompresses to other than {ch_size} bytes")
        return out

    def get_section_data(self, name: str) -> memoryview | bytes | None:
        """The contents of the first section called `name` (decompressed), or None."""
        s = self._section_by_name.get(name)
        return None if s is None else self._section_bytes(s)

    def get_section_bytes(self, section: Section) -> memoryview | bytes:
        """The contents of `section` (decompressed; zeros for SHT_NOBITS)."""
        return self._section_bytes(section)

    def find_section_at(self, address: int) -> Section | None:
        """The allocated section whose [address, address + size) holds `address`, or None."""
        lo = bisect.bisect_right(self._alloc_starts, address)
        # Zero-sized sections were left out, so a hit is unambiguous except for overlapping
        # sections such as `.tbss`, which this scan over predecessors also finds.
        for i in range(lo - 1, -1, -1):
            s = self._alloc_sorted[i]
            if address < s.address + s.size:
                return s
            if s.type != SHT_NOBITS:
                break
        return None

    def read_code(self, address: int, size: int) -> bytes:
        """`size` bytes at `address` (this object's layout); unrelocated for ET_REL."""
        s = self.find_section_at(address)
        if s is None or size < 0 or address + size > s.address + s.size:
            raise self._fail(f"no section holds {size} bytes at {address:#x}")
        if s.type == SHT_NOBITS:
            if size > MAX_SECTION_BYTES:
                raise _too_large(self._path, f"a read of {size:#x} bytes", MAX_SECTION_BYTES)
            return bytes(size)
        start = s.offset + address - s.address
        return bytes(self._data[start : start + size])

    # --- symbols ------------------------------------------------------------------------------

    def iter_symbols(self) -> tuple[RawSymbol, ...]:
        """Every `.symtab` entry (index 0 excluded) in table order, read with `struct`.

        Decoded once per open binary: the builder, kallsyms, relocations and the register
        analyser all ask for it.
        """
        if self._symbols is not None:
            return self._symbols
        symtab = next((s for s in self._sections if s.type == SHT_SYMTAB), None)
        if symtab is None:
            self._symbols = ()
            return self._symbols
        if symtab.link >= len(self._sections):
            raise self._fail(".symtab links to a missing string table")
        strtab = self._sections[symtab.link]
        strings = bytes(self._data[strtab.offset : strtab.offset + strtab.size])
        shndx_table: memoryview | None = None
        for s in self._sections:
            if s.type == SHT_SYMTAB_SHNDX and s.link == symtab.index:
                shndx_table = self._data[s.offset : s.offset + s.size]
        sections = self._sections
        nsections = len(sections)
        relocatable = self._elf_type == "ET_REL"
        table = self._data[symtab.offset : symtab.offset + symtab.size - symtab.size % _SYM.size]
        out: list[RawSymbol] = []
        cache: dict[int, str] = {}
        for index, (st_name, info, _, shndx, value, size) in enumerate(_SYM.iter_unpack(table)):
            if index == 0:
                continue
            name = cache.get(st_name)
            if name is None:
                end = strings.find(b"\0", st_name)
                name = strings[st_name : end if end >= 0 else None].decode("utf-8", "replace")
                cache[st_name] = name
            if shndx == SHN_XINDEX and shndx_table is not None:
                if index * 4 + 4 > len(shndx_table):
                    raise self._fail(f".symtab_shndx has no entry for symbol {index}")
                shndx = _U32.unpack_from(shndx_table, index * 4)[0]
            section: str | None = None
            address = value
            if SHN_UNDEF < shndx < nsections and (shndx < SHN_LORESERVE or shndx_table is not None):
                sec = sections[shndx]
                section = sec.name
                if relocatable:
                    # As the loader computes it, modulo 2^64.
                    address = (value + sec.address) % _ADDRESS_SPACE
            out.append(RawSymbol(index, name, address, size, info & 0xF, info >> 4, shndx, section))
        self._symbols = tuple(out)
        return self._symbols

    def iter_function_symbols(self) -> tuple[ElfSymbol, ...]:
        """Defined FUNC (and GNU_IFUNC) symbols in `.symtab` order.

        Kept: zero-sized FUNC symbols (asm entry points without `.size`; callers must not assume
        they cover a range). Dropped: undefined ones, and names starting with `$` (arm64
        mapping symbols such as `$x`/`$d` are NOTYPE anyway; this guards tools that mark them
        FUNC). Computed once per open binary.
        """
        if self._function_symbols is not None:
            return self._function_symbols
        out: list[ElfSymbol] = []
        sections = self._sections
        for s in self.iter_symbols():
            if s.type not in (STT_FUNC, STT_GNU_IFUNC) or s.section is None:
                continue
            if not s.name or s.name.startswith("$"):
                continue
            sec = sections[s.shndx]
            if sec.is_alloc and not sec.address <= s.address <= s.address + s.size <= (
                sec.address + sec.size
            ):
                raise self._fail(
                    f".symtab entry {s.symtab_index} ({s.name[:80]}): {s.address:#x}+{s.size:#x}"
                    f" lies outside its section {sec.name}"
                )
            if s.size >= 1 << 63:
                raise self._fail(
                    f".symtab entry {s.symtab_index} ({s.name[:80]}): size {s.size:#x}"
                )
            out.append(
                ElfSymbol(s.name, s.address, s.size, s.section, _BINDINGS.get(s.binding, "global"))
            )
        self._function_symbols = tuple(out)
        return self._function_symbols

    def _read_u64_at(self, address: int) -> int:
        """An 8-byte value at `address`, with a `.rela.dyn` RELATIVE relocation there applied."""
        overlay = self._relative_overlay(address, address + 8) if self._elf_type == "ET_DYN" else {}
        value: int = _U64.unpack(self.read_code(address, 8))[0]
        return overlay.get(address, value)

    def get_kallsyms(self) -> list[tuple[str, str, int]] | None:
        """Decode vmlinux's own kallsyms tables: (type char, name, address) in kallsyms order.

        This is exactly the list `kallsyms_on_each_symbol` walks, so it settles which symbols
        count for sympos (data symbols only with CONFIG_KALLSYMS_ALL, no `.L`/`$x` symbols...).
        The format is kernel/kallsyms.c `kallsyms_expand_symbol` (a length byte, two when its MSB
        is set, Linux commit 73bbb94466fd ("kallsyms: support "big" kernel symbols"), then token
        indices) and `kallsyms_sym_address` (base-relative offsets, absolute per-cpu or not).
        None when the object has no kallsyms tables (modules, non-kernel objects).
        """
        needed = (
            "kallsyms_num_syms",
            "kallsyms_names",
            "kallsyms_token_table",
            "kallsyms_token_index",
            "kallsyms_offsets",
            "kallsyms_relative_base",
        )
        where = {name: self.get_symbol_address(name) for name in needed}
        if any(v is None for v in where.values()) or self._elf_type == "ET_REL":
            return None
        at = {k: v for k, v in where.items() if v is not None}
        try:
            count = _U32.unpack(self.read_code(at["kallsyms_num_syms"], 4))[0]
            token_index = struct.unpack("<256H", self.read_code(at["kallsyms_token_index"], 512))
            names_section = self.find_section_at(at["kallsyms_names"])
            token_section = self.find_section_at(at["kallsyms_token_table"])
            if names_section is None or token_section is None:
                raise self._fail("kallsyms tables lie outside any section")
            names_end = names_section.address + names_section.size
            names = self.read_code(at["kallsyms_names"], names_end - at["kallsyms_names"])
            token_end = token_section.address + token_section.size
            table = self.read_code(
                at["kallsyms_token_table"], token_end - at["kallsyms_token_table"]
            )
            tokens = []
            for index in token_index:
                stop = table.index(b"\0", index)
                tokens.append(table[index:stop])
            offsets = struct.unpack(f"<{count}i", self.read_code(at["kallsyms_offsets"], 4 * count))
            relative_base = self._read_u64_at(at["kallsyms_relative_base"])
            out_names: list[bytes] = []
            pos = 0
            for _ in range(count):
                length = names[pos]
                pos += 1
                if length & 0x80:
                    length = (length & 0x7F) | (names[pos] << 7)
                    pos += 1
                out_names.append(b"".join(map(tokens.__getitem__, names[pos : pos + length])))
                pos += length
        except (struct.error, ValueError, IndexError) as e:
            raise self._fail(f"kallsyms tables are corrupt: {e}") from e
        # CONFIG_KALLSYMS_ABSOLUTE_PERCPU is not recorded in the binary: pick the address scheme
        # under which the `_text` entry lands on the `_text` symbol.
        text = self.get_symbol_address("_text")
        absolute_percpu = False
        for name, offset in zip(out_names, offsets, strict=True):
            if name[1:] == b"_text" and text is not None:
                absolute_percpu = (relative_base + (offset & 0xFFFFFFFF)) != text
                break
        out: list[tuple[str, str, int]] = []
        for name, offset in zip(out_names, offsets, strict=True):
            if not absolute_percpu:
                address = relative_base + (offset & 0xFFFFFFFF)
            elif offset >= 0:
                address = offset
            else:
                address = relative_base - 1 - offset
            text_name = name.decode("utf-8", "replace")
            out.append((text_name[:1], text_name[1:], address & ((1 << 64) - 1)))
        return out

    def iter_kallsyms_symbols(self) -> list[ElfSymbol]:
        """The symbols kallsyms lists for this object, in the order livepatch counts sympos.

        vmlinux: decoded from its own kallsyms tables (`get_kallsyms`), which scripts/kallsyms.c
        sorted by address (`compare_symbols`); section is found by address, binding from the
        `nm` type letter. Without those tables (a linked non-kernel object) every named symbol
        in an allocated section, by address. A module: kernel/module/kallsyms.c
        `is_core_symbol` keeps defined, named symbols of allocated, non-init sections, and
        `module_kallsyms_on_each_symbol` walks them in `.symtab` order; with
        CONFIG_KALLSYMS_ALL unknown, data symbols are kept (they count only with it).
        """
        decoded = self.get_kallsyms()
        if decoded is not None:
            out: list[ElfSymbol] = []
            for letter, name, address in decoded:
                section = self.find_section_at(address)
                binding: Binding = (
                    "weak" if letter in "wWvV" else "local" if letter.islower() else "global"
                )
                out.append(ElfSymbol(name, address, 0, section.name if section else "", binding))
            return out
        relocatable = self._elf_type == "ET_REL"
        out = []
        for s in self.iter_symbols():
            if s.section is None or not s.name or s.type in (3, 4):  # STT_SECTION, STT_FILE
                continue
            sec = self._sections[s.shndx]
            if not sec.is_alloc or s.name.startswith("$") or s.name.startswith(".L"):
                continue
            if relocatable and sec.name.startswith(".init"):
                continue
            out.append(
                ElfSymbol(s.name, s.address, s.size, sec.name, _BINDINGS.get(s.binding, "global"))
            )
        if not relocatable:
            out.sort(key=lambda e: e.address)
        return out

    def get_symbol_address(self, name: str) -> int | None:
        """The address of the first defined symbol called `name` (any type), or None."""
        if self._by_name is None:
            by_name: dict[str, int] = {}
            for s in self.iter_symbols():
                if s.section is not None or s.shndx == 0xFFF1:  # SHN_ABS symbols keep their value
                    by_name.setdefault(s.name, s.address)
            self._by_name = by_name
        return self._by_name.get(name)

    # --- relocations --------------------------------------------------------------------------

    def get_relocations(self, rela: Section) -> list[Relocation]:
        """Every entry of one SHT_RELA section (allocated livepatch ones included)."""
        if rela.type != SHT_RELA:
            raise self._fail(f"{rela.name}: not a SHT_RELA section")
        data = self._data[rela.offset : rela.offset + rela.size - rela.size % _RELA.size]
        return [
            Relocation(offset, info & 0xFFFFFFFF, info >> 32, addend)
            for offset, info, addend in _RELA.iter_unpack(data)
        ]

    def iter_relocation_sections(self, target: Section) -> Iterator[Section]:
        """The ordinary (non-allocated) SHT_RELA sections that apply to `target`."""
        return self._iter_rela_for(target)

    def get_symbol_by_index(self, index: int) -> RawSymbol | None:
        """The `.symtab` entry a relocation names, or None for index 0 or one out of range."""
        symbols = self.iter_symbols()
        return symbols[index - 1] if 0 < index <= len(symbols) else None

    def read_cstring(self, address: int, limit: int = 4096) -> str | None:
        """The NUL-terminated string at `address` (this object's layout), or None if unreadable."""
        s = self.find_section_at(address)
        if s is None or s.type == SHT_NOBITS:
            return None
        start = s.offset + address - s.address
        end = min(s.offset + s.size, start + limit)
        raw = bytes(self._data[start:end])
        stop = raw.find(b"\0")
        if stop < 0:
            return None
        return raw[:stop].decode("utf-8", "replace")

    def get_symbol_bytes(self, name: str) -> bytes | None:
        """The bytes of the first defined, sized data symbol called `name` (e.g. `vermagic`)."""
        for s in self.iter_symbols():
            if s.name == name and s.section is not None and s.size:
                try:
                    return self.read_code(s.address, s.size)
                except BinaryFormatError:
                    return None
        return None

    def _iter_rela_for(self, target: Section) -> Iterator[Section]:
        for s in self._sections:
            if s.info == target.index and s.type in (SHT_RELA, SHT_REL) and not s.is_alloc:
                if s.type == SHT_REL:
                    raise self._fail(f"{s.name}: SHT_REL relocations are not supported")
                yield s

    def _symbol_values(self) -> list[int]:
        """S for every symbol index (0 for undefined ones), for applying relocations."""
        values = [0] * (len(self.iter_symbols()) + 1)
        for s in self.iter_symbols():
            if s.section is not None or s.shndx == 0xFFF1:
                values[s.symtab_index] = s.address
        return values

    def _apply_rela(self, target: Section, buf: bytearray, symvals: list[int]) -> None:
        """Apply S + A relocations of `target` into `buf` in bulk.

        The loop does no checks of its own (a module's `.debug_info` has ~700 k relocations,
        the loop was 15% of indexing modules): a bad type, symbol or offset raises in the
        lookup or in `pack_into`, and `_rela_error` then finds the culprit for the message.
        """
        widths = {0: 0, **_ABS_RELOCS[self._arch]}  # R_*_NONE: nothing to do
        pack64, pack32 = _U64.pack_into, _U32.pack_into
        m64, m32 = (1 << 64) - 1, (1 << 32) - 1
        for rela in self._iter_rela_for(target):
            data = self._data[rela.offset : rela.offset + rela.size - rela.size % _RELA.size]
            try:
                for offset, info, addend in _RELA.iter_unpack(data):
                    width = widths[info & 0xFFFFFFFF]
                    if width == 8:
                        pack64(buf, offset, (symvals[info >> 32] + addend) & m64)
                    elif width:
                        pack32(buf, offset, (symvals[info >> 32] + addend) & m32)
            except (KeyError, IndexError, struct.error):
                raise self._rela_error(rela.name, data, widths, len(symvals), len(buf)) from None

    def _rela_error(
        self, name: str, data: bytes | memoryview, widths: dict[int, int], nsyms: int, size: int
    ) -> BinaryFormatError:
        for offset, info, _addend in _RELA.iter_unpack(data):
            rtype, sym = info & 0xFFFFFFFF, info >> 32
            width = widths.get(rtype)
            if width is None:
                return self._fail(f"{name}: unsupported relocation type {rtype}")
            if width and (sym >= nsyms or offset + width > size):
                return self._fail(f"{name}: relocation at {offset:#x} is out of range")
        return self._fail(f"{name}: relocations cannot be applied")

    def get_dwarf_sections(self, names: Collection[str] | None = None) -> dict[str, bytes]:
        """Every `.debug_*` section by name (or those in `names`), decompressed, relocated for
        ET_REL objects.

        A linked vmlinux needs no relocation: the amd64 one keeps `.rela.debug_*` from
        `--emit-relocs`, but their values are already applied in the file (KERNEL_FACTS).
        A module's sections that no reader uses (`.debug_frame`, `.debug_aranges`...) are
        better left out: relocating them is most of their cost.
        """
        symvals = self._symbol_values() if self._elf_type == "ET_REL" else []
        out: dict[str, bytes] = {}
        for s in self._sections:
            if not s.name.startswith(".debug_") or s.name in out:
                continue
            if names is not None and s.name not in names:
                continue
            data = self._section_bytes(s)
            if self._elf_type == "ET_REL":
                buf = bytearray(data)
                self._apply_rela(s, buf, symvals)
                out[s.name] = bytes(buf)
            else:
                out[s.name] = bytes(data)
        return out

    # --- ftrace -------------------------------------------------------------------------------

    def _relative_overlay(self, start: int, stop: int) -> dict[int, int]:
        """r_offset -> addend of `*_RELATIVE` relocations in `.rela.dyn` within [start, stop)."""
        rela = self._section_by_name.get(".rela.dyn")
        overlay: dict[int, int] = {}
        if rela is None:
            return overlay
        relative = _RELATIVE_RELOCS[self._arch]
        data = self._data[rela.offset : rela.offset + rela.size - rela.size % _RELA.size]
        for offset, info, addend in _RELA.iter_unpack(data):
            if start <= offset < stop and info & 0xFFFFFFFF == relative:
                overlay[offset] = addend & ((1 << 64) - 1)
        return overlay

    def get_mcount_records(self) -> frozenset[int]:
        """Addresses of ftrace call-site records: the `__mcount_loc` table of this object.

        vmlinux: the 8-byte slots between `__start_mcount_loc` and `__stop_mcount_loc` (in
        `.init.data`); when the file holds zeros there (arm64 PIE), the values are the addends
        of the `R_AARCH64_RELATIVE` relocations in `.rela.dyn` at those slots. Modules: every
        `__mcount_loc` (x86-64) or `__patchable_function_entries` (arm64) section with its
        relocations applied in the synthetic layout. Zero slots of a linked object are dropped.
        """
        start = self.get_symbol_address("__start_mcount_loc")
        stop = self.get_symbol_address("__stop_mcount_loc")
        records: set[int] = set()
        if self._elf_type != "ET_REL" and start is not None and stop is not None and stop > start:
            section = self.find_section_at(start)
            if section is None or stop > section.address + section.size:
                raise self._fail("__start_mcount_loc..__stop_mcount_loc is outside any section")
            data = self._section_bytes(section)
            base = start - section.address
            values = [v for (v,) in _U64.iter_unpack(data[base : base + (stop - start) // 8 * 8])]
            overlay = self._relative_overlay(start, stop) if self._elf_type == "ET_DYN" else {}
            for i, value in enumerate(values):
                value = overlay.get(start + 8 * i, value)
                if value:
                    records.add(value)
            return frozenset(records)
        symvals = self._symbol_values() if self._elf_type == "ET_REL" else []
        for s in self._sections:
            if s.name not in _MCOUNT_SECTIONS or s.type == SHT_NOBITS:
                continue
            buf = bytearray(self._section_bytes(s))
            if self._elf_type == "ET_REL":
                self._apply_rela(s, buf, symvals)
            elif self._elf_type == "ET_DYN":
                for offset, value in self._relative_overlay(s.address, s.address + s.size).items():
                    _U64.pack_into(buf, offset - s.address, value)
            # In the synthetic layout the first function of `.text` is at address 0, so a zero
            # record is real there; in a linked object a zero slot is padding.
            keep_zero = self._elf_type == "ET_REL"
            records.update(
                v for (v,) in _U64.iter_unpack(buf[: len(buf) // 8 * 8]) if v or keep_zero
            )
        return frozenset(records)

    def get_relocations_for(self, target: Section) -> list[Relocation]:
        """ET_REL: every relocation applied to `target` (from each of its ordinary SHT_RELA
        sections), sorted by offset."""
        return sorted(r for rela in self._iter_rela_for(target) for r in self.get_relocations(rela))

    def iter_relocations_at(self, address: int, size: int) -> list[tuple[int, int, str, int]]:
        """ET_REL only: (address, type, symbol name, S + A) of relocations in a code range.

        Lets the disassembler resolve a module's `call` targets, which are zero on disk.
        """
        if self._elf_type != "ET_REL":
            return []
        target = self.find_section_at(address)
        if target is None:
            return []
        symbols = self.iter_symbols()
        symvals = self._symbol_values()
        out: list[tuple[int, int, str, int]] = []
        lo, hi = address - target.address, address - target.address + size
        for rela in self._iter_rela_for(target):
            data = self._data[rela.offset : rela.offset + rela.size - rela.size % _RELA.size]
            for offset, info, addend in _RELA.iter_unpack(data):
                if lo <= offset < hi:
                    sym = info >> 32
                    name = symbols[sym - 1].name if 0 < sym <= len(symbols) else ""
                    value = symvals[sym] + addend if sym < len(symvals) else addend
                    out.append((target.address + offset, info & 0xFFFFFFFF, name, value))
        out.sort()
        return out
