"""`klp-lsp verify`: a built livepatch module checked against the indexed kernel.

The module is read by `binary/livepatch.py` (what each `klp_func` says), indexed like any module
(its functions' parameter locations and clobber sets), and every entry is judged with the index
of the object it patches: how the kernel resolves `old_name`/`old_sympos`, whether ftrace can
redirect the target, whether the replacement's calling convention fits the original's compiled
code, and whether it writes registers the original's callers rely on. Module-wide checks cover
the klp relocations, the imports, the vermagic and `livepatch` modinfo, and, with patches, the
replace set `check` computes. Each check has one finding kind (`VERIFY_FINDING_KINDS`), each
explained in docs/findings/.

Entry points: `verify_module` (from a `Session`, as the CLI and the language server use it) and
`Verifier` (from open indexes). The result renders with `result_to_json`, `result_to_text` and
`result_to_sarif`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from klp_lsp.analysis.clones import has_private_abi, is_cold_part
from klp_lsp.analysis.livepatch import (
    AbiDifference,
    compare_parameters,
    compare_returns,
    entry_arguments,
    is_abi_clone,
    resolve_kallsyms,
    resolve_sympos,
    same_magic,
)
from klp_lsp.binary.abi import sort_registers
from klp_lsp.binary.livepatch import module_exports, read_kernel_module_abi, read_livepatch_module
from klp_lsp.errors import KlpError
from klp_lsp.index.query import IndexSet, ObjectIndex
from klp_lsp.model import (
    CheckResult,
    DependentFact,
    Finding,
    KernelModuleAbi,
    KlpFunc,
    LivepatchModule,
    Related,
    Severity,
    SymbolFact,
)

if TYPE_CHECKING:
    from klp_lsp.binary.dwarf import DwarfData
    from klp_lsp.binary.elf import ElfBinary
    from klp_lsp.progress import Progress
    from klp_lsp.session import Session

# Stable finding kinds of `verify`; each has a page under docs/findings/<kind>.md.
VERIFY_FINDING_KINDS: tuple[str, ...] = (
    "unresolved-symbol",
    "unpatchable-target",
    "abi-mismatch",
    "register-clobber",
    "coverage",
    "klp-relocation",
    "vermagic",
    "module-structure",
)

Status = Literal["ok", "warning", "error", "unchecked"]

_PREVIEW = 6


@dataclass(frozen=True, slots=True)
class VerifiedFunction:
    """One `klp_func` of the module with what the kernel finds for it and the findings."""

    func: KlpFunc
    status: Status
    target: SymbolFact | None  # what old_name/old_sympos resolve to, None if nothing
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verifying one livepatch module."""

    module: LivepatchModule
    patches: tuple[str, ...]  # the patches given for the coverage check (may be empty)
    functions: tuple[VerifiedFunction, ...]
    findings: tuple[Finding, ...]  # about the module as a whole
    notes: tuple[str, ...] = ()
    kernel_vermagic: str | None = None

    @property
    def all_findings(self) -> tuple[Finding, ...]:
        return (*(f for v in self.functions for f in v.findings), *self.findings)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.all_findings)


def _names(items: Iterable[str], limit: int = _PREVIEW) -> str:
    seen = list(dict.fromkeys(items))
    text = ", ".join(seen[:limit])
    return text + (f" and {len(seen) - limit} more" if len(seen) > limit else "")


class ObjectFiles:
    """The binary behind one indexed object, opened only when a check needs its bytes."""

    def __init__(self, index: ObjectIndex) -> None:
        self.index = index
        self.path = Path(index.index.binary)
        self._binary: ElfBinary | None = None
        self._dwarf: DwarfData | None = None
        self._kallsyms: dict[str, list[int]] | None = None
        self.failed: str | None = None

    def binary(self) -> ElfBinary | None:
        if self._binary is None and self.failed is None:
            from klp_lsp.binary.elf import ElfBinary

            try:
                binary = ElfBinary.open(self.path)
            except KlpError as e:
                self.failed = str(e)
                return None
            if binary.build_id != self.index.index.build_id:
                binary.close()
                self.failed = f"{self.path} is not the binary indexed as {self.index.object}"
                return None
            self._binary = binary
        return self._binary

    def dwarf(self) -> DwarfData | None:
        if self._dwarf is None:
            binary = self.binary()
            if binary is None or not binary.has_dwarf:
                return None
            from klp_lsp.binary.dwarf import DwarfData

            wanted = (".debug_info", ".debug_abbrev", ".debug_str", ".debug_str_offsets",
                      ".debug_line_str", ".debug_addr")  # fmt: skip
            self._dwarf = DwarfData(binary.get_dwarf_sections(wanted), binary.arch, str(self.path))
        return self._dwarf

    def kallsyms(self) -> dict[str, list[int]] | None:
        """Name -> addresses in kallsyms order (what livepatch counts sympos over)."""
        if self._kallsyms is None:
            binary = self.binary()
            if binary is None:
                return None
            table: dict[str, list[int]] = {}
            for s in binary.iter_kallsyms_symbols():
                table.setdefault(s.name, []).append(s.address)
            self._kallsyms = table
        return self._kallsyms

    def close(self) -> None:
        if self._binary is not None:
            self._binary.close()
            self._binary = None
        self._dwarf = None


class Verifier:
    """Verifies livepatch modules against one kernel's open indexes."""

    def __init__(
        self,
        indexes: IndexSet,
        *,
        kernel: KernelModuleAbi | None = None,
        kernel_source: str = "",
        module_exports: dict[str, dict[str, bool]] | None = None,
    ) -> None:
        self.indexes = indexes
        self.kernel = kernel
        self.kernel_source = kernel_source
        # Exports of indexed modules by module name (for a module's `depends=`).
        self.module_exports = module_exports or {}
        self._files: dict[str, ObjectFiles] = {}

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def _object_files(self, o: ObjectIndex) -> ObjectFiles:
        found = self._files.get(o.object)
        if found is None:
            found = self._files[o.object] = ObjectFiles(o)
        return found

    # --- the whole module ------------------------------------------------------------------

    def verify(
        self,
        module: LivepatchModule,
        module_index: ObjectIndex | None = None,
        check: CheckResult | None = None,
        patches: Sequence[str] = (),
    ) -> VerifyResult:
        """Check every entry of `module`; `module_index` is the module's own index (for the
        ABI and register checks), `check` the result of `check` on its patches (coverage)."""
        notes: list[str] = []
        module_files = None if module_index is None else ObjectFiles(module_index)
        if module_index is None:
            notes.append(
                f"{module.path} has no DWARF: the ABI and register checks need it"
                " (build the module with debug info)"
            )
        try:
            functions = [
                self._function(module, f, module_index, module_files) for f in module.funcs
            ]
        finally:
            if module_files is not None:
                module_files.close()
        findings: list[Finding] = []
        findings.extend(self._structure(module))
        findings.extend(self._duplicates(module, functions))
        findings.extend(self._relocations(module))
        findings.extend(self._imports(module, notes))
        findings.extend(self._vermagic(module, notes))
        if check is not None:
            findings.extend(self._coverage(module, functions, check))
            notes.extend(check.notes)
        for o in self.indexes.objects:
            if not o.index.complete:
                notes.append(
                    f"the index of {o.object} is not complete: facts of compile units not"
                    " indexed yet are missing"
                )
        return VerifyResult(
            module=module,
            patches=tuple(patches),
            functions=tuple(functions),
            findings=tuple(findings),
            notes=tuple(dict.fromkeys(notes)),
            kernel_vermagic=None if self.kernel is None else self.kernel.vermagic,
        )

    # --- one klp_func ----------------------------------------------------------------------

    def _function(
        self,
        module: LivepatchModule,
        f: KlpFunc,
        module_index: ObjectIndex | None,
        module_files: ObjectFiles | None,
    ) -> VerifiedFunction:
        findings: list[Finding] = []

        def add(
            kind: str, severity: Severity, message: str, related: Sequence[Related] = ()
        ) -> None:
            findings.append(
                Finding(
                    kind,
                    severity,
                    f.old_name,
                    f.object,
                    message,
                    source_file=module.path,
                    related=tuple(related),
                )
            )

        if f.new_func is None or f.new_func_address is None:
            add(
                "module-structure",
                "error",
                f"{f.where}: new_func does not point at a function of the module; the kernel"
                " refuses the patch (klp_init_func: -EINVAL)",
            )
        o = self.indexes.get_object(f.object)
        if o is None:
            add(
                "unresolved-symbol",
                "warning",
                f"{f.object} is not among the indexed binaries: {f.old_name} is not checked;"
                f" index {f.object}.ko with the kernel to check it (the kernel patches it when"
                " that module loads)",
            )
            return _verified(f, None, findings, unchecked=True)
        resolution = resolve_sympos(f.object, f.old_name, f.old_sympos, o.symbols_named(f.old_name))
        if resolution.symbol is None:
            add(
                "unresolved-symbol",
                "error",
                self._unresolved_message(o, f, resolution.status, resolution.kernel_message),
                self._candidates(o, f.old_name),
            )
            return _verified(f, None, findings)
        target = resolution.symbol
        if not target.patchable:
            add("unpatchable-target", "error", self._unpatchable_message(o, f, target))
        if module_index is not None and f.new_func_address is not None:
            self._abi(o, f, target, module_index, module_files, add)
            self._registers(o, f, target, module_index, add)
        return _verified(f, target, findings)

    def _unresolved_message(
        self, o: ObjectIndex, f: KlpFunc, status: str, kernel_message: str | None
    ) -> str:
        said = f"the kernel refuses the patch: '{kernel_message}'"
        if status == "not-found":
            reports = o.reports(f.old_name)
            clones = [c.name for r in reports for c in r.clones if not is_cold_part(c.name)]
            inlined = [i.function for r in reports for i in r.inlined_into]
            if clones and not any(r.symbols for r in reports):
                return (
                    f"{f.old_name} has no symbol in {o.object}, only GCC clones:"
                    f" {_names(clones)}; replace those under their own names; {said}"
                )
            if inlined:
                return (
                    f"{f.old_name} is fully inlined in {o.object} (no out-of-line copy);"
                    f" replace the functions it is inlined into: {_names(inlined)}; {said}"
                )
            return f"{f.old_name} is not a function of {o.object}; {said}"
        choices = self._sympos_choices(o, f.old_name)
        if status == "ambiguous":
            return (
                f"{f.old_name} names several functions in {o.object} and old_sympos is 0;"
                f" {said}. Use {choices}"
            )
        return (
            f"{f.old_name} has no function at position {f.old_sympos} in {o.object}; {said}."
            f" Use {choices}"
        )

    def _sympos_choices(self, o: ObjectIndex, name: str) -> str:
        parts = []
        for s in o.symbols_named(name):
            cu = o.cu_of_address(s.address)
            where = f" ({cu.unit.name})" if cu is not None else ""
            parts.append(f"old_sympos = {s.sympos or 1} for the one at {s.address:#x}{where}")
        return "; ".join(parts) if parts else "a name that exists"

    def _candidates(self, o: ObjectIndex, name: str) -> list[Related]:
        return [
            Related("symbol", s.name, o.object, address=s.address, message=f"sympos {s.sympos}")
            for s in o.symbols_named(name)
        ]

    def _unpatchable_message(self, o: ObjectIndex, f: KlpFunc, target: SymbolFact) -> str:
        reasons = "; ".join(target.not_patchable_reasons)
        # kernel/livepatch/patch.c klp_patch_func: ftrace_location() finds no record.
        consequence = (
            f"klp_enable_patch fails: 'failed to find location for function '{f.old_name}''"
        )
        if target.section.startswith(".init"):
            consequence = (
                "its code and ftrace record were freed after boot, so klp_enable_patch fails:"
                f" 'failed to find location for function '{f.old_name}''"
            )
        hint = ""
        if is_cold_part(target.name):
            parent = target.name.rsplit(".cold", 1)[0]
            hint = f"; replace {parent}, which the .cold part belongs to"
        return (
            f"{target.name} ({target.section} at {target.address:#x}) cannot be redirected by"
            f" ftrace: {reasons}; {consequence}{hint}"
        )

    def _abi(
        self,
        o: ObjectIndex,
        f: KlpFunc,
        target: SymbolFact,
        module_index: ObjectIndex,
        module_files: ObjectFiles | None,
        add: Any,
    ) -> None:
        assert f.new_func_address is not None
        original = o.instance_at(target.address)
        replacement = _instance_of(module_index, f.new_func_address)
        if original is None or replacement is None:
            return
        arch = module_index.index.arch
        received = None
        if is_abi_clone(target.clone_kinds):
            received = self._received(o, target)
        differences: list[AbiDifference] = compare_parameters(
            arch,  # type: ignore[arg-type]
            target.name,
            original.params,
            target.clone_kinds,
            replacement.params,
            received,
        )
        kernel_dwarf = self._object_files(o).dwarf()
        module_dwarf = None if module_files is None else module_files.dwarf()
        if kernel_dwarf is not None and module_dwarf is not None:
            returned = compare_returns(
                arch,  # type: ignore[arg-type]
                target.name,
                kernel_dwarf.return_type(original.function_die),
                module_dwarf.return_type(replacement.die),
                is_abi_clone(target.clone_kinds),
            )
            if returned is not None:
                differences.append(returned)
        if not differences:
            return
        severity: Severity = (
            "error" if any(d.severity == "error" for d in differences) else "warning"
        )
        params = [d.parameter for d in differences]
        layout = ", ".join(f"{p.name or '?'}={p.location}" for p in original.params) or "none"
        add(
            "abi-mismatch",
            severity,
            f"{f.new_func} does not take its arguments the way {target.name} does"
            f" ({_names(params)}): "
            + "; ".join(d.message for d in differences)
            + f". {target.name} receives: {layout}"
            + (
                "; argument registers it reads at entry: "
                + ", ".join(sort_registers(arch, received))
                if received is not None
                else ""
            ),
        )

    def _received(self, o: ObjectIndex, target: SymbolFact) -> frozenset[str] | None:
        return received_registers(o, self._object_files(o), target)

    def _registers(
        self,
        o: ObjectIndex,
        f: KlpFunc,
        target: SymbolFact,
        module_index: ObjectIndex,
        add: Any,
    ) -> None:
        assert f.new_func_address is not None
        _clobbers, _saved, dependents = o.register_facts_at(target.address)
        deps = list(dependents)
        if o.object == "vmlinux":
            for m in self.indexes.objects:
                if m.object != "vmlinux":
                    deps.extend(m.dependents_on_external(target.name, [target.address]))
        if not deps:
            return
        clobbers, saved, _ = module_index.register_facts_at(f.new_func_address)
        if clobbers is None:
            add(
                "register-clobber",
                "warning",
                f"callers of {target.name} rely on registers surviving it, but the clobber set"
                f" of {f.new_func} is not known",
            )
            return
        written = set(clobbers) | set(saved)
        conflicts: list[tuple[DependentFact, tuple[str, ...]]] = []
        for d in deps:
            hit = sort_registers(module_index.index.arch, written & set(d.registers))
            if hit:
                conflicts.append((d, hit))
        if not conflicts:
            return
        regs = sort_registers(module_index.index.arch, {r for _d, hit in conflicts for r in hit})
        add(
            "register-clobber",
            "error",
            f"{f.new_func} writes {', '.join(regs)} (its own code or what it calls), which"
            f" {len({d.caller for d, _ in conflicts})} caller(s) of {target.name} keep across"
            f" their call: {_names(d.caller for d, _ in conflicts)}; their values are"
            " corrupted once the patch is enabled",
            [
                Related(
                    "caller",
                    d.caller,
                    d.object,
                    address=d.site,
                    message=f"keeps {', '.join(hit)} across the call ({d.reason})",
                )
                for d, hit in conflicts
            ],
        )

    # --- module-wide checks ----------------------------------------------------------------

    def _finding(
        self, module: LivepatchModule, kind: str, severity: Severity, message: str, **kw: Any
    ) -> Finding:
        return Finding(kind, severity, kw.get("function"), kw.get("object"), message,
                       source_file=module.path, related=tuple(kw.get("related", ())))  # fmt: skip

    def _structure(self, module: LivepatchModule) -> list[Finding]:
        return [self._finding(module, "module-structure", "error", p) for p in module.problems]

    def _duplicates(
        self, module: LivepatchModule, functions: Sequence[VerifiedFunction]
    ) -> list[Finding]:
        seen: dict[tuple[str, int], VerifiedFunction] = {}
        out = []
        for v in functions:
            if v.target is None:
                continue
            key = (v.func.object, v.target.address)
            first = seen.get(key)
            if first is None:
                seen[key] = v
                continue
            out.append(
                self._finding(
                    module,
                    "unresolved-symbol",
                    "error",
                    f"{v.func.where} and {first.func.where} both replace {v.target.name} of"
                    f" {v.func.object}; the kernel refuses the second (its sysfs entry"
                    f" '{v.func.old_name},{v.func.old_sympos}' or the ftrace handler exists)",
                    function=v.func.old_name,
                    object=v.func.object,
                )
            )
        return out

    def _relocations(self, module: LivepatchModule) -> list[Finding]:
        out: list[Finding] = []
        for r in module.relocations:
            where = f"{r.section}+{r.offset:#x} ({r.symbol})"
            if r.problem is not None:
                out.append(
                    self._finding(module, "klp-relocation", "error", f"{where}: {r.problem}")
                )
                continue
            assert r.sym_object is not None and r.sym_name is not None and r.sympos is not None
            o = self.indexes.get_object(r.sym_object)
            if o is None:
                out.append(
                    self._finding(
                        module,
                        "klp-relocation",
                        "warning",
                        f"{where}: {r.sym_object} is not among the indexed binaries; not checked",
                    )
                )
                continue
            files = self._object_files(o)
            kallsyms = files.kallsyms()
            if kallsyms is None:
                out.append(
                    self._finding(
                        module,
                        "klp-relocation",
                        "warning",
                        f"{where}: cannot read the symbols of {files.path}: {files.failed}",
                    )
                )
                continue
            addresses = kallsyms.get(r.sym_name, [])
            status, _address, message = resolve_kallsyms(
                r.sym_object, r.sym_name, r.sympos, addresses
            )
            if status != "ok":
                choices = ", ".join(
                    f"{r.sym_name},{i} at {a:#x}" for i, a in enumerate(addresses, start=1)
                )
                out.append(
                    self._finding(
                        module,
                        "klp-relocation",
                        "error",
                        f"{where}: the kernel refuses to load the module: '{message}'"
                        + (f"; the symbols of that name are {choices}" if choices else ""),
                    )
                )
        return out

    def _imports(self, module: LivepatchModule, notes: list[str]) -> list[Finding]:
        if self.kernel is None or not self.kernel.exports:
            if module.imports:
                notes.append(
                    "the indexed vmlinux has no export table (__ksymtab): undefined symbols of"
                    " the module are not checked"
                )
            return []
        exports = dict(self.kernel.exports)
        depends = [d for d in (module.get_modinfo("depends") or "").split(",") if d]
        for name in depends:
            exports.update(self.module_exports.get(name, {}))
        gpl = (module.get_modinfo("license") or "") in _GPL_LICENSES
        own = {"__this_module"}
        out = []
        missing = [s for s in module.imports if s not in exports and s not in own]
        gpl_only = [s for s in module.imports if exports.get(s) and not gpl]
        for name in missing:
            out.append(
                self._finding(
                    module,
                    "klp-relocation",
                    "error",
                    f"undefined symbol {name} is exported by neither vmlinux nor the modules in"
                    f" depends=: the kernel refuses to load the module ('Unknown symbol {name}');"
                    f" reach it through a klp relocation (.klp.sym.<object>.{name},<sympos>)",
                )
            )
        for name in gpl_only:
            out.append(
                self._finding(
                    module,
                    "klp-relocation",
                    "error",
                    f"{name} is exported GPL-only and the module's license is"
                    f" '{module.get_modinfo('license') or 'none'}': the kernel refuses it",
                )
            )
        return out

    def _vermagic(self, module: LivepatchModule, notes: list[str]) -> list[Finding]:
        out: list[Finding] = []

        def bad(message: str, severity: Severity = "error") -> None:
            out.append(self._finding(module, "vermagic", severity, message))

        if module.get_modinfo("livepatch") is None:
            bad(
                'the module has no livepatch=Y in .modinfo (MODULE_INFO(livepatch, "Y")):'
                f" klp_enable_patch refuses it ('module {module.name} is not marked as a"
                " livepatch module')"
            )
        kernel = self.kernel
        magic = module.get_modinfo("vermagic")
        if kernel is None or kernel.vermagic is None:
            notes.append("the indexed kernel's vermagic is not known: vermagic not checked")
        elif magic is None:
            bad(
                "the module has no vermagic in .modinfo; the kernel loads it only when forced"
                " (modprobe --force), and taints"
            )
        else:
            has_crcs = bool(module.versions)
            if not same_magic(magic, kernel.vermagic, has_crcs):
                bad(
                    f"version magic '{magic}' should be '{kernel.vermagic}' (the kernel's, from"
                    f" {self.kernel_source or 'vmlinux'}): the kernel refuses to load it"
                )
            elif magic != kernel.vermagic:
                notes.append(
                    f"the module's vermagic release differs ('{magic.split(' ', 1)[0]}'), which"
                    " the kernel ignores for modules with symbol CRCs"
                )
        livepatch_unknown = kernel is None or not (kernel.crcs or kernel.exports)
        if kernel is not None and not kernel.livepatch and not livepatch_unknown:
            bad(
                "the indexed kernel has no livepatch support (no klp_enable_patch:"
                " CONFIG_LIVEPATCH is off): it refuses livepatch modules"
            )
        if kernel is not None and kernel.crcs:
            versions = dict(module.versions)
            if not versions:
                bad(
                    "the kernel checks symbol versions (CONFIG_MODVERSIONS) and the module has"
                    " no __versions: it loads only with CONFIG_MODULE_FORCE_LOAD, tainted"
                    " ('no symbol version for module_layout')",
                    "warning",
                )
            for name in ("module_layout", *module.imports):
                crc = versions.get(name)
                expected = kernel.crcs.get(name)
                if crc is None or expected is None or crc == expected:
                    continue
                bad(
                    f"{module.name} disagrees about version of symbol {name}: CRC {crc:#010x},"
                    f" the kernel's is {expected:#010x}; built against other headers, the"
                    " module is refused"
                )
        return out

    def _coverage(
        self,
        module: LivepatchModule,
        functions: Sequence[VerifiedFunction],
        check: CheckResult,
    ) -> list[Finding]:
        replaced: dict[tuple[str, int], VerifiedFunction] = {}
        for v in functions:
            if v.target is not None:
                replaced[(v.func.object, v.target.address)] = v
        expected: set[tuple[str, int]] = set()
        out: list[Finding] = []
        for entry in check.replace:
            o = self.indexes.get_object(entry.object)
            if o is None:
                continue
            found = resolve_sympos(entry.object, entry.symbol, entry.sympos,
                                   o.symbols_named(entry.symbol))  # fmt: skip
            if found.symbol is None:
                continue
            key = (entry.object, found.symbol.address)
            expected.add(key)
            if key in replaced:
                continue
            if not entry.patchable:
                continue  # check lists it for the record; no klp_func can name it
            callers = {(entry.object, c.caller_address) for c in o.callers_of([key[1]])}
            if has_private_abi(entry.symbol) and callers and callers <= replaced.keys():
                # No C function has the clone's calling convention; with every caller replaced
                # no patched code reaches it, and a task inside it has a replaced caller on its
                # stack, so the transition waits for it (how `generate` handles clones).
                out.append(
                    self._finding(
                        module,
                        "coverage",
                        "information",
                        f"{entry.symbol} of {entry.object} is not replaced, but every caller of"
                        " it is: patched code never reaches it",
                        function=entry.symbol,
                        object=entry.object,
                    )
                )
                continue
            out.append(
                self._finding(
                    module,
                    "coverage",
                    "error",
                    f"the patch needs {entry.symbol} (sympos {entry.sympos}) of {entry.object}"
                    f" replaced ({entry.reason}), and the module does not replace it: that code"
                    " keeps running unpatched",
                    function=entry.symbol,
                    object=entry.object,
                )
            )
        for key, v in replaced.items():
            if key not in expected:
                out.append(
                    self._finding(
                        module,
                        "coverage",
                        "information",
                        f"{v.func.old_name} of {v.func.object} is replaced by the module but not"
                        " in the patch's replace set (a helper the author chose to replace)",
                        function=v.func.old_name,
                        object=v.func.object,
                    )
                )
        return out


def received_registers(
    o: ObjectIndex, files: ObjectFiles, target: SymbolFact
) -> frozenset[str] | None:
    """The argument registers the original reads at its entry, from its machine code."""
    binary = files.binary()
    if binary is None or target.size <= 0:
        return None
    from klp_lsp.analysis.cfg import build_cfg
    from klp_lsp.binary.disasm import Decoder, Insn, find_thunks

    ranges = o.instance_ranges(target.address) or ((target.address, target.address + target.size),)
    decoder = Decoder(
        binary.arch, find_thunks((s.name, s.address, s.section) for s in binary.iter_symbols())
    )
    insns: list[Insn] = []
    for lo, hi in ranges:
        try:
            insns.extend(decoder.decode(binary.read_code(lo, hi - lo), lo))
        except KlpError:
            return None
    insns.sort(key=lambda i: i.address)
    cfg = build_cfg(tuple(insns), tuple(ranges))
    # The ftrace entry (`call __fentry__`, x86 -mfentry) is a NOP once ftrace starts.
    drop = [i.address for i in insns[:1] if i.flow == "call" and target.has_mcount]
    return entry_arguments(binary.arch, cfg, drop)


_GPL_LICENSES = frozenset(
    {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}
)


def _instance_of(index: ObjectIndex, address: int) -> Any:
    """The module's DWARF instance at a function symbol (arm64 DWARF starts after the NOPs)."""
    found = index.instance_at(address)
    if found is None and index.index.arch == "aarch64":
        found = index.instance_at(address + 8)
    return found


def _verified(
    f: KlpFunc, target: SymbolFact | None, findings: list[Finding], *, unchecked: bool = False
) -> VerifiedFunction:
    status: Status = "ok"
    if any(x.severity == "error" for x in findings):
        status = "error"
    elif unchecked:
        status = "unchecked"
    elif any(x.severity == "warning" for x in findings):
        status = "warning"
    return VerifiedFunction(f, status, target, tuple(findings))


# --- from a session ------------------------------------------------------------------------


@dataclass(slots=True)
class _KernelFacts:
    abi: KernelModuleAbi | None = None
    source: str = ""
    module_exports: dict[str, dict[str, bool]] = field(default_factory=dict)


def _kernel_facts(session: Session, indexes: IndexSet) -> _KernelFacts:
    """The vermagic, CRCs and exports of the selected kernel, read from its files."""
    out = _KernelFacts()
    files = session.binary_files()
    for r in session.results:
        if r.object == "vmlinux":
            out.abi = read_kernel_module_abi(r.binary)
            out.source = str(r.binary)
    for r in session.results:
        if r.object != "vmlinux":
            try:
                out.module_exports[r.object] = module_exports(r.binary)
            except KlpError:
                continue
    if out.abi is not None and out.abi.vermagic is None:
        # A kernel without module support keeps no vermagic string; its modules carry it.
        from klp_lsp.binary.elf import ElfBinary

        for path in files:
            if ".ko" not in path.name:
                continue
            try:
                with ElfBinary.open(path) as binary:
                    magic = binary.get_modinfo().get("vermagic")
            except KlpError:
                continue
            if magic:
                out.abi = KernelModuleAbi(
                    magic, magic.split(" ", 1)[0], out.abi.crcs, out.abi.exports,
                    out.abi.livepatch,
                )  # fmt: skip
                out.source = f"{path} (vmlinux has none)"
                break
    _ = indexes
    return out


def verify_module(
    module_path: Path,
    session: Session,
    *,
    patches: Sequence[tuple[str, str]] = (),
    source_root: Path | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Verify one livepatch `.ko` against the kernel `session` selects.

    `patches` are (display name, text) pairs, as `Checker.check_patches` takes them: with
    them the module's functions are compared with the patches' replace set.
    """
    module = read_livepatch_module(module_path)
    session.ensure_indexes(progress=progress)
    module_index_result = None
    if module.has_dwarf:
        module_index_result = session.index_extra(module_path, progress=progress)
    with session.open() as indexes:
        facts = _kernel_facts(session, indexes)
        check = None
        if patches:
            from klp_lsp.patch.check import Checker

            check = Checker(indexes).check_patches(patches, source_root)
        verifier = Verifier(
            indexes,
            kernel=facts.abi,
            kernel_source=facts.source,
            module_exports=facts.module_exports,
        )
        module_index = None
        if module_index_result is not None:
            from klp_lsp.index.store import open_readonly

            module_index = ObjectIndex(open_readonly(module_index_result.index_path))
        try:
            return verifier.verify(module, module_index, check, [name for name, _ in patches])
        finally:
            verifier.close()
            if module_index is not None:
                module_index.index.close()
