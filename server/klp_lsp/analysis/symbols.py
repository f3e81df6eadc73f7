"""Livepatch symbol facts: `sympos` as the kernel counts it, aliases, DWARF-to-symbol matching."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Set

from klp_lsp.model import Arch, ElfSymbol


def assign_sympos(symbols: Iterable[ElfSymbol]) -> dict[tuple[str, int], int]:
    """Map (name, address) to livepatch's `sympos`: 0 when the name is unique, else 1-based.

    `symbols` must be the object's kallsyms symbols in kallsyms order (see
    `ElfBinary.iter_kallsyms_symbols`). kernel/livepatch/core.c `klp_find_callback` counts every
    kallsyms entry with the same name in the same object, whatever its type or binding (a global
    and a static with one name both count), in `kallsyms_on_each_symbol` order: for vmlinux the
    address order made by scripts/kallsyms.c `compare_symbols`, for a module its `.symtab` order
    (`module_kallsyms_on_each_symbol`). `klp_find_object_symbol` accepts sympos 0 only when the
    name occurs once.
    """
    by_name: dict[str, list[int]] = defaultdict(list)
    for s in symbols:
        by_name[s.name].append(s.address)
    out: dict[tuple[str, int], int] = {}
    for name, addresses in by_name.items():
        if len(addresses) == 1:
            out[(name, addresses[0])] = 0
            continue
        for position, address in enumerate(addresses, start=1):
            # The same (name, address) twice (e.g. a symbol listed twice) keeps its first place.
            out.setdefault((name, address), position)
    return out


def group_aliases(symbols: Iterable[ElfSymbol]) -> dict[int, tuple[str, ...]]:
    """Map each address that carries several distinct names to those names, sorted."""
    by_address: dict[int, set[str]] = defaultdict(set)
    for s in symbols:
        by_address[s.address].add(s.name)
    return {
        address: tuple(sorted(names)) for address, names in by_address.items() if len(names) > 1
    }


# GCC emits the `-fpatchable-function-entry=2` NOPs before the function's DWARF entry label, so
# on arm64 DW_AT_low_pc is the symbol address + 8 (Debian 6.1: `vfs_read` is at
# 0xffff8000083a0710, its DW_AT_low_pc 0xffff8000083a0718; every patchable function of xfs.ko
# likewise). A function without the NOPs (notrace, no ftrace flags) keeps low_pc == symbol.
_PATCHABLE_ENTRY_BYTES = 8


def find_symbol_start(low_pc: int, starts: Set[int], arch: Arch) -> int | None:
    """The FUNC symbol address that a DW_TAG_subprogram's DW_AT_low_pc belongs to, or None."""
    if low_pc in starts:
        return low_pc
    if arch == "aarch64" and low_pc - _PATCHABLE_ENTRY_BYTES in starts:
        return low_pc - _PATCHABLE_ENTRY_BYTES
    return None


class CuLocator:
    """Finds the compile unit whose code ranges (`(lo, hi, cu)` spans) hold an address."""

    def __init__(self, spans: Iterable[tuple[int, int, int]]) -> None:
        self._spans = sorted(span for span in spans if span[1] > span[0])
        self._starts = [span[0] for span in self._spans]

    def find(self, address: int) -> int | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self._spans[i][0] <= address < self._spans[i][1]:
            return self._spans[i][2]
        return None

    def find_function(self, address: int, size: int, arch: Arch) -> int | None:
        """The CU of a function symbol. On arm64 the patchable-entry NOPs come before
        DW_AT_low_pc, so a CU's first function starts 8 bytes before the CU's ranges (without
        this ~2,200 Debian arm64 functions had no CU); a symbol no longer than the NOPs is not
        looked up past its end."""
        found = self.find(address)
        if found is None and arch == "aarch64" and size > _PATCHABLE_ENTRY_BYTES:
            found = self.find(address + _PATCHABLE_ENTRY_BYTES)
        return found
