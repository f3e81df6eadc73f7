"""`klp-lsp generate`: from patches to a livepatch module directory, built and converted on request.

1. `check` gives the replace set; `plan.py` turns it into compile units and `klp_func` entries.
2. Each compile unit's source after the patch is reduced to the replacement functions and what
   they need (`unit.py`), written as one `.c` file per patched object and source file, beside
   `livepatch.c` (the `klp_patch`), a `Kbuild` and a `Makefile`.
3. With `--build`: kbuild against the kernel's headers, then the relocation rewrite
   (`relocate.py`, `binary/klp_convert.py`), then the caller's verify and try steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from klp_lsp.binary.klp_convert import ConvertResult, convert, iter_undefined_references
from klp_lsp.errors import UsageError
from klp_lsp.generate.kbuild import (
    BuildOutcome,
    find_headers,
    kbuild_text,
    kernel_release,
    makefile_text,
    run_kbuild,
)
from klp_lsp.generate.plan import FuncPlan, LeftInPlace, ModulePlan, plan_module
from klp_lsp.generate.producer_flags import baseline_producer, flag_difference
from klp_lsp.generate.relocate import UnitSymbols, resolve
from klp_lsp.generate.symbols import CuSymbols, KernelObject, read_module_symvers
from klp_lsp.generate.unit import GeneratedUnit, UnitProblem, Wanted, flatten, generate_unit
from klp_lsp.index.query import IndexSet
from klp_lsp.model import CheckResult
from klp_lsp.patch.changes import ChangeMapper, FunctionChange, post_images
from klp_lsp.patch.check import Checker
from klp_lsp.patch.diff import Patch, parse_patch_text
from klp_lsp.patch.render import KlpFuncSource, klp_patch_source

# Finding kinds of `check` that the module cannot fix by itself; they are repeated as problems
# (the per-CPU, static key and tracepoint warnings come from the generator itself).
_CARRIED_KINDS = frozenset(
    {"data-change", "init-code", "static-local", "signature-changed", "unknown-function"}
)
_CARRIED_ERRORS = frozenset({"export-symbol", "per-cpu", "static-key", "tracepoint"})


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """One `klp_func` of the generated module."""

    object: str
    old_name: str
    old_sympos: int
    new_func: str
    source: str  # "kernel/sched/rt.c:1234"
    reason: str


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """What `generate` is asked to do."""

    outdir: Path
    source_root: Path
    name: str | None = None
    headers: Path | None = None
    build: bool = False
    jobs: int = 2


StepHook = Callable[[Path], tuple[dict[str, Any], bool]]


@dataclass(slots=True)
class GenerateResult:
    """Everything `generate` did, for the text and JSON renderers and the exit status."""

    outdir: Path
    name: str
    module: Path | None = None
    functions: list[FunctionEntry] = field(default_factory=list)
    problems: list[UnitProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    left: list[LeftInPlace] = field(default_factory=list)
    copied: dict[str, tuple[str, ...]] = field(default_factory=dict)  # unit file -> helpers
    build: BuildOutcome | None = None
    headers: Path | None = None
    relocations: ConvertResult | None = None
    exported: tuple[str, ...] = ()
    verify: dict[str, Any] | None = None
    try_: dict[str, Any] | None = None
    steps_failed: list[str] = field(default_factory=list)
    check: CheckResult | None = None

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    @property
    def exit_code(self) -> int:
        """0: all asked for succeeded; 1: written, but a step failed or errors remain."""
        return 1 if (self.steps_failed or self.has_errors) else 0


def module_name(patch_names: Sequence[str], given: str | None) -> str:
    """`livepatch_<first patch's stem>`, or the given name, as a kbuild module name."""
    raw = given or "livepatch_" + PurePosixPath(patch_names[0] if patch_names else "patch").stem
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not name or name[0].isdigit():
        name = "lp_" + name
    return name[:55]  # MODULE_NAME_LEN is 56 with the NUL


def _unit_file(obj: str, cu: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{obj}__{cu.removesuffix('.c')}")


class Generator:
    """Generates (and optionally builds) one livepatch module from patches."""

    def __init__(self, indexes: IndexSet, options: GenerateOptions) -> None:
        self.indexes = indexes
        self.options = options
        self.objects = {o.object: KernelObject(o) for o in indexes.objects}

    def close(self) -> None:
        for o in self.objects.values():
            o.close()

    # --- source ---------------------------------------------------------------------------

    def generate(self, patches: Sequence[tuple[str, str]]) -> GenerateResult:
        opts = self.options
        name = module_name([n for n, _ in patches], opts.name)
        result = GenerateResult(opts.outdir, name)
        parsed: list[Patch] = []
        for pname, text in patches:
            ps, problems = parse_patch_text(text, pname)
            parsed.extend(ps)
            for p in problems:
                result.problems.append(
                    UnitProblem("warning", "patch", p.message, p.patch_file, p.line or None)
                )
        check = Checker(self.indexes).check_patches(patches, opts.source_root)
        result.check = check
        for f in check.findings:
            carried = f.kind in _CARRIED_KINDS and f.severity in ("error", "warning")
            if carried or (f.kind in _CARRIED_ERRORS and f.severity == "error"):
                result.problems.append(
                    UnitProblem(
                        f.severity, f.kind, f.message, f.source_file, f.source_line, f.function
                    )
                )
        post, problems = post_images(parsed, opts.source_root)
        for p in problems:
            result.problems.append(
                UnitProblem("error", "patch", p.message, p.patch_file, p.line or None)
            )
        changes, _ = ChangeMapper().changes_from_patch(parsed, opts.source_root)
        new_locals = {
            c.name: c.static_locals_added
            for c in changes
            if isinstance(c, FunctionChange) and c.static_locals_added
        }
        plan = plan_module(check.replace, self.objects)
        result.left = plan.left
        for entry, why in plan.unplaced:
            result.problems.append(
                UnitProblem(
                    "error",
                    "cannot-generate",
                    f"{entry.object}: {entry.symbol} (sympos {entry.sympos}) must be replaced"
                    f" ({entry.reason}) but cannot be: {why}",
                    function=entry.symbol,
                )
            )
        if not plan.units:
            result.problems.append(
                UnitProblem(
                    "error",
                    "cannot-generate",
                    "the patch changes no function that a livepatch module can replace",
                )
            )
        self._write(result, plan, post, new_locals)
        return result

    def _read(self, post: dict[str, str | None]) -> Callable[[str], str | None]:
        root = self.options.source_root

        def read(path: str) -> str | None:
            if path in post:
                return post[path]
            try:
                return (root / path).read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                return None

        return read

    def _write(
        self,
        result: GenerateResult,
        plan: ModulePlan,
        post: dict[str, str | None],
        new_locals: dict[str, tuple[str, ...]],
    ) -> None:
        out = self.options.outdir
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{out}: cannot create the output directory: {e.strerror or e}") from e
        read = self._read(post)
        root = self.options.source_root.resolve()
        unit_files: list[str] = []
        include_dirs: list[Path] = []
        per_object_flags: dict[str, tuple[list[str], list[str]]] = {}
        entries: list[tuple[FuncPlan, str, str]] = []  # (plan, new_func, source)
        self.units: list[tuple[str, GeneratedUnit, UnitSymbols]] = []
        used_names: set[str] = set()
        for unit in plan.units:
            obj = self.objects[unit.object]
            cu = obj.index.cu(unit.cu_id)
            assert cu is not None
            placed, problems = flatten(unit.cu, read)
            result.problems.extend(problems)
            if not placed:
                continue
            wanted: dict[str, Wanted] = {}
            for f in unit.funcs:
                if f.c_name in wanted:
                    continue
                new = f"livepatch_{f.c_name}"
                n = 1
                while new in used_names:
                    n += 1
                    new = f"livepatch_{f.c_name}_{n}"
                used_names.add(new)
                wanted[f.c_name] = Wanted(f.c_name, new)
            symbols = CuSymbols(obj, cu)
            fname = _unit_file(unit.object, unit.cu)
            modname = unit.object if unit.object != "vmlinux" else PurePosixPath(unit.cu).stem
            preamble = (
                "// SPDX-License-Identifier: GPL-2.0\n"
                f"/* klp-lsp generate: the replacement functions of {unit.cu} ({unit.object})."
                " Kernel\n * functions and variables it names are the running kernel's own,"
                " reached through\n * livepatch relocations written after the build. */\n"
                "#undef KBUILD_MODNAME\n"
                f'#define KBUILD_MODNAME "{modname}"\n'
            )
            if unit.object == "vmlinux":
                # Built into vmlinux, the code saw headers without MODULE; some hide kernel
                # internals from modules (arch/x86/include/asm/tlbflush.h: flush_tlb_mm_range()).
                preamble += "#undef MODULE\n"
            generated = generate_unit(
                placed,
                list(wanted.values()),
                symbols,
                preamble=preamble,
                new_static_locals=new_locals,
                label_prefix=f"klp_lsp__{fname}__",
            )
            result.problems.extend(generated.problems)
            done = {g.name: g for g in generated.functions}
            for f in unit.funcs:
                g = done.get(f.c_name)
                if g is None:
                    continue
                new_func = (f.syscall_prefix or "") + g.new_name
                entries.append((f, new_func, f"{g.file}:{g.line}"))
            self._write_file(out / f"{fname}.c", generated.text, result)
            unit_files.append(fname)
            if generated.copied:
                result.copied[f"{fname}.c"] = generated.copied
            for src in generated.files:
                d = root / PurePosixPath(src).parent
                if d not in include_dirs:
                    include_dirs.append(d)
            producers = [c.unit.producer for c in obj.index.cus().values()]
            add, remove = flag_difference(cu.unit.producer, baseline_producer(producers))
            if add or remove:
                per_object_flags[fname] = (add, remove)
            self.units.append(
                (unit.object, generated, UnitSymbols(unit.object, symbols, generated.externs))
            )
        # Patched headers go first on the include path.
        first: list[Path] = []
        for path, text in post.items():
            if text is None or not path.endswith(".h"):
                continue
            dest = out / "src" / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._write_file(dest, text, result)
            parts = PurePosixPath(path).parts
            if "include" in parts:
                base = out / "src" / PurePosixPath(*parts[: parts.index("include") + 1])
            else:
                base = dest.parent
            if base not in first:
                first.append(base.resolve())
        for f, new_func, source in entries:
            result.functions.append(
                FunctionEntry(f.object, f.old_name, f.old_sympos, new_func, source, f.reason)
            )
        self._write_file(out / "livepatch.c", self._main_text(result, entries), result)
        objects = ["livepatch", *unit_files]
        self._write_file(
            out / "Kbuild",
            kbuild_text(result.name, objects, include_dirs, first, per_object_flags),
            result,
        )
        headers = self._headers_or_none()
        result.headers = headers
        self._write_file(
            out / "Makefile",
            makefile_text(headers or Path("/lib/modules/$(shell uname -r)/build"), self._arch()),
            result,
        )

    def _arch(self) -> str:
        return self.indexes.objects[0].index.arch if self.indexes.objects else "x86_64"

    def _headers_or_none(self) -> Path | None:
        try:
            return self._headers()
        except UsageError:
            return None

    def _headers(self) -> Path:
        vmlinux = self.objects.get("vmlinux")
        release = None
        if self.options.headers is None and vmlinux is not None:
            release = kernel_release(vmlinux.path)
        return find_headers(self.options.headers, release)

    def _write_file(self, path: Path, text: str, result: GenerateResult) -> None:
        try:
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise UsageError(f"{path}: cannot write: {e.strerror or e}") from e
        result.files.append(path)

    def _main_text(self, result: GenerateResult, entries: list[tuple[FuncPlan, str, str]]) -> str:
        by_object: dict[str, list[tuple[FuncPlan, str, str]]] = {}
        for e in entries:
            by_object.setdefault(e[0].object, []).append(e)
        out = [
            "// SPDX-License-Identifier: GPL-2.0",
            "/*",
            f" * {result.name}: a livepatch module generated by klp-lsp generate.",
            " *",
            " * The replacement functions are in the other .c files, one per patched object and",
            " * source file; each klp_func below names the kernel symbol it replaces with the",
            " * livepatch sympos that kernel/livepatch/core.c resolves.",
            " */",
            '#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt',
            "",
            "#include <linux/kernel.h>",
            "#include <linux/module.h>",
            "#include <linux/livepatch.h>",
            "",
            "/* Defined in the compile units; only their addresses are taken here. */",
        ]
        for new in dict.fromkeys(new for _f, new, _s in entries):
            out.append(f"void {new}(void);")
        out.append("")
        objects = {
            obj: [
                KlpFuncSource(f.old_name, new, f.old_sympos, f"{source}: {f.reason}")
                for f, new, source in group
            ]
            for obj, group in by_object.items()
        }
        out.extend(klp_patch_source(objects, f"{result.name}: generated by klp-lsp"))
        return "\n".join(out)

    # --- build ----------------------------------------------------------------------------

    def build(self, result: GenerateResult) -> None:
        """kbuild, then the klp relocation rewrite; records problems and failed steps."""
        try:
            headers = self._headers()
        except UsageError as e:
            result.problems.append(UnitProblem("error", "build", str(e)))
            result.steps_failed.append("build")
            return
        result.headers = headers
        outcome = run_kbuild(result.outdir, headers, result.name, self._arch(), self.options.jobs)
        result.build = outcome
        if not outcome.ok or outcome.module is None:
            lines = outcome.first_errors() or outcome.log.strip().splitlines()[-8:]
            result.problems.append(
                UnitProblem("error", "build", "kbuild failed: " + " | ".join(lines))
            )
            result.steps_failed.append("build")
            return
        symvers = headers / "Module.symvers"
        exports = read_module_symvers(symvers) if symvers.is_file() else {}
        refs = iter_undefined_references(outcome.module)
        resolution = resolve(refs, [u for _o, _g, u in self.units], self.objects, exports)
        result.problems.extend(resolution.problems)
        result.exported = resolution.exported
        if any(p.severity == "error" for p in resolution.problems):
            result.steps_failed.append("relocations")
            return
        result.relocations = convert(outcome.module, outcome.module, resolution.targets)
        result.module = outcome.module
