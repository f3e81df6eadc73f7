"""The prototypes of a livepatch skeleton's replacement functions, from the source and the binary.

A replacement of a plain function gets the original's prototype as written in its source file
(found by tree-sitter, attribute macros and storage class left out). A replacement of a GCC
clone gets the prototype that matches the clone's registers: each C parameter the clone still
receives stays in the register it arrives in, a value IPA-SRA derived from a parameter becomes
an `unsigned long` in its register, and the comment says which parameters GCC dropped or fixed.
Syscall entry points defined by `SYSCALL_DEFINEn` take `const struct pt_regs *`
(arch/x86/include/asm/syscall_wrapper.h, arch/arm64/include/asm/syscall_wrapper.h).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.analysis.clones import parse_clone_name
from klp_lsp.analysis.livepatch import is_abi_clone
from klp_lsp.binary.abi import get_abi
from klp_lsp.index.query import IndexSet, ObjectIndex
from klp_lsp.livepatch.verify import ObjectFiles, received_registers
from klp_lsp.model import CheckResult, ReplaceEntry, SymbolFact
from klp_lsp.patch.render import Prototype, render_skeleton, skeleton_function_name
from klp_lsp.patch.source_map import CPrototype, SourceParser

_SYSCALL_STUBS = ("__x64_sys_", "__ia32_sys_", "__arm64_sys_")


@dataclass(slots=True)
class _Sources:
    root: Path | None
    parser: SourceParser
    cache: dict[str, dict[str, CPrototype]]

    def prototype(self, file: str | None, name: str) -> CPrototype | None:
        if self.root is None or file is None:
            return None
        found = self.cache.get(file)
        if found is None:
            path = Path(file) if Path(file).is_absolute() else self.root / file
            try:
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                text = ""
            found = self.cache[file] = self.parser.prototypes(text)
        return found.get(name)


def _symbol(o: ObjectIndex, entry: ReplaceEntry) -> SymbolFact | None:
    for s in o.symbols_named(entry.symbol):
        if s.sympos == entry.sympos:
            return s
    return None


def _clone_prototype(
    proto: CPrototype,
    new_name: str,
    params: Mapping[str, str],
    kinds: Sequence[str],
    arch: str,
    received: frozenset[str] | None,
) -> Prototype:
    regs = get_abi(arch).arg_registers
    slots: dict[str, str] = {}
    stack: list[str] = []
    dropped: list[str] = []
    fixed: list[str] = []
    derived: list[str] = []
    for i, (text, name) in enumerate(proto.params):
        where = params.get(name or "", "unknown")
        own = regs[i] if i < len(regs) else None
        if where in regs:
            slots[where] = text
        elif where == "stack":
            stack.append(text)
        elif where == "optimized-out" and not (received and own in received):
            dropped.append(name or f"#{i + 1}")
        elif own is not None and received is not None and own in received and own not in slots:
            if where == "optimized-out":
                slots[own] = text  # DWARF lost it, but the clone still reads its register
            else:
                slots[own] = f"unsigned long {name or f'arg{i + 1}'}_isra"
                derived.append(name or f"#{i + 1}")
        else:
            fixed.append(name or f"#{i + 1}")
    used = [r for r in regs if r in slots]
    last = regs.index(used[-1]) + 1 if used else 0
    args = [slots.get(r, f"unsigned long unused_{r}") for r in regs[:last]] + stack
    notes = []
    if dropped:
        notes.append(f"GCC dropped {', '.join(dropped)} (callers do not pass it)")
    if fixed:
        notes.append(f"GCC fixed {', '.join(fixed)} (a constant or a value it computes itself)")
    if derived:
        verb = "arrives" if len(derived) == 1 else "arrive"
        notes.append(
            f"{', '.join(derived)} {verb} as a value IPA-SRA derived from the C parameter"
            " (a field or the pointed-to value: see the callers' code)"
        )
    kind = ", ".join(k for k in kinds if k != "cold")
    comment = (
        f"the clone's ABI ({kind}), not the C prototype of {proto.name}: " + "; ".join(notes)
        if notes
        else f"the clone's ABI ({kind}): the same parameters as {proto.name}"
    )
    return Prototype(proto.render(new_name, args), comment)


def skeleton_prototypes(
    result: CheckResult, indexes: IndexSet, source_root: Path | None
) -> dict[tuple[str, str, int], Prototype]:
    """A prototype for each patchable entry of the replace set, keyed (object, symbol, sympos)."""
    sources = _Sources(source_root, SourceParser(), {})
    files: dict[str, ObjectFiles] = {}
    out: dict[tuple[str, str, int], Prototype] = {}
    try:
        for entry in result.replace:
            if not entry.patchable:
                continue
            o = indexes.get_object(entry.object)
            if o is None:
                continue
            new_name = skeleton_function_name(entry.symbol)
            if entry.symbol.startswith(_SYSCALL_STUBS):
                out[(entry.object, entry.symbol, entry.sympos)] = Prototype(
                    f"long {new_name}(const struct pt_regs *regs)",
                    "a syscall entry point (SYSCALL_DEFINE): its arguments are in *regs",
                )
                continue
            s = _symbol(o, entry)
            if s is None:
                continue
            origin = parse_clone_name(entry.symbol).origin
            instance = o.instance_at(s.address)
            decl_file = instance.decl_file if instance is not None else None
            if decl_file is None:
                decl_file = next((d for d, _line in o.definitions_of(origin) if d), None)
            proto = sources.prototype(decl_file, origin)
            if proto is None:
                continue
            if instance is not None and is_abi_clone(s.clone_kinds):
                f = files.get(o.object)
                if f is None:
                    f = files[o.object] = ObjectFiles(o)
                received = received_registers(o, f, s)
                params = {p.name: p.location for p in instance.params if p.name}
                out[(entry.object, entry.symbol, entry.sympos)] = _clone_prototype(
                    proto, new_name, params, s.clone_kinds, o.index.arch, received
                )
            else:
                out[(entry.object, entry.symbol, entry.sympos)] = Prototype(
                    proto.render(new_name), None
                )
    finally:
        for f in files.values():
            f.close()
    return out


def build_skeleton(
    result: CheckResult,
    indexes: IndexSet,
    source_root: Path | None,
    patch_names: Sequence[str] = (),
) -> str:
    """The livepatch module source for a check result, with real prototypes."""
    return render_skeleton(result, patch_names, skeleton_prototypes(result, indexes, source_root))


def render_kbuild(module: str) -> str:
    """A Kbuild file that builds the skeleton as `module.ko` (`make -C <headers> M=$PWD`)."""
    return f"obj-m += {module}.o\n"
