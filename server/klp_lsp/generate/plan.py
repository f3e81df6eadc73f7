"""From `check`'s replace set to the compile units and `klp_func` entries of a livepatch module.

Each entry of the replace set is a symbol of the running kernel (the changed function, a host
that inlined it, a caller that relies on its registers). Its replacement is the patched body of
the C function that became that symbol, compiled from that symbol's compile unit. A GCC clone
with a private calling convention (`.isra`, `.constprop`, `.part`) cannot be given a body of
the same convention from C: its callers, all in the same compile unit since clones are local,
are replaced instead, so no patched code reaches the old clone and the transition waits for any
task inside it through its replaced caller on the stack.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from klp_lsp.analysis.clones import has_private_abi, parse_clone_name
from klp_lsp.generate.symbols import KernelObject
from klp_lsp.index.store import source_name
from klp_lsp.model import ReplaceEntry

# SYSCALL_DEFINEn(x, ...) symbols (include/linux/syscalls.h, asm/syscall_wrapper.h).
_SYSCALL = re.compile(r"^__(x64|ia32|arm64|do|se)_(compat_)?sys_(\w+)$")
_MAX_CLIMB = 6


@dataclass(frozen=True, slots=True)
class FuncPlan:
    """One `klp_func`: the kernel symbol replaced and the C function that replaces it."""

    object: str
    old_name: str
    old_sympos: int
    c_name: str  # the C function of the compile unit (for SYSCALL_DEFINEn(x, ...): "x")
    reason: str
    syscall_prefix: str | None = None  # "__x64_sys_" when the symbol is a syscall entry


@dataclass(slots=True)
class UnitPlan:
    """The functions of one compile unit to replace."""

    object: str
    cu: str  # the CU's source file, relative to the tree
    cu_id: int
    funcs: list[FuncPlan] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LeftInPlace:
    """A replace-set entry the module does not replace, and why that is safe."""

    object: str
    symbol: str
    sympos: int
    reason: str


@dataclass(slots=True)
class ModulePlan:
    units: list[UnitPlan]
    left: list[LeftInPlace]
    unplaced: list[tuple[ReplaceEntry, str]]  # entries that could not be planned, and why


def c_function_of(symbol: str) -> tuple[str, str | None]:
    """(C name, syscall entry prefix) of a kernel function symbol."""
    origin = parse_clone_name(symbol).origin
    m = _SYSCALL.match(origin)
    if m:
        return m.group(3), origin[: len(origin) - len(m.group(3))]
    return origin, None


def plan_module(replace: Sequence[ReplaceEntry], objects: dict[str, KernelObject]) -> ModulePlan:
    """Group the replace set by compile unit, replacing callers of private-ABI clones."""
    entries: dict[tuple[str, str, int], ReplaceEntry] = {}
    for e in replace:
        entries.setdefault((e.object, e.symbol, e.sympos), e)
    left: list[LeftInPlace] = []
    unplaced: list[tuple[ReplaceEntry, str]] = []
    # Replace private-ABI clones by their callers, to a fixpoint (a caller may be a clone too).
    for _ in range(_MAX_CLIMB):
        clones = [e for e in entries.values() if has_private_abi(e.symbol)]
        if not clones:
            break
        for e in clones:
            del entries[(e.object, e.symbol, e.sympos)]
            obj = objects.get(e.object)
            callers: list[str] = []
            if obj is not None:
                syms = [s for s in obj.index.symbols_named(e.symbol) if s.sympos == e.sympos]
                for call in obj.index.callers_of(s.address for s in syms):
                    found = [
                        s
                        for s in obj.index.symbols_at(call.caller_address)
                        if "cold" not in s.clone_kinds
                    ]
                    found.sort(key=lambda s: (not s.patchable, s.binding == "local", s.name))
                    if not found:
                        continue
                    s = found[0]
                    if s.name.endswith(".cold"):
                        continue
                    callers.append(s.name)
                    key = (e.object, s.name, s.sympos)
                    if key not in entries:
                        entries[key] = ReplaceEntry(
                            e.object,
                            s.name,
                            s.sympos,
                            f"calls {e.symbol}, a GCC clone with a private calling convention",
                            s.patchable,
                        )
            names = ", ".join(dict.fromkeys(callers)) or "none found"
            left.append(
                LeftInPlace(
                    e.object,
                    e.symbol,
                    e.sympos,
                    f"a GCC clone with a private calling convention ({e.reason}); its callers"
                    f" are replaced instead, so patched code never reaches it: {names}",
                )
            )
    units: dict[tuple[str, int], UnitPlan] = {}
    for e in entries.values():
        if not e.patchable:
            if not _reached_through_callers(e, entries, objects):
                unplaced.append(
                    (
                        e,
                        "it cannot be patched through ftrace, and no caller that can is replaced;"
                        " this part of the change does not reach the running kernel",
                    )
                )
            continue
        obj = objects.get(e.object)
        if obj is None:
            unplaced.append((e, f"{e.object} is not indexed"))
            continue
        cu = obj.cu_of_symbol(e.symbol, e.sympos)
        if cu is None:
            unplaced.append((e, "no compile unit holds its code"))
            continue
        if cu.unit.is_asm:
            unplaced.append((e, f"it is assembly ({cu.unit.name})"))
            continue
        c_name, prefix = c_function_of(e.symbol)
        unit_key = (e.object, cu.unit.offset)
        unit = units.get(unit_key)
        if unit is None:
            unit = units[unit_key] = UnitPlan(
                e.object, source_name(cu.unit.name, cu.unit.comp_dir), cu.unit.offset
            )
        unit.funcs.append(FuncPlan(e.object, e.symbol, e.sympos, c_name, e.reason, prefix))
    ordered = sorted(units.values(), key=lambda u: (u.object != "vmlinux", u.object, u.cu))
    return ModulePlan(ordered, left, unplaced)


def _reached_through_callers(
    entry: ReplaceEntry,
    entries: dict[tuple[str, str, int], ReplaceEntry],
    objects: dict[str, KernelObject],
) -> bool:
    """Whether a patchable caller of an unpatchable entry (directly or through unpatchable
    callers, as `check` climbs) is in the set, so that the change still reaches the kernel."""
    obj = objects.get(entry.object)
    if obj is None:
        return False
    frontier = [
        s.address for s in obj.index.symbols_named(entry.symbol) if s.sympos == entry.sympos
    ]
    seen: set[int] = set(frontier)
    for _ in range(_MAX_CLIMB):
        if not frontier:
            return False
        nxt: list[int] = []
        for call in obj.index.callers_of(frontier):
            for s in obj.index.symbols_at(call.caller_address):
                found = entries.get((entry.object, s.name, s.sympos))
                if found is not None and found.patchable:
                    return True
            if call.caller_address not in seen:
                seen.add(call.caller_address)
                nxt.append(call.caller_address)
        frontier = nxt
    return False
