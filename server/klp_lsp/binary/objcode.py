"""Relocatable objects (`.o`) as `check --compile` compares them.

Each function's code is decoded and normalised so that two compilations of the same source give
equal records wherever the object's layout put things: a relocation becomes the name of what it
points at (a symbol, a string literal's text, or an anonymous `section+?`), a direct branch out
of the function becomes the symbol it lands in (x86 `call` to a static function of the same
section carries no relocation), and immediates are kept apart from the instruction text so a
caller can tell a `__LINE__` argument from a real change. The object's DWARF adds, per function,
the C function it is a copy of, its declaration, and the functions inlined into it.

Local data symbols are renamed the way kpatch's `kpatch_mangled_strcmp` treats them: GCC numbers
static locals (`__already_done.12`, `__func__.3`) per object, so the number is dropped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from klp_lsp.analysis.clones import parse_clone_name
from klp_lsp.binary.disasm import Decoder
from klp_lsp.binary.dwarf import DWARF_SECTIONS, DwarfData
from klp_lsp.binary.dwarf_abbrev import DECODE_ERRORS, explain
from klp_lsp.binary.elf import STT_FUNC, ElfBinary, RawSymbol, Section
from klp_lsp.errors import BinaryFormatError
from klp_lsp.model import Arch, ObjectCode, ObjectFunction, ObjectInsn

__all__ = ["normalise_data_name", "read_object_code"]

_STT_OBJECT = 1
_STT_SECTION = 3
_SHF_MERGE = 0x10
_SHF_STRINGS = 0x20
# x86-64 PC-relative relocations (R_X86_64_PC32, PLT32, GOTPCREL, PC64, GOTPCRELX,
# REX_GOTPCRELX): the addend is biased by the distance from the field to the instruction's end
# (-4 for a call), so the target is S + A + (end - P).
_X86_PCREL = frozenset((2, 4, 9, 24, 41, 42))
# Direct branches whose target capstone prints as the last operand.
_A64_BRANCHES = frozenset(("b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr"))
_X86_PREFIXES = ("bnd ", "notrack ")
# A number as capstone prints an immediate (`0x1c`, `28`; arm64 with a leading `#`).
_NUMBER = re.compile(r"#?(?<![\w.])(?:0x[0-9a-f]+|\d+)")
_BRACKETS = re.compile(r"(\[[^\]]*\])")
_LOCAL_NUMBER = re.compile(r"(?:\.\d+)+$")
_UNIQUE_ID = re.compile(r"^(__UNIQUE_ID_\w*?)\d+$")
_MAX_STRING = 400


def normalise_data_name(name: str) -> str:
    """A data symbol's name without the per-object numbers GCC gives static locals."""
    m = _UNIQUE_ID.match(name)
    if m:
        return m.group(1)
    return _LOCAL_NUMBER.sub("", name) or name


@dataclass(frozen=True, slots=True)
class _Span:
    start: int  # offset in its section
    end: int
    name: str
    kind: str  # "f": a function, "d": data
    sized: bool  # the symbol has a size (`end` is start + 1 otherwise)


class _Reader:
    """Reads one open relocatable object."""

    def __init__(self, binary: ElfBinary, source_roots: Sequence[str]) -> None:
        self.binary = binary
        self.arch: Arch = binary.arch
        self.sections = binary.sections
        self.symbols = binary.iter_symbols()
        self.roots = [r.rstrip("/") + "/" for r in source_roots if r]
        # Named code and data symbols of each section, by offset: what a reference lands in.
        spans: dict[int, list[_Span]] = {}
        for s in self.symbols:
            if s.section is None or not s.name or s.type not in (STT_FUNC, _STT_OBJECT):
                continue
            if s.name.startswith(".L"):
                continue  # An assembler-local label: anonymous, numbered per object.
            sec = self.sections[s.shndx]
            start = s.address - sec.address
            name = s.name if s.type == STT_FUNC else normalise_data_name(s.name)
            kind = "f" if s.type == STT_FUNC else "d"
            span = _Span(start, start + max(s.size, 1), name, kind, s.size > 0)
            spans.setdefault(s.shndx, []).append(span)
        self.spans = {k: sorted(v, key=lambda x: (x.start, -x.end)) for k, v in spans.items()}
        self.starts = {k: [x.start for x in v] for k, v in self.spans.items()}
        self.decoder = Decoder(self.arch)

    # --- references ------------------------------------------------------------------------

    def _symbol(self, index: int) -> RawSymbol | None:
        return self.symbols[index - 1] if 0 < index <= len(self.symbols) else None

    def _in_section(self, sec: Section, offset: int, memory: bool = True) -> str:
        """What lies at `offset` of `sec`: a string literal, a named symbol, or `sec+?`."""
        if sec.flags & _SHF_MERGE:
            data = self.binary.get_section_bytes(sec)
            if sec.flags & _SHF_STRINGS:
                raw = bytes(data[offset : offset + _MAX_STRING])
                text = raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
                return '"' + text.encode("unicode_escape").decode("ascii") + '"'
            # A constant of a mergeable pool (`.rodata.cst16`, reached through `.LC3`): its
            # value, since the label's number and the offset depend on the other constants.
            size = max(sec.entsize, 1)
            start = offset - offset % size
            return f"const:{bytes(data[start : start + size]).hex()}"
        spans = self.spans.get(sec.index, [])
        i = bisect.bisect_right(self.starts.get(sec.index, []), offset) - 1
        # Symbols rarely nest; a few predecessors cover an alias at the same start. A symbol
        # of size 0 (`__key.12`, a lockdep key without CONFIG_LOCKDEP) shares its address with
        # the next variable: an instruction that takes the address names it, one that reads
        # or writes memory there names the variable (nothing can be read from size 0).
        near = [sp for sp in spans[max(0, i - 7) : i + 1] if sp.start <= offset < sp.end]
        sized = [sp for sp in near if sp.sized]
        empty = sorted((sp for sp in near if not sp.sized and sp.start == offset), key=_name)
        pick = sized if memory or not empty else empty
        if pick or near:
            span = max(pick, key=lambda sp: sp.start) if pick else min(near, key=_name)
            return self._at(span.name, span.kind, offset - span.start)
        # Anonymous data (a constant pool, an arm64 jump table): its offset moves with whatever
        # the compiler put before it, so only the section is compared.
        return f"{sec.name}+?"

    def describe(
        self, rtype: int, symbol: int, addend: int, field: int, insn_end: int, memory: bool
    ) -> str:
        """The target of one relocation, as a name."""
        target = addend
        if self.arch == "x86_64" and rtype in _X86_PCREL:
            target = addend + (insn_end - field)
        sym = self._symbol(symbol)
        if sym is None:
            return f"?{target:+#x}"
        anonymous = not sym.name or sym.name.startswith(".L")
        if sym.section is not None and (sym.type == _STT_SECTION or anonymous):
            sec = self.sections[sym.shndx]
            return self._in_section(sec, sym.address - sec.address + target, memory)
        if sym.type == STT_FUNC:
            return self._at(sym.name, "f", target)
        if sym.section is None:
            return _plus(sym.name, target)  # An undefined symbol keeps its name as it is.
        return _plus(normalise_data_name(sym.name), target)

    @staticmethod
    def _at(name: str, kind: str, offset: int) -> str:
        """A place inside a symbol. Inside another function (a `.cold` part jumping back
        into its parent) the offset moves with that function's code, which is compared on
        its own: only the function is named."""
        if kind == "f" and offset != 0:
            return f"{name}+?"
        return _plus(name, offset)

    # --- functions -------------------------------------------------------------------------

    def _branch_target(self, mnemonic: str, op_str: str) -> int | None:
        if self.arch == "x86_64":
            for prefix in _X86_PREFIXES:
                mnemonic = mnemonic.removeprefix(prefix)
            if not (mnemonic.startswith("j") or mnemonic in ("call", "loop", "loope", "loopne")):
                return None
            last = op_str.strip()
        else:
            if mnemonic not in _A64_BRANCHES and not mnemonic.startswith("b."):
                return None
            last = op_str.rsplit(",", 1)[-1].strip().lstrip("#")
        try:
            return int(last, 0)
        except ValueError:
            return None  # An indirect branch: `jmp rax`, `br x1`.

    def function_code(
        self,
        sec: Section,
        code: bytes | memoryview,
        relocs: Sequence[tuple[int, int, int, int]],
        reloc_offsets: Sequence[int],
        sym: RawSymbol,
    ) -> tuple[ObjectInsn, ...]:
        start = sym.address - sec.address
        body = bytes(code[start : start + sym.size])
        out: list[ObjectInsn] = []
        r = bisect.bisect_left(reloc_offsets, start)
        end = 0
        # Decoded at its section offset, so that branch targets are section offsets too.
        for address, size, mnemonic, op_str in self.decoder.lite(body, start):
            at = address - start
            end = at + size
            refs: list[str] = []
            while r < len(relocs) and relocs[r][0] < start + end:
                field, rtype, symbol, addend = relocs[r]
                memory = "[" in op_str  # a memory operand, not an address taken
                refs.append(self.describe(rtype, symbol, addend, field, start + end, memory))
                r += 1
            target = self._branch_target(mnemonic, op_str)
            if target is not None:
                if not refs and start <= target < start + sym.size:
                    # Inside the function: its offset, which is part of the instruction.
                    out.append(ObjectInsn(at, f"{mnemonic} L{target - start:#x}", (), ()))
                    continue
                if not refs:
                    # A branch out of the function without a relocation: the assembler
                    # resolved it inside the section, so the displacement depends on layout.
                    refs.append(self._in_section(sec, target))
                out.append(ObjectInsn(at, f"{mnemonic} @", (), tuple(refs)))
                continue
            text, values = _mask_immediates(op_str)
            out.append(ObjectInsn(at, f"{mnemonic} {text}".rstrip(), values, tuple(refs)))
        if end < sym.size:
            # Bytes capstone cannot decode (data in an asm function): compared as bytes, with
            # relocated fields named instead.
            rest = bytearray(body[end:])
            refs = []
            while r < len(relocs) and relocs[r][0] < start + sym.size:
                field, rtype, symbol, addend = relocs[r]
                refs.append(self.describe(rtype, symbol, addend, field, field + 4, False))
                for k in range(field - start - end, min(field - start - end + 4, len(rest))):
                    rest[k] = 0
                r += 1
            out.append(ObjectInsn(end, f".bytes {rest.hex()}", (), tuple(refs)))
        return tuple(out)

    def relative(self, path: str | None) -> str | None:
        """A DWARF path relative to the source tree it was compiled from."""
        if path is None:
            return None
        for root in self.roots:
            if path.startswith(root):
                return path[len(root) :]
        return path

    def run(self, display_path: str) -> ObjectCode:
        funcs = [
            s
            for s in self.symbols
            if s.type == STT_FUNC
            and s.section is not None
            and s.size > 0
            and self.sections[s.shndx].is_exec
        ]
        dwarf = self._dwarf_facts(funcs)
        out: list[ObjectFunction] = []
        by_section: dict[int, list[RawSymbol]] = {}
        for s in funcs:
            by_section.setdefault(s.shndx, []).append(s)
        codes: dict[int, tuple[ObjectInsn, ...]] = {}
        for shndx, members in by_section.items():
            sec = self.sections[shndx]
            data = self.binary.get_section_bytes(sec)
            relocs = self.binary.get_relocations_for(sec)
            offsets = [x[0] for x in relocs]
            for s in members:
                codes[s.symtab_index] = self.function_code(sec, data, relocs, offsets, s)
        for s in funcs:
            f = dwarf.get(s.symtab_index) or _Facts(parse_clone_name(s.name).origin, None, None)
            out.append(
                ObjectFunction(
                    name=s.name,
                    section=s.section or "",
                    size=s.size,
                    binding="local" if s.binding == 0 else "weak" if s.binding == 2 else "global",
                    insns=codes[s.symtab_index],
                    origin=f.origin,
                    decl_file=f.decl_file,
                    decl_line=f.decl_line,
                    inlined=tuple(sorted(f.inlined)),
                    inlined_nested=tuple(sorted(f.nested - f.inlined)),
                    inline_edges=tuple(sorted(f.edges)),
                )
            )
        return ObjectCode(
            path=display_path,
            arch=self.arch,
            functions=tuple(out),
            definitions=self._definitions,
        )

    def _dwarf_facts(self, funcs: Sequence[RawSymbol]) -> dict[int, _Facts]:
        """Per function symbol (by symtab index): C origin, declaration, and what GCC inlined
        into it."""
        self._definitions: tuple[tuple[str, str | None, int | None], ...] = ()
        if not self.binary.has_dwarf:
            return {}
        dwarf = DwarfData(
            self.binary.get_dwarf_sections(DWARF_SECTIONS), self.arch, str(self.binary.path)
        )
        ordered = sorted(funcs, key=lambda s: s.address)
        starts = [s.address for s in ordered]

        def symbol_at(address: int) -> RawSymbol | None:
            i = bisect.bisect_right(starts, address) - 1
            # On arm64 DW_AT_low_pc follows the two patchable-entry NOPs: inside the symbol.
            if i >= 0 and ordered[i].address <= address < ordered[i].address + ordered[i].size:
                return ordered[i]
            return None

        facts: dict[int, _Facts] = {}
        definitions: dict[tuple[str, str | None, int | None], None] = {}
        for offset in dwarf.iter_unit_offsets():
            cu = dwarf.scan_unit(offset)
            names = {sp.die_offset: sp.name for sp in cu.subprograms}
            container: dict[int, _Facts] = {}
            for sp in cu.subprograms:
                if sp.name and not sp.declaration and sp.abstract_origin is None:
                    definitions[(sp.name, self.relative(sp.decl_file), sp.decl_line)] = None
                if not sp.ranges or sp.name is None:
                    continue
                sym = symbol_at(sp.ranges[0][0])
                if sym is None:
                    continue
                made = _Facts(sp.name, self.relative(sp.decl_file), sp.decl_line)
                container[sp.die_offset] = facts[sym.symtab_index] = made
            site_names = {site.die_offset: names.get(site.origin) for site in cu.inline_sites}
            for site in cu.inline_sites:
                holder = container.get(site.container)
                name = site_names[site.die_offset]
                if holder is None or not name:
                    continue
                parent = site_names.get(site.parent) if site.parent is not None else None
                if name == parent:
                    # GCC nests a site of a function in its own site (its first line as the
                    # call line): not an inlining decision (tests/fixtures/README.md).
                    continue
                if site.parent is None:
                    holder.inlined.add(name)
                    holder.edges.add((holder.origin, name))
                else:
                    holder.nested.add(name)
                    if parent:
                        holder.edges.add((parent, name))
        self._definitions = tuple(definitions)
        return facts


@dataclass(slots=True)
class _Facts:
    """What the DWARF of one out-of-line function says, gathered over its inline sites."""

    origin: str
    decl_file: str | None
    decl_line: int | None
    inlined: set[str] = field(default_factory=set)
    nested: set[str] = field(default_factory=set)
    edges: set[tuple[str, str]] = field(default_factory=set)


def _name(span: _Span) -> str:
    return span.name


def _plus(name: str, offset: int) -> str:
    if offset == 0:
        return name
    return f"{name}+{offset:#x}" if offset > 0 else f"{name}-{-offset:#x}"


def _mask_immediates(op_str: str) -> tuple[str, tuple[int, ...]]:
    """Operands with the numbers outside memory brackets replaced by `#`, and those numbers."""
    values: list[int] = []

    def take(m: re.Match[str]) -> str:
        values.append(int(m.group(0).lstrip("#"), 0))
        return "#"

    parts = _BRACKETS.split(op_str)
    for i in range(0, len(parts), 2):
        parts[i] = _NUMBER.sub(take, parts[i])
    return "".join(parts), tuple(values)


def read_object_code(
    path: Path, display_path: str | None = None, source_roots: Sequence[str] = ()
) -> ObjectCode:
    """Read the functions of a relocatable object for comparison.

    `source_roots` are the directories the object was compiled from: DWARF paths below them
    become tree-relative (`kernel/sched/rt.c`).
    """
    with ElfBinary.open(path) as binary:
        if binary.elf_type != "ET_REL":
            raise BinaryFormatError(f"{path}: not a relocatable object (.o)")
        try:
            return _Reader(binary, source_roots).run(display_path or str(path))
        except DECODE_ERRORS as e:
            raise BinaryFormatError(
                f"{path}: cannot read its code or DWARF: {explain(e)}"
            ) from None
