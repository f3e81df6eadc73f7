"""Which undefined symbols of a built livepatch module become livepatch relocations, and to what.

After kbuild, every symbol the module names but does not define is either exported (the module
loader resolves it from Module.symvers) or kernel-internal: then it must become a
`.klp.sym.<obj>.<name>,<sympos>` symbol (binary/klp_convert.py). The generator knows what each
name it declared stands for (a static of a given compile unit, a static local, a global of the
file); other names come from headers and are looked up as global symbols of the patched objects
and of vmlinux. A name found nowhere is an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from klp_lsp.binary.klp_convert import KlpTarget, Reference
from klp_lsp.generate.symbols import CuSymbols, Export, KernelObject
from klp_lsp.generate.unit import ExternRef, UnitProblem

# Sections of the module whose relocations the kernel applies before livepatch can apply a
# module object's klp relocations (kernel/module/main.c `post_relocation` -> module_finalize:
# alternatives, jump labels, static calls, ORC, ftrace records). A klp relocation there against
# a module's symbol is applied too late; vmlinux ones are applied by the loader itself
# (`apply_relocations` -> `klp_apply_section_relocs(..., NULL)`, Linux 6.1), so they are fine.
_EARLY_SECTIONS = (".text", ".rodata", ".data", ".bss", ".init.text", ".exit.text")


@dataclass(frozen=True, slots=True)
class UnitSymbols:
    """What the generator declared in one compile unit, and where to look the names up."""

    object: str
    symbols: CuSymbols
    externs: Sequence[ExternRef]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The klp targets of a module's undefined symbols, those left to the loader, problems."""

    targets: dict[str, KlpTarget]
    exported: tuple[str, ...]
    problems: tuple[UnitProblem, ...]


def resolve(
    references: Sequence[Reference],
    units: Sequence[UnitSymbols],
    objects: Mapping[str, KernelObject],
    exports: Mapping[str, Export],
) -> Resolution:
    """Resolve every undefined symbol of a module (see the module docstring)."""
    declared: dict[str, tuple[UnitSymbols, ExternRef]] = {}
    for u in units:
        for ref in u.externs:
            declared.setdefault(ref.c_name, (u, ref))
    patched_modules = [o for o in dict.fromkeys(u.object for u in units) if o != "vmlinux"]
    targets: dict[str, KlpTarget] = {}
    exported: list[str] = []
    problems: list[UnitProblem] = []
    for name in dict.fromkeys(r.symbol for r in references):
        found = declared.get(name)
        if found is not None:
            target, problem = _declared(found[0], found[1], objects, exports)
        else:
            target, problem = _from_headers(name, patched_modules, objects, exports)
        if problem is not None:
            problems.append(problem)
        elif target is None:
            exported.append(name)
        else:
            targets[name] = target
    for r in references:
        t = targets.get(r.symbol)
        if t is not None and t.object != "vmlinux" and not r.section.startswith(_EARLY_SECTIONS):
            problems.append(
                UnitProblem(
                    "error",
                    "late-relocation",
                    f"{r.section} of the module refers to {t.name} of {t.object}: the kernel"
                    f" processes {r.section} when the livepatch module loads, before it can"
                    f" resolve {t.object}'s symbols; avoid the construct (a jump label, static"
                    " call or alternative on a module symbol) in the patched code",
                )
            )
    return Resolution(targets, tuple(exported), tuple(_unique(problems)))


def _unique(problems: list[UnitProblem]) -> list[UnitProblem]:
    return list(dict.fromkeys(problems))


def _declared(
    unit: UnitSymbols,
    ref: ExternRef,
    objects: Mapping[str, KernelObject],
    exports: Mapping[str, Export],
) -> tuple[KlpTarget | None, UnitProblem | None]:
    obj = objects[unit.object]
    cu = unit.symbols
    where = f"{ref.file}:{ref.line}"
    if ref.kind == "static-local":
        found, base = cu.static_local(ref.symbol)
        if len(found) != 1:
            why = (
                "GCC kept no such symbol (it optimised the variable away)"
                if not found
                else f"{len(found)} static locals named {base} in this file: "
                + ", ".join(s.name for s in found)
            )
            return None, UnitProblem(
                "error",
                "unresolved-symbol",
                f"the static local {base} of {ref.function} ({where}) cannot be matched to the"
                f" kernel's: {why}",
                ref.file,
                ref.line,
                ref.function,
            )
        return _target(obj, found[0].name, found[0].address, where)
    if ref.local:
        s = cu.local(ref.symbol)
        if s is None:
            return None, UnitProblem(
                "error",
                "unresolved-symbol",
                f"{ref.symbol} ({where}) is static in {cu.source} but {obj.name} has no symbol"
                " for it there (GCC inlined or removed it); it cannot be reached from the module",
                ref.file,
                ref.line,
            )
        return _target(obj, s.name, s.address, where)
    # A global of the patched file: exported ones stay normal relocations to vmlinux.
    if unit.object == "vmlinux" and _exported_by(exports, ref.symbol, "vmlinux"):
        return None, None
    g = obj.global_symbol(ref.symbol)
    if g is None:
        return None, UnitProblem(
            "error",
            "unresolved-symbol",
            f"{ref.symbol} ({where}) is not a symbol of {obj.name}",
            ref.file,
            ref.line,
        )
    return _target(obj, g.name, g.address, where)


def _from_headers(
    name: str,
    patched_modules: Sequence[str],
    objects: Mapping[str, KernelObject],
    exports: Mapping[str, Export],
) -> tuple[KlpTarget | None, UnitProblem | None]:
    # A patched module's own symbols are always reached through klp relocations, even when
    # it exports them: a normal relocation would make the livepatch module depend on it and
    # load it, and a livepatch must not load the modules it patches.
    for m in patched_modules:
        obj = objects.get(m)
        g = obj.global_symbol(name) if obj is not None else None
        if obj is not None and g is not None:
            return _target(obj, g.name, g.address, name)
    if name in exports:
        return None, None
    vmlinux = objects.get("vmlinux")
    if vmlinux is not None:
        g = vmlinux.global_symbol(name)
        if g is not None:
            return _target(vmlinux, g.name, g.address, name)
    where = ", ".join(["vmlinux", *patched_modules])
    return None, UnitProblem(
        "error",
        "unresolved-symbol",
        f"the module needs {name}, which is neither exported (Module.symvers) nor a symbol of"
        f" {where}",
    )


def _exported_by(exports: Mapping[str, Export], name: str, module: str) -> bool:
    e = exports.get(name)
    return e is not None and (e.module == module or e.module.endswith("/" + module))


def _target(
    obj: KernelObject, name: str, address: int, where: str
) -> tuple[KlpTarget | None, UnitProblem | None]:
    pos = obj.sympos(name, address)
    if pos is None:
        return None, UnitProblem(
            "error",
            "unresolved-symbol",
            f"{name} ({where}) is not in {obj.name}'s kallsyms, which livepatch searches"
            " (a data symbol needs CONFIG_KALLSYMS_ALL)",
        )
    return KlpTarget(obj.name, name, pos), None
