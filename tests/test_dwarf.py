"""Tests of the fast DWARF scanner, including a differential test against a plain pyelftools walk.

The slow path below walks every DIE with pyelftools' own objects, range lists, location lists
and line programs, and must give exactly the records the fast scanner gives.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elftools.dwarf.compileunit import CompileUnit as PyCU
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
from elftools.dwarf.locationlists import (
    BaseAddressEntry,
    LocationEntry,
    LocationExpr,
    LocationParser,
)
from elftools.dwarf.ranges import BaseAddressEntry as RangeBase
from elftools.elf.elffile import ELFFile

from klp_lsp import model
from klp_lsp.binary.dwarf import DWARF_SECTIONS, REGISTER_NAMES, DwarfData
from klp_lsp.errors import BinaryFormatError, DebugInfoMissing

FIXTURES = Path(__file__).parent / "fixtures" / "build"
CORPUS = os.environ.get("KLP_CORPUS_DIR")


# --- loading ------------------------------------------------------------------------------------


def _arch(elf: ELFFile) -> model.Arch:
    return "x86_64" if elf["e_machine"] == "EM_X86_64" else "aarch64"


def open_pair(path: Path) -> tuple[DwarfData, DWARFInfo, model.Arch]:
    """The fast scanner and pyelftools' DWARFInfo over the same (relocated) sections."""
    elf = ELFFile(io.BytesIO(path.read_bytes()))
    relocate = elf["e_type"] == "ET_REL"
    dwarfinfo = elf.get_dwarf_info(relocate_dwarf_sections=relocate)
    sections: dict[str, bytes] = {}
    for name in DWARF_SECTIONS:
        desc = getattr(dwarfinfo, name[1:] + "_sec", None)
        if desc is not None:
            sections[name] = desc.stream.getvalue()
    arch = _arch(elf)
    return DwarfData(sections, arch, str(path)), dwarfinfo, arch


def dwarfinfo_from_sections(sections: dict[str, bytes], arch: model.Arch) -> DWARFInfo:
    """pyelftools' DWARFInfo over sections relocated elsewhere (binary/elf.py for modules)."""

    def desc(name: str) -> DebugSectionDescriptor | None:
        data = sections.get(name)
        if not data:
            return None
        return DebugSectionDescriptor(io.BytesIO(data), name, 0, len(data), 0)

    secs = {name[1:] + "_sec": desc(name) for name in DWARF_SECTIONS}
    machine = "x64" if arch == "x86_64" else "AArch64"
    return DWARFInfo(
        config=DwarfConfig(little_endian=True, machine_arch=machine, default_address_size=8),
        debug_aranges_sec=None,
        debug_frame_sec=None,
        eh_frame_sec=None,
        debug_pubtypes_sec=None,
        debug_pubnames_sec=None,
        debug_sup_sec=None,
        gnu_debugaltlink_sec=None,
        debug_types_sec=None,
        **secs,
    )


# --- the slow path ------------------------------------------------------------------------------


def _s(v: Any) -> str | None:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


class SlowScan:
    """A plain pyelftools walk over every DIE of one CU, producing model.CuFacts."""

    def __init__(self, dwarfinfo: DWARFInfo, cu: PyCU, arch: model.Arch) -> None:
        self.di = dwarfinfo
        self.cu = cu
        self.arch = arch
        self.top = cu.get_top_DIE()
        self.lo = cu.cu_offset
        self.hi = cu.cu_offset + cu.size
        self.dies = {d.offset: d for d in cu.iter_DIEs()}
        self.base = (
            self.top.attributes["DW_AT_low_pc"].value
            if "DW_AT_low_pc" in self.top.attributes
            else 0
        )
        self.comp_dir = (
            _s(self.top.attributes["DW_AT_comp_dir"].value)
            if "DW_AT_comp_dir" in self.top.attributes
            else ""
        )
        self.files = self._files()

    def _files(self) -> list[str | None]:
        lp = self.di.line_program_for_CU(self.cu)
        if lp is None:
            return []
        comp_dir = self.comp_dir or ""
        dirs = [_s(d) or "" for d in lp.header.include_directory]
        if lp.header.version >= 5:
            if dirs:
                dirs[0] = comp_dir or dirs[0]
            return [
                _join(
                    comp_dir, dirs[f.dir_index] if f.dir_index < len(dirs) else "", _s(f.name) or ""
                )
                for f in lp.header.file_entry
            ]
        dirs = [comp_dir, *dirs]
        return [None] + [
            _join(comp_dir, dirs[f.dir_index] if f.dir_index < len(dirs) else "", _s(f.name) or "")
            for f in lp.header.file_entry
        ]

    def ref(self, die: DIE, name: str) -> int | None:
        if name not in die.attributes:
            return None
        return int(die.get_DIE_from_attribute(name).offset)

    def chain(self, die: DIE) -> list[DIE]:
        out = [die]
        for _ in range(8):
            nxt = self.ref(die, "DW_AT_abstract_origin")
            if nxt is None:
                nxt = self.ref(die, "DW_AT_specification")
            if nxt is None or not (self.lo <= nxt < self.hi) or nxt not in self.dies:
                break
            die = self.dies[nxt]
            out.append(die)
        return out

    @staticmethod
    def first(dies: list[DIE], *names: str) -> Any:
        for d in dies:
            for n in names:
                if n in d.attributes:
                    return d.attributes[n].value
        return None

    def ranges(self, die: DIE) -> tuple[tuple[int, int], ...]:
        a = die.attributes
        out: list[tuple[int, int]] = []
        if "DW_AT_low_pc" in a and "DW_AT_high_pc" in a:
            low = a["DW_AT_low_pc"].value
            high = a["DW_AT_high_pc"]
            out = [(low, high.value if high.form.startswith("DW_FORM_addr") else low + high.value)]
        elif "DW_AT_ranges" in a:
            base = self.base
            for e in self.di.range_lists().get_range_list_at_offset(
                a["DW_AT_ranges"].value, cu=self.cu
            ):
                if isinstance(e, RangeBase):
                    base = e.base_address
                elif e.is_absolute:
                    out.append((e.begin_offset, e.end_offset))
                else:
                    out.append((base + e.begin_offset, base + e.end_offset))
        return tuple(r for r in out if r[0] < r[1])

    def location(self, die: DIE, pc: int | None) -> str:
        if "DW_AT_location" not in die.attributes:
            return "constant" if "DW_AT_const_value" in die.attributes else "optimized-out"
        attr = die.attributes["DW_AT_location"]
        parsed = LocationParser(self.di.location_lists()).parse_from_attribute(
            attr, self.cu.header.version, die
        )
        if isinstance(parsed, LocationExpr):
            return self.expr(parsed.loc_expr)
        removed = any(isinstance(e, LocationEntry) and e.loc_expr[:1] == [0xFA] for e in parsed)
        if pc is None:
            return "removed" if removed else "unknown"
        base = self.base
        default = None
        for e in parsed:
            if isinstance(e, BaseAddressEntry):
                base = e.base_address
            elif isinstance(e, LocationEntry):
                if e.begin_offset == -1:
                    default = e.loc_expr
                    continue
                lo, hi = (
                    (e.begin_offset, e.end_offset)
                    if e.is_absolute
                    else (base + e.begin_offset, base + e.end_offset)
                )
                if lo <= pc < hi:
                    return self.expr(e.loc_expr)
        if default is not None:
            return self.expr(default)
        return "removed" if removed else "unknown"

    def expr(self, ops: list[int]) -> str:
        if not ops:
            return "optimized-out"
        parsed = DWARFExprParser(self.cu.structs).parse_expr(ops)
        op = parsed[0]
        if op.op_name == "DW_OP_GNU_parameter_ref":
            return "removed"
        if (
            len(parsed) == 2
            and parsed[1].op_name == "DW_OP_stack_value"
            and (op.op_name.startswith("DW_OP_lit") or op.op_name.startswith("DW_OP_const"))
        ):
            return "constant"
        regs = REGISTER_NAMES[self.arch]
        sp = 7 if self.arch == "x86_64" else 31
        if op.op_name.startswith("DW_OP_reg") and op.op_name != "DW_OP_regx":
            n = int(op.op_name[len("DW_OP_reg") :])
            return regs.get(n, f"dwarf-reg{n}")
        if op.op_name == "DW_OP_regx":
            return regs.get(op.args[0], f"dwarf-reg{op.args[0]}")
        if op.op_name == "DW_OP_fbreg":
            return "stack"
        if op.op_name == f"DW_OP_breg{sp}" or (op.op_name == "DW_OP_bregx" and op.args[0] == sp):
            return "stack"
        return "unknown"

    def walk(
        self, die: DIE, container: int | None, parent: int | None
    ) -> Iterator[tuple[DIE, int | None, int | None]]:
        for child in die.iter_children():
            yield child, container, parent
            if child.tag == "DW_TAG_subprogram":
                yield from self.walk(child, child.offset, None)
            elif child.tag == "DW_TAG_inlined_subroutine":
                yield from self.walk(child, container, child.offset)
            else:
                yield from self.walk(child, container, parent)

    def run(self) -> model.CuFacts:
        top = self.top.attributes
        producer = _s(top["DW_AT_producer"].value) if "DW_AT_producer" in top else ""
        language = top["DW_AT_language"].value if "DW_AT_language" in top else None
        unit = model.CompileUnit(
            offset=self.cu.cu_offset,
            name=_s(top["DW_AT_name"].value) if "DW_AT_name" in top else "",
            comp_dir=self.comp_dir or "",
            producer=producer or "",
            language=language,
            is_asm=language == 0x8001 or (language is None and not producer),
        )
        subs = []
        sites = []
        for die, container, parent in self.walk(self.top, None, None):
            if die.tag == "DW_TAG_subprogram":
                subs.append(self.subprogram(die))
            elif (
                die.tag == "DW_TAG_inlined_subroutine" and "DW_AT_abstract_origin" in die.attributes
            ):
                assert container is not None
                a = die.attributes
                sites.append(
                    model.InlineSite(
                        die_offset=die.offset,
                        cu_offset=self.cu.cu_offset,
                        origin=self.ref(die, "DW_AT_abstract_origin") or 0,
                        call_file=self.path(a["DW_AT_call_file"].value)
                        if "DW_AT_call_file" in a
                        else None,
                        call_line=a["DW_AT_call_line"].value if "DW_AT_call_line" in a else None,
                        ranges=self.ranges(die),
                        container=container,
                        parent=parent,
                    )
                )
        return model.CuFacts(
            unit=unit,
            subprograms=tuple(sorted(subs, key=lambda s: s.die_offset)),
            inline_sites=tuple(sites),
        )

    def path(self, index: Any) -> str | None:
        return (
            self.files[index] if isinstance(index, int) and 0 <= index < len(self.files) else None
        )

    def subprogram(self, die: DIE) -> model.Subprogram:
        chain = self.chain(die)
        a = die.attributes
        ranges = self.ranges(die)
        entry = None
        if "DW_AT_entry_pc" in a:
            e = a["DW_AT_entry_pc"]
            entry = (
                e.value
                if e.form.startswith("DW_FORM_addr")
                else (ranges[0][0] + e.value if ranges else None)
            )
        pc = entry if entry is not None else (ranges[0][0] if ranges else None)
        located = {
            c.offset: self.param(c, self.location(c, pc))
            for c in die.iter_children()
            if c.tag == "DW_TAG_formal_parameter" and "DW_AT_declaration" not in a
        }
        params = tuple(located.values())
        origin = self.ref(die, "DW_AT_abstract_origin")
        if origin is not None and origin in self.dies:
            # C order: the abstract origin's parameters, each with the copy's DIE if it has one.
            by_origin = {
                self.ref(c, "DW_AT_abstract_origin"): c.offset
                for c in die.iter_children()
                if c.tag == "DW_TAG_formal_parameter"
            }
            ordered = []
            for c in self.dies[origin].iter_children():
                if c.tag != "DW_TAG_formal_parameter":
                    continue
                own = by_origin.pop(c.offset, None)
                ordered.append(located[own] if own is not None else self.param(c, "optimized-out"))
            params = (*ordered, *(located[o] for o in by_origin.values()))
        return model.Subprogram(
            die_offset=die.offset,
            cu_offset=self.cu.cu_offset,
            name=_s(self.first(chain, "DW_AT_name")),
            linkage_name=_s(self.first(chain, "DW_AT_linkage_name", "DW_AT_MIPS_linkage_name")),
            decl_file=self.path(self.first(chain, "DW_AT_decl_file")),
            decl_line=self.first(chain, "DW_AT_decl_line"),
            external=bool(self.first(chain, "DW_AT_external")),
            declaration=bool(a["DW_AT_declaration"].value) if "DW_AT_declaration" in a else False,
            inline=a["DW_AT_inline"].value if "DW_AT_inline" in a else None,
            calling_convention=a["DW_AT_calling_convention"].value
            if "DW_AT_calling_convention" in a
            else None,
            noreturn=bool(self.first(chain, "DW_AT_noreturn")),
            abstract_origin=self.ref(die, "DW_AT_abstract_origin"),
            specification=self.ref(die, "DW_AT_specification"),
            ranges=ranges,
            params=params,
            entry_pc=entry,
            return_size=self.return_size(chain),
        )

    def param(self, die: DIE, location: str) -> model.Param:
        chain = self.chain(die)
        holder = next((d for d in chain if "DW_AT_type" in d.attributes), None)
        kind = None if holder is None else self.type_info(holder)[0]
        return model.Param(_s(self.first(chain, "DW_AT_name")), location, kind)

    def return_size(self, chain: list[DIE]) -> int | None:
        holder = next((d for d in chain if "DW_AT_type" in d.attributes), None)
        if holder is None:
            last = chain[-1].attributes
            unresolved = "DW_AT_abstract_origin" in last or "DW_AT_specification" in last
            return None if unresolved else 0
        return self.type_info(holder)[1]

    def type_info(self, holder: DIE) -> tuple[str | None, int | None]:
        t = holder.get_DIE_from_attribute("DW_AT_type")
        for _ in range(16):
            if t.tag in (
                "DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                "DW_TAG_restrict_type", "DW_TAG_atomic_type",
            ):  # fmt: skip
                if "DW_AT_type" not in t.attributes:
                    return "void", 0
                t = t.get_DIE_from_attribute("DW_AT_type")
                continue
            size = (
                t.attributes["DW_AT_byte_size"].value if "DW_AT_byte_size" in t.attributes else None
            )
            if t.tag in (
                "DW_TAG_pointer_type",
                "DW_TAG_reference_type",
                "DW_TAG_ptr_to_member_type",
            ):
                return "pointer", int(size) if size is not None else self.cu.header.address_size
            if t.tag in (
                "DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type",
                "DW_TAG_array_type",
            ):  # fmt: skip
                return "aggregate", None if size is None else int(size)
            return "scalar", None if size is None else int(size)
        return None, None


def _join(comp_dir: str, directory: str, name: str) -> str:
    path = posixpath.normpath(posixpath.join(comp_dir, directory, name))
    root = posixpath.normpath(comp_dir) + "/" if comp_dir else None
    return path[len(root) :] if root and path.startswith(root) else path


def assert_same(fast: model.CuFacts, slow: model.CuFacts) -> None:
    """Exact equality, compared piecewise so a failure names the first differing record."""
    assert fast.unit == slow.unit
    assert len(fast.subprograms) == len(slow.subprograms)
    for f, s in zip(fast.subprograms, slow.subprograms, strict=True):
        assert f == s
    assert len(fast.inline_sites) == len(slow.inline_sites)
    for f2, s2 in zip(fast.inline_sites, slow.inline_sites, strict=True):
        assert f2 == s2


def differential(
    path: Path, names: set[str] | None = None, every: int = 1, use_elf_layer: bool = False
) -> int:
    """Compare fast and slow scans on the chosen CUs of `path`; return how many were compared.

    With `use_elf_layer`, both read the sections binary/elf.py relocated (fast for big modules).
    """
    if use_elf_layer:
        from klp_lsp.binary.elf import ElfBinary

        with ElfBinary.open(path) as elf:
            sections, arch = elf.get_dwarf_sections(), elf.arch
        fast = DwarfData(sections, arch, str(path))
        dwarfinfo = dwarfinfo_from_sections(sections, arch)
    else:
        fast, dwarfinfo, arch = open_pair(path)
    headers = {h.offset: h for h in fast.list_units()}
    n = 0
    for i, cu in enumerate(dwarfinfo.iter_CUs()):
        h = headers[cu.cu_offset]
        if names is not None and h.name not in names:
            continue
        if names is None and i % every:
            continue
        assert_same(fast.scan_unit(cu.cu_offset), SlowScan(dwarfinfo, cu, arch).run())
        n += 1
    return n


# --- small programs built in the test -----------------------------------------------------------

SOURCE = r"""
struct pair { long a, b; };
static int __attribute__((noinline)) helper(int a, int b) { return a * b + 3; }
static inline int twice(int x) { return helper(x, 2) + helper(x, 3); }
static inline int outer(int x) { return twice(x) * 7; }
int __attribute__((noinline)) many(int a, int b, int c, int d, int e, int f, int g) {
	return a + b + c + d + e + f + g;
}
int __attribute__((noinline)) unused(int used, int ignored) { return used * 5; }
static int __attribute__((noinline)) sra(struct pair *p) { return p->a * 3 + 1; }
int __attribute__((noreturn)) die_now(int code);
int entry(int x, struct pair *p) {
	if (x > 100) die_now(x);
	return outer(x) + many(x, 1, 2, 3, 4, 5, x) + unused(x, 9) + sra(p);
}
int die_now(int code) { for (;;) __asm__ volatile("" :: "r"(code)); }
"""


def build(tmp: Path, compiler: str, *flags: str) -> Path:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    src = tmp / "t.c"
    src.write_text(SOURCE)
    out = tmp / "t.elf"
    subprocess.run(
        [compiler, "-O2", "-g", "-nostdlib", "-Wl,-e,entry", *flags, "t.c", "-o", str(out)],
        cwd=tmp,
        check=True,
    )
    return out


def by_name(facts: model.CuFacts, name: str) -> list[model.Subprogram]:
    return [s for s in facts.subprograms if s.name == name]


@pytest.mark.parametrize(
    ("compiler", "flags", "regs"),
    [
        ("gcc", (), ("rdi", "rsi")),
        ("gcc", ("-gdwarf-4",), ("rdi", "rsi")),
        ("aarch64-linux-gnu-gcc", (), ("x0", "x1")),
    ],
)
def test_small_program(
    tmp_path: Path, compiler: str, flags: tuple[str, ...], regs: tuple[str, str]
) -> None:
    path = build(tmp_path, compiler, *flags)
    fast, dwarfinfo, arch = open_pair(path)
    (unit,) = fast.list_units()
    assert unit.name == "t.c" and unit.comp_dir == str(tmp_path)
    assert unit.version == (4 if flags else 5)
    assert "GNU C" in unit.producer and not unit.is_asm and unit.ranges
    facts = fast.scan_unit(unit.offset)

    (many,) = [s for s in by_name(facts, "many") if s.ranges]
    assert many.external and many.decl_file == "t.c" and many.decl_line == 6
    locs = [p.location for p in many.params]
    assert locs[:2] == list(regs)
    if arch == "x86_64":
        assert locs[6] == "stack"  # the 7th integer argument is passed on the stack

    (unused,) = by_name(facts, "unused")
    assert [p.name for p in unused.params] == ["used", "ignored"]
    # An unused argument is still in its register at entry; GCC says so with a location list.
    assert unused.params[1].location == regs[1]
    # Parameters of an abstract instance (no code) have no location at all.
    (abstract,) = [s for s in by_name(facts, "outer") if s.inline]
    assert abstract.params[0].location == "optimized-out"

    # `outer` is inlined into `entry`, and `twice` into `entry` through `outer`.
    (entry,) = by_name(facts, "entry")
    origins = {s.die_offset: s for s in facts.subprograms}
    sites = [s for s in facts.inline_sites if s.container == entry.die_offset]
    names = {origins[s.origin].name: s for s in sites}
    assert {"outer", "twice"} <= set(names)
    assert names["twice"].parent == names["outer"].die_offset
    assert names["outer"].parent is None
    assert names["outer"].call_file == "t.c" and names["outer"].call_line == 14

    # `die_now` is declared noreturn; its definition inherits that through DW_AT_specification.
    assert any(s.noreturn and s.ranges for s in by_name(facts, "die_now"))

    assert_same(facts, SlowScan(dwarfinfo, next(iter(dwarfinfo.iter_CUs())), arch).run())


def test_clone_resolves_name_through_abstract_origin(tmp_path: Path) -> None:
    path = build(tmp_path, "gcc")
    facts = open_pair(path)[0].scan_unit(0)
    clones = [s for s in facts.subprograms if s.abstract_origin is not None and s.ranges]
    # GCC's IPA-SRA turns `sra` into sra.isra.0; its DIE has no name of its own.
    assert any(s.name == "sra" for s in clones)


def test_relocatable_object(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "t.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-c", "t.c", "-o", "t.o"], cwd=tmp_path, check=True)
    assert differential(tmp_path / "t.o") == 1


# --- committed fixtures ---------------------------------------------------------------------------


def _fixture_files() -> list[Path]:
    if not FIXTURES.is_dir():
        return []
    return sorted(
        p for p in FIXTURES.rglob("*") if p.is_file() and (p.name == "vmlinux" or p.suffix == ".ko")
    )


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_differential(path: Path) -> None:
    assert differential(path) >= 1
    if path.suffix == ".ko":
        # The same comparison over the sections binary/elf.py relocated.
        assert differential(path, use_elf_layer=True) >= 1


# --- bad input ------------------------------------------------------------------------------------


def test_missing_debug_info() -> None:
    with pytest.raises(DebugInfoMissing):
        DwarfData({}, "x86_64", "nodebug.o")


def test_truncated_debug_info(tmp_path: Path) -> None:
    path = build(tmp_path, "gcc")
    fast, _, _ = open_pair(path)
    sections = dict(fast._s)
    info = sections[".debug_info"]
    for cut in (3, 11, len(info) // 2):
        broken = DwarfData({**sections, ".debug_info": info[:cut]}, "x86_64", "broken.elf")
        with pytest.raises(BinaryFormatError, match=r"broken\.elf"):
            for h in broken.list_units():
                broken.scan_unit(h.offset)


def test_garbage_abbrev(tmp_path: Path) -> None:
    path = build(tmp_path, "gcc")
    fast, _, _ = open_pair(path)
    sections = dict(fast._s)
    broken = DwarfData(
        {**sections, ".debug_abbrev": b"\x01\x2e\x01\x03\x77\x00"}, "x86_64", "bad.elf"
    )
    with pytest.raises(BinaryFormatError, match=r"bad\.elf"):
        broken.scan_unit(0)


# --- the real kernel (opt-in) ---------------------------------------------------------------------

corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")

# Small and medium CUs with clones, inlining through inlines, and IPA-RA.
_CORPUS_CUS = {
    "lib/maple_tree.c",
    "fs/namespace.c",
    "kernel/trace/blktrace.c",
    "lib/bitmap.c",
    "mm/mmap.c",
}


@corpus
@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_corpus_differential(arch: str) -> None:
    assert CORPUS is not None
    path = Path(CORPUS) / arch / "vmlinux"
    assert differential(path, names=_CORPUS_CUS) == len(_CORPUS_CUS)
    # And a fixed sample over the whole file: every 60th CU (37 on amd64, 38 on arm64).
    assert differential(path, every=60) >= 37


@corpus
@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_module_differential() -> None:
    """xfs.ko, relocated by binary/elf.py, on a few of its CUs."""
    assert CORPUS is not None
    path = Path(CORPUS) / "amd64" / "modules" / "fs" / "xfs" / "xfs.ko"
    names = {"fs/xfs/xfs_inode.c", "fs/xfs/xfs_trace.c", "fs/xfs/libxfs/xfs_bmap.c"}
    assert differential(path, names=names, use_elf_layer=True) == len(names)


@corpus
@pytest.mark.corpus
def test_corpus_census() -> None:
    """Counts over the whole amd64 vmlinux agree with the census in KERNEL_FACTS."""
    assert CORPUS is not None
    from klp_lsp.binary.elf import ElfBinary

    with ElfBinary.open(Path(CORPUS) / "amd64" / "vmlinux") as elf:
        dwarf = DwarfData(elf.get_dwarf_sections(), "x86_64", "vmlinux")
    units = dwarf.list_units()
    assert len(units) == 2172
    subs = sites = 0
    for u in units:
        facts = dwarf.scan_unit(u.offset)
        subs += len(facts.subprograms)
        sites += len(facts.inline_sites)
    assert 240_000 < subs < 260_000
    assert 300_000 < sites < 320_000


# --- facts of the fixture kernels (tests/fixtures/README.md) -------------------------------------

_LOW_PC = {  # symbol value; arm64 DW_AT_low_pc sits after the two patchable-entry NOPs
    "x86_64": {"demo_req_cost.isra.0": 0xFFFFFFFF81000060, "demo_submit": 0xFFFFFFFF81000190},
    "arm64": {
        "demo_req_cost.isra.0": 0xFFFF800008000080 + 8,
        "demo_submit": 0xFFFF800008000280 + 8,
    },
}


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="fixtures not built")
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_fixture_facts(arch: str) -> None:
    from klp_lsp.binary.elf import ElfBinary

    with ElfBinary.open(FIXTURES / arch / "vmlinux") as elf:
        dwarf = DwarfData(elf.get_dwarf_sections(), elf.arch, "vmlinux")
    units = {u.name: u for u in dwarf.list_units()}
    assert units["kernel/demo_sched.c"].version == 4
    assert units["kernel/demo_core.c"].version == 5
    assert units["kernel/demo_core.c"].comp_dir == "/usr/src/linux-klp-demo"
    if arch == "x86_64":
        assert units["arch/x86/lib/hweight.S"].is_asm

    core = dwarf.scan_unit(units["kernel/demo_core.c"].offset)
    subs = {s.die_offset: s for s in core.subprograms}
    concrete = {s.ranges[0][0]: s for s in core.subprograms if s.ranges}

    # The isra clone has no DWARF name of its own; its name comes through DW_AT_abstract_origin.
    clone = concrete[_LOW_PC[arch]["demo_req_cost.isra.0"]]
    assert clone.abstract_origin is not None and clone.name == "demo_req_cost"
    assert clone.decl_file == "kernel/demo_core.c" and not clone.external

    # demo_submit: demo_account_twice (155) -> demo_account (62, 63); demo_lookup (157).
    submit = concrete[_LOW_PC[arch]["demo_submit"]]
    assert submit.name == "demo_submit" and submit.external
    sites = [s for s in core.inline_sites if s.container == submit.die_offset]
    top = sorted((subs[s.origin].name, s.call_line) for s in sites if s.parent is None)
    assert top == [("demo_account_twice", 155), ("demo_lookup", 157)]
    twice = next(s for s in sites if s.parent is None and s.call_line == 155)
    inner = sorted(
        s.call_line
        for s in sites
        if s.parent == twice.die_offset and subs[s.origin].name == "demo_account"
    )
    assert inner == [62, 63]
    assert all(s.call_file == "kernel/demo_core.c" for s in sites if s.parent is None)

    # demo_mix32 is declared in a header and inlined into demo_hash of three CUs.
    mix = [s for s in core.subprograms if s.name == "demo_mix32"]
    assert mix and mix[0].decl_file == "include/linux/demo_inline.h"
    sched = dwarf.scan_unit(units["kernel/demo_sched.c"].offset)
    sched_subs = {s.die_offset: s for s in sched.subprograms}
    assert {sched_subs[s.origin].name for s in sched.inline_sites} >= {"demo_mix32"}
    assert {s.call_line for s in sched.inline_sites} >= {18, 30}
    assert all(s.call_file == "kernel/demo_sched.c" for s in sched.inline_sites if s.parent is None)

    # panic is __noreturn.
    panic = dwarf.scan_unit(units["kernel/panic_demo.c"].offset)
    assert any(s.name == "panic" and s.noreturn and s.ranges for s in panic.subprograms)


def _abbrev_table(*declarations: bytes) -> bytes:
    return b"".join(declarations) + b"\0"


# (code, tag, children, attribute/form pairs) as raw .debug_abbrev bytes: DW_TAG_compile_unit
# (0x11) with DW_AT_name/DW_FORM_string (0x03, 0x08), DW_TAG_variable (0x34) whose last
# attribute is DW_AT_decl_file/DW_FORM_implicit_const (0x3a, 0x21) with value 0 or 64 (SLEB
# 0xc0 0x00): both end in a zero byte just before the (0, 0) terminator.
_CU = b"\x11\x01\x03\x08\0\0"
_VAR_ZERO = b"\x34\x00\x03\x08\x3a\x21\x00\0\0"
_VAR_64 = b"\x34\x00\x03\x08\x3a\x21\xc0\x00\0\0"
_NO_ATTRIBUTES = b"\x24\x00\0\0"


@pytest.mark.parametrize(
    "table",
    [
        _abbrev_table(
            b"\x01" + _VAR_ZERO, b"\x02" + _VAR_64, b"\x03" + _NO_ATTRIBUTES, b"\x04" + _CU
        ),
        _abbrev_table(b"\x01" + _NO_ATTRIBUTES, b"\x02" + _CU, b"\x03" + _VAR_64),
        # Codes out of order, and a multi-byte code: the skip's check fails, the walk finds them.
        _abbrev_table(b"\x03" + _CU, b"\x01" + _VAR_ZERO, b"\x80\x01" + _VAR_64),
        _abbrev_table(b"\x02" + _VAR_64, b"\x01" + _CU),
    ],
)
def test_top_die_abbreviation_equals_full_parse(table: bytes) -> None:
    """Looking up one code (how `list_units` reads top DIEs) gives the full parse's plan."""
    from klp_lsp.binary.dwarf_abbrev import parse_abbrev_table

    data = b"\x07garbage" + table + b"\x01" + _CU + b"\0"  # another table follows
    full = parse_abbrev_table(data, 8, 8, 4, "test", {})
    assert len(full) >= 2
    for code, plan in full.items():
        assert parse_abbrev_table(data, 8, 8, 4, "test", {}, code) == {code: plan}
    assert parse_abbrev_table(data, 8, 8, 4, "test", {}, 99) == {}
