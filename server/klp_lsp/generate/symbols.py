"""The kernel's symbols as a livepatch module sees them: per compile unit, by sympos, exported.

Static symbols of different files share names (`jhash` 17 times in Debian's vmlinux), so a
static function or variable is looked up among the symbols of its own compile unit: the linker
keeps each input object's local symbols together after its STT_FILE symbol, and the group of a
CU is the one holding a local function whose address lies in the CU's code ranges (from the
index). Its `sympos` is then counted over the object's kallsyms list exactly as
kernel/livepatch/core.c `klp_find_callback` counts (`analysis.symbols.assign_sympos`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.analysis.clones import parse_clone_name
from klp_lsp.analysis.symbols import assign_sympos
from klp_lsp.binary.elf import ElfBinary, RawSymbol
from klp_lsp.errors import UsageError
from klp_lsp.index.query import ObjectIndex
from klp_lsp.index.store import CuRow, source_name
from klp_lsp.model import ElfSymbol

STT_OBJECT = 1
STT_FUNC = 2
STT_FILE = 4
STB_LOCAL = 0
# GCC names a function's `static int count;` "count.N" in the symbol table.
_LOCAL_SUFFIX = re.compile(r"^(.+)\.(\d+)$")


@dataclass(frozen=True, slots=True)
class Export:
    """One line of Module.symvers."""

    name: str
    module: str  # "vmlinux" or the module path, e.g. "drivers/net/virtio_net"
    kind: str  # EXPORT_SYMBOL, EXPORT_SYMBOL_GPL


def read_module_symvers(path: Path) -> dict[str, Export]:
    """Exported symbols by name from a kbuild `Module.symvers` (crc, name, module, kind, ns)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"{path}: cannot read Module.symvers: {e.strerror or e}") from e
    out: dict[str, Export] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 4:
            out[parts[1]] = Export(parts[1], parts[2], parts[3])
    return out


class KernelObject:
    """One indexed object (vmlinux or a module) and its ELF symbols, read on demand."""

    def __init__(self, index: ObjectIndex) -> None:
        self.index = index
        self.name = index.object
        self.path = Path(index.index.binary)
        self._binary: ElfBinary | None = None
        self._groups: list[list[RawSymbol]] | None = None
        self._sympos: dict[tuple[str, int], int] | None = None
        self._kallsyms_names: set[str] | None = None

    def binary(self) -> ElfBinary:
        if self._binary is None:
            self._binary = ElfBinary.open(self.path)
        return self._binary

    def close(self) -> None:
        if self._binary is not None:
            self._binary.close()
            self._binary = None

    def _file_groups(self) -> list[list[RawSymbol]]:
        """Local symbols of each input file, in `.symtab` order."""
        if self._groups is None:
            groups: list[list[RawSymbol]] = []
            for s in self.binary().iter_symbols():
                if s.type == STT_FILE:
                    groups.append([])
                elif s.binding == STB_LOCAL and groups and s.name:
                    groups[-1].append(s)
            self._groups = groups
        return self._groups

    def cu_group(self, cu: CuRow) -> list[RawSymbol]:
        """The local symbols of one compile unit (empty when they cannot be told apart)."""
        base = Path(cu.unit.name).name
        candidates: list[list[RawSymbol]] = []
        for group in self._file_groups():
            for s in group:
                if (
                    s.type == STT_FUNC
                    and s.section
                    and any(lo <= s.address < hi for lo, hi in cu.ranges)
                ):
                    return group
            candidates.append(group)
        del candidates
        # A CU without local functions: the file symbol's name is its basename.
        named = [g for g, f in self._file_names() if f == base]
        return named[0] if len(named) == 1 else []

    def _file_names(self) -> list[tuple[list[RawSymbol], str]]:
        out = []
        groups = self._file_groups()
        files = [s.name for s in self.binary().iter_symbols() if s.type == STT_FILE]
        for group, name in zip(groups, files, strict=False):
            out.append((group, name))
        return out

    def sympos(self, name: str, address: int) -> int | None:
        """Livepatch's sympos of the kallsyms entry (name, address); None if kallsyms lacks it."""
        if self._sympos is None:
            self._sympos = assign_sympos(self._kallsyms())
        return self._sympos.get((name, address))

    def _kallsyms(self) -> list[ElfSymbol]:
        binary = self.binary()
        decoded = binary.get_kallsyms()
        if decoded is not None:
            return [ElfSymbol(n, a, 0, "", "global") for _t, n, a in decoded]
        return binary.iter_kallsyms_symbols()

    def global_symbol(self, name: str) -> RawSymbol | None:
        """The defined global (or weak) symbol `name`, if the object has one."""
        for s in self.binary().iter_symbols():
            if s.name == name and s.binding != STB_LOCAL and s.section is not None:
                return s
        return None

    def cu_of_symbol(self, name: str, sympos: int) -> CuRow | None:
        """The compile unit whose code holds FUNC symbol `name` with this sympos."""
        for s in self.index.symbols_named(name):
            if s.sympos == sympos:
                cu = self.index.cu_of_address(s.address)
                if cu is None and self.index.index.arch == "aarch64":
                    # The patchable-entry NOPs precede DW_AT_low_pc (analysis/symbols.py).
                    cu = self.index.cu_of_address(s.address + 8)
                return cu
        return None


class CuSymbols:
    """`unit.SymbolView` over one compile unit of a kernel object."""

    def __init__(self, obj: KernelObject, cu: CuRow) -> None:
        self.obj = obj
        self.cu = cu
        self.group = obj.cu_group(cu)
        self._by_name: dict[str, list[RawSymbol]] = {}
        for s in self.group:
            self._by_name.setdefault(s.name, []).append(s)

    @property
    def source(self) -> str:
        return source_name(self.cu.unit.name, self.cu.unit.comp_dir)

    def callable(self, name: str) -> bool:
        if parse_clone_name(name).is_clone:
            return False
        return any(s.type == STT_FUNC for s in self._by_name.get(name, ()))

    def has_data(self, name: str) -> bool:
        if any(s.type == STT_OBJECT for s in self._by_name.get(name, ())):
            return True
        g = self.obj.global_symbol(name)
        return g is not None and g.type == STT_OBJECT

    def data_size(self, name: str) -> int | None:
        for s in self._by_name.get(name, ()):
            if s.type == STT_OBJECT and s.size:
                return s.size
        return None

    def local(self, name: str) -> RawSymbol | None:
        """The static symbol `name` of this CU (functions first)."""
        found = sorted(self._by_name.get(name, ()), key=lambda s: s.type != STT_FUNC)
        return found[0] if found else None

    def static_local(self, name: str) -> tuple[list[RawSymbol], str]:
        """The `name.N` data symbols of this CU (a function's static local)."""
        found = []
        for s in self.group:
            m = _LOCAL_SUFFIX.match(s.name)
            if m and m.group(1) == name and s.type == STT_OBJECT:
                found.append(s)
        return found, name
