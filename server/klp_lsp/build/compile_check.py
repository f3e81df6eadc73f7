"""`check --compile`: compile the objects a patch touches before and after it, and reconcile.

Two steps, so that the language server can query the index on its check thread and compile
elsewhere: `plan_compile` maps the touched files to kbuild objects with the index (a `.c` file
to the CU of that name or to the CUs whose line table lists it, e.g. `kernel/sched/rt.c` to
`kernel/sched/build_policy.o`; a header to every CU whose line table lists it, those holding
code of a function it changes first), and `CompileChecker.run` compiles, compares
(`analysis/objdiff.py`), finds causes in the source and reconciles (`analysis/reconcile.py`).
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from klp_lsp.analysis.objdiff import LineMap, compare_objects, line_map
from klp_lsp.analysis.reconcile import Cause, PatchNames, explain, reconcile
from klp_lsp.binary.objcode import read_object_code
from klp_lsp.build.backend import CompileFailure, backend_for
from klp_lsp.build.cache import ObjectResult, ResultCache, result_key
from klp_lsp.build.overlay import Overlay
from klp_lsp.build.tree import BuildTree, object_of_cu
from klp_lsp.index.query import IndexSet
from klp_lsp.index.store import source_name
from klp_lsp.model import CheckResult, CompileReport, ObjectCode, ObjectDiff
from klp_lsp.patch.changes import Change, DataChange, FunctionChange, MacroChange
from klp_lsp.patch.source_map import SourceMap, code_tokens, parse_source

# Objects compiled at most per check (a header can be in thousands of CUs); `--compile-limit`.
DEFAULT_LIMIT = 16
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True, slots=True)
class Target:
    """One kbuild object to compile before and after the patch."""

    object: str  # `kernel/sched/build_policy.o`
    cu: str  # `kernel/sched/build_policy.c`
    livepatch: str  # the indexed object it is linked into: `vmlinux` or a module name
    files: tuple[str, ...]  # the touched files it compiles
    first: bool  # holds code of a function the patch changes (compiled before the others)


@dataclass(slots=True)
class CompilePlan:
    """What `check --compile` will compile, and what it needs to explain the result."""

    targets: list[Target]
    skipped: list[tuple[str, str]]  # (object, why it is not compiled)
    images: dict[str, tuple[str | None, str | None]]
    names: PatchNames
    notes: list[str] = field(default_factory=list)


def patch_names(changes: Sequence[Change], result: CheckResult) -> PatchNames:
    """The functions, macros and data the source mapping found changed."""
    functions = {c.name for c in result.changed_functions if c.evidence != "compiler"}
    macros: set[str] = set()
    data: dict[str, str] = {}
    for c in changes:
        if isinstance(c, FunctionChange):
            functions.add(c.name)
            functions.update(c.binary_names)
        elif isinstance(c, MacroChange):
            macros.add(c.name)
            functions.update(u.function for u in c.users)
        elif isinstance(c, DataChange):
            data[c.name] = c.kind
    return PatchNames(frozenset(functions), frozenset(macros), data)


def plan_compile(
    indexes: IndexSet,
    tree: BuildTree,
    images: Mapping[str, tuple[str | None, str | None]],
    changes: Sequence[Change],
    result: CheckResult,
    limit: int = DEFAULT_LIMIT,
) -> CompilePlan:
    """Which objects to compile for a patch whose touched files are `images`."""
    names = patch_names(changes, result)
    notes: list[str] = []
    wanted: dict[str, Target] = {}
    code_files = [p for p in images if p.endswith((".c", ".h"))]
    # Functions the patch changes, by file: CUs holding their code are compiled first.
    changed_in: dict[str, set[str]] = {}
    for c in changes:
        if isinstance(c, FunctionChange):
            changed_in.setdefault(c.source_file, set()).add(c.name)
    macro_users: dict[str, set[str]] = {}
    for c in changes:
        if isinstance(c, MacroChange) and c.is_header:
            for u in c.users:
                macro_users.setdefault(c.source_file, set()).add(u.source_file)
                # The macro's users hold code the patch changes: their CUs come first.
                changed_in.setdefault(u.source_file, set()).add(u.function)
    for o in indexes.objects:
        by_name = {source_name(c.unit.name, c.unit.comp_dir): c for c in o.cus().values()}
        if not o.index.complete:
            notes.append(
                f"the index of {o.object} is not complete: compile units not indexed yet are"
                " not compiled"
            )
        for path in code_files:
            cus = [by_name[path]] if path in by_name else o.cus_with_file(path)
            # A header's macro users in .c files not listing the header in their line table.
            for user in sorted(macro_users.get(path, ())):
                cus += [by_name[user]] if user in by_name else o.cus_with_file(user)
            first_ids: set[int] = set()
            for file in (path, *sorted(macro_users.get(path, ()))):
                for fn in changed_in.get(file, ()):
                    first_ids |= o.cus_with_code_of(fn, file)
            for cu in cus:
                cu_name = source_name(cu.unit.name, cu.unit.comp_dir)
                obj = object_of_cu(cu_name)
                if obj is None or cu.unit.is_asm:
                    continue
                key = f"{o.object}:{obj}"
                old = wanted.get(key)
                files = (*old.files, path) if old else (path,)
                first = (old.first if old else False) or cu.unit.offset in first_ids
                first = first or path == cu_name
                wanted[key] = Target(obj, cu_name, o.object, tuple(dict.fromkeys(files)), first)
    unmapped = [p for p in code_files if not any(p in t.files for t in wanted.values())]
    for p in unmapped:
        notes.append(f"{p} is compiled into no indexed object; nothing to compile for it")
    ordered = sorted(wanted.values(), key=lambda t: (not t.first, t.object))
    skipped = [
        (t.object, f"over --compile-limit {limit} ({len(ordered)} objects include the patch)")
        for t in ordered[limit:]
    ]
    if skipped:
        notes.append(
            f"{len(ordered)} objects compile the touched files; compiled the first {limit}"
            " (those holding code of changed functions first); raise --compile-limit for all"
        )
    source = tree.source
    for path, (before, _after) in images.items():
        on_disk = _read(source / path)
        if before is not None and on_disk is not None and on_disk != before:
            notes.append(
                f"{path} differs between the build tree's source {source} and the checked"
                " source: the compiler sees those differences too"
            )
    return CompilePlan(ordered[:limit], skipped, dict(images), names, notes)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


@contextmanager
def _locked(tree: BuildTree) -> Iterator[None]:
    """One compile at a time per tree (a CLI check and the language server may share it)."""
    tree.work_dir.mkdir(parents=True, exist_ok=True)
    with (tree.work_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Sources:
    """Function bodies and macro definitions of the source files the causes need, parsed once."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = roots
        self._maps: dict[str, tuple[list[str], SourceMap] | None] = {}

    def _parsed(self, path: str) -> tuple[list[str], SourceMap] | None:
        if path not in self._maps:
            text = next((t for r in self.roots if (t := _read(r / path)) is not None), None)
            self._maps[path] = None if text is None else (text.split("\n"), parse_source(text))
        return self._maps[path]

    def body(self, name: str, path: str | None, line: int | None) -> frozenset[str]:
        """The identifiers of a function's definition (empty when it cannot be found)."""
        got = None if path is None else self._parsed(path)
        if got is None:
            return frozenset()
        lines, smap = got
        found = [f for f in smap.functions if f.name == name or name in f.binary_names]
        if not found:
            return frozenset()
        f = min(found, key=lambda f: abs(f.name_line - (line or f.name_line)))
        # The whole definition: its parameters' types count (`struct nameidata *nd`).
        text = "\n".join(lines[f.start_line - 1 : f.end_line])
        return frozenset(t for t in code_tokens(text) if _IDENT.fullmatch(t))

    def macros(self, paths: Sequence[str]) -> dict[str, frozenset[str]]:
        """Macro name -> identifiers of its replacement list, over `paths`."""
        out: dict[str, frozenset[str]] = {}
        for path in paths:
            got = self._parsed(path)
            if got is None:
                continue
            lines, smap = got
            for m in smap.macros:
                text = "\n".join(lines[m.start_line - 1 : m.end_line])
                _, _, rest = text.partition(m.name)
                if m.params is not None:
                    rest = rest.split(")", 1)[-1]
                tokens = {t for t in code_tokens(rest) if _IDENT.fullmatch(t)}
                out[m.name] = frozenset(tokens - set(m.params or ()) - {"define"})
        return out


def _causes(
    diff: ObjectDiff,
    after: ObjectCode,
    names: PatchNames,
    sources: _Sources,
    touched: Sequence[str],
) -> dict[str, Cause]:
    decls = {name: (f, line) for name, f, line in after.definitions}
    newly: dict[str, list[str]] = {}
    lost: dict[str, list[str]] = {}
    for flip in diff.inlining:
        (newly if flip.inlined_after else lost).setdefault(flip.caller, []).append(flip.callee)
    out: dict[str, Cause] = {}
    for d in diff.functions:
        if d.kind not in ("changed", "calls-renamed") or d.origin in names.functions:
            continue
        bodies = {d.origin: sources.body(d.origin, d.decl_file, d.decl_line)}
        files = [*touched, *([d.decl_file] if d.decl_file else [])]
        for callee in d.inlined:
            f, line = decls.get(callee, (None, None))
            bodies[callee] = sources.body(callee, f, line)
            if f:
                files.append(f)
        macros = sources.macros(list(dict.fromkeys(files)))
        out[d.name] = explain(
            d, names, bodies, macros, newly.get(d.origin, ()), lost.get(d.origin, ())
        )
    return out


class CompileChecker:
    """Compiles and compares the objects of a `CompilePlan` in one prepared tree."""

    def __init__(self, tree: BuildTree, *, jobs: int = 1, cache: ResultCache | None = None) -> None:
        self.tree = tree
        self.jobs = max(1, jobs)
        self.cache = cache if cache is not None else ResultCache(tree.work_dir / "results")
        self.backend = backend_for(tree)
        salt = f"{tree.build_id}\0{tree.compiler}\0{tree.path}"
        self._salt = hashlib.sha256(salt.encode()).hexdigest()

    def run(
        self,
        plan: CompilePlan,
        result: CheckResult,
        cancelled: Callable[[], bool] | None = None,
    ) -> CheckResult:
        """The check result reconciled with the compiled objects (a `BuildError` if the
        original source does not build)."""
        started = time.monotonic()
        results: dict[str, ObjectResult] = {}
        cached: list[str] = []
        keys = {t.object: result_key(t.object, plan.images, self._salt) for t in plan.targets}
        for t in plan.targets:
            hit = self.cache.get(keys[t.object])
            if hit is not None:
                results[t.object] = hit
                cached.append(t.object)
        todo = [t for t in plan.targets if t.object not in results]
        if todo and not (cancelled and cancelled()):
            fresh = self._compile(todo, plan, cancelled)
            for obj, outcome in fresh.items():
                self.cache.put(keys[obj], outcome)
            results.update(fresh)
        diffs: list[tuple[str, ObjectDiff]] = []
        causes: dict[tuple[str, str], Cause] = {}
        failures: list[tuple[str, str]] = []
        for t in plan.targets:
            found = results.get(t.object)
            if found is None:
                continue
            if found.diff is None:
                failures.append((t.object, found.failure or "the patched source does not build"))
                continue
            diffs.append((t.livepatch, found.diff))
            causes.update(((t.livepatch, sym), c) for sym, c in found.causes.items())
        report = CompileReport(
            build_tree=str(self.tree.path),
            objects=tuple(d for _, d in diffs),
            kpatch_preview=(),
            failures=tuple(failures),
            not_compiled=tuple(plan.skipped),
            cached=tuple(cached),
            seconds=round(time.monotonic() - started, 2),
        )
        notes = [*result.notes, *plan.notes]
        repro = self.tree.reproducibility
        if repro is not None and not repro.ok:
            notes.append(
                f"the build tree did not reproduce {repro.object} ({repro.matching} of"
                f" {repro.functions} functions matched): some differences may not come from"
                " the patch"
            )
        merged = reconcile(result, diffs, causes, report)
        return replace(merged, notes=tuple(dict.fromkeys(notes)))

    def _compile(
        self,
        todo: Sequence[Target],
        plan: CompilePlan,
        cancelled: Callable[[], bool] | None,
    ) -> dict[str, ObjectResult]:
        tree = self.tree
        objects = [t.object for t in todo]
        out: dict[str, ObjectResult] = {}
        roots = [str(tree.source)]
        maps: list[LineMap] = [
            line_map(before, after)
            for before, after in plan.images.values()
            if before is not None and after is not None
        ]
        touched = [p for p in plan.images if p.endswith((".c", ".h"))]
        with _locked(tree):
            tree.work_dir.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="check-", dir=tree.work_dir))
            try:
                files = {p: after for p, (_, after) in plan.images.items()}
                overlay = Overlay(tree.source, scratch / "src", files)
                originals, patched = self.backend.build_both(
                    objects, overlay.root, scratch / "out", self.jobs
                )
                if cancelled is not None and cancelled():
                    return out
                before = {o: read_object_code(p, o, roots) for o, p in originals.items()}
                sources = _Sources([overlay.root, tree.source])
                for obj in objects:
                    got = patched[obj]
                    if isinstance(got, CompileFailure):
                        out[obj] = ObjectResult(None, {}, got.message)
                        continue
                    after = read_object_code(got, obj, [*roots, str(overlay.root)])
                    diff = compare_objects(before[obj], after, maps)
                    out[obj] = ObjectResult(
                        diff, _causes(diff, after, plan.names, sources, touched)
                    )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return out
