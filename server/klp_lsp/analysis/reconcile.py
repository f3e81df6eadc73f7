"""Reconcile the source mapping's prediction with what the compiler did (`check --compile`).

Pure: it takes the `CheckResult` the source mapping gave, the object comparisons, and what the
source says about each function the compiler changed (the identifiers of its body, the macros
they expand), and returns the result with:
- `changed_functions[].evidence`: `source` (the source mapping only), `compiler` (the compiled
  code only) or `both`;
- a `compiler-only-change` finding for each function whose code changed although the patch
  does not touch it and the predicted replace set lacks it, naming the cause it can see: a
  renamed clone it calls, a changed function it inlines, a changed macro or constant it uses;
- one `kpatch-preview` finding: what a binary-diff build (kpatch-build, klp-build) would put
  in the patch, next to the prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from klp_lsp.analysis.clones import cold_parent
from klp_lsp.model import (
    ChangedFunction,
    CheckResult,
    Comparison,
    CompileReport,
    Finding,
    FunctionDiff,
    ObjectDiff,
    PreviewEntry,
    Problem,
    Related,
    Severity,
)

CauseKind = Literal["clone", "inline", "macro", "constant", "type", "unknown"]
# Causes that matter only to a binary-diff build: a source-level live patch built against the
# original kernel keeps calling the original symbols, which it replaces.
_BINARY_DIFF_ONLY: frozenset[CauseKind] = frozenset(("clone", "inline"))
_MACRO_DEPTH = 8
_PREVIEW = 8


@dataclass(frozen=True, slots=True)
class PatchNames:
    """What the patch changes in C terms, by name, as the source mapping found it."""

    functions: frozenset[str]
    macros: frozenset[str]
    data: Mapping[str, str]  # name -> kind: "variable", "struct", "enum", ...


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a function's compiled code changed, as far as the source shows."""

    kind: CauseKind
    text: str


def _expand(
    tokens: frozenset[str], macros: Mapping[str, frozenset[str]]
) -> dict[str, tuple[str, ...]]:
    """Every identifier reachable from `tokens` through macro bodies, with the macros passed."""
    reached: dict[str, tuple[str, ...]] = {t: () for t in tokens}
    frontier = [t for t in tokens if t in macros]
    for _ in range(_MACRO_DEPTH):
        nxt = []
        for m in frontier:
            for t in macros.get(m, ()):
                if t not in reached:
                    reached[t] = (*reached[m], m)
                    if t in macros:
                        nxt.append(t)
        if not nxt:
            break
        frontier = nxt
    return reached


def _uses(
    tokens: frozenset[str], names: PatchNames, macros: Mapping[str, frozenset[str]]
) -> Cause | None:
    """A changed macro, constant or type that a body names, directly or through macros."""
    reached = _expand(tokens, macros)
    for name in sorted(names.macros & reached.keys()):
        via = reached[name]
        through = f" (through {', '.join(via)})" if via else ""
        return Cause("macro", f"it expands the changed macro {name}{through}")
    for name in sorted(names.data.keys() & reached.keys()):
        kind = names.data[name]
        via = reached[name]
        through = f" (through {', '.join(via)})" if via else ""
        if kind in ("struct", "union", "typedef"):
            return Cause("type", f"it uses the changed {kind} {name}{through}")
        return Cause("constant", f"it uses the changed {kind} {name}{through}")
    return None


def explain(
    diff: FunctionDiff,
    names: PatchNames,
    bodies: Mapping[str, frozenset[str]],
    macros: Mapping[str, frozenset[str]],
    newly_inlined: Iterable[str] = (),
    no_longer_inlined: Iterable[str] = (),
) -> Cause:
    """The visible cause of a compiler-only change of `diff`'s function.

    `bodies`: C function name -> identifiers of its body (the function and the functions
    inlined into it); `macros`: macro name -> identifiers of its replacement list;
    `newly_inlined` / `no_longer_inlined`: functions GCC inlines into it only after / only
    before the patch.
    """
    if diff.renamed_calls:
        calls = ", ".join(f"{new} instead of {old}" for old, new in diff.renamed_calls)
        return Cause("clone", f"it calls {calls}: GCC cloned the callee differently")
    inlined = set(diff.inlined)
    changed_inlined = sorted(inlined & names.functions)
    if changed_inlined:
        fresh = set(newly_inlined)
        verb = "now inlines" if set(changed_inlined) <= fresh else "inlines"
        return Cause("inline", f"it {verb} {', '.join(changed_inlined)}, which the patch changes")
    own = _uses(bodies.get(diff.origin, frozenset()), names, macros)
    if own is not None:
        return own
    for callee in sorted(inlined):
        found = _uses(bodies.get(callee, frozenset()), names, macros)
        if found is not None:
            return Cause(found.kind, f"it inlines {callee}, and {found.text.removeprefix('it ')}")
    flips = []
    if set(newly_inlined):
        flips.append(f"now inlines {', '.join(sorted(set(newly_inlined)))}")
    if set(no_longer_inlined):
        flips.append(f"no longer inlines {', '.join(sorted(set(no_longer_inlined)))}")
    if flips:
        return Cause("inline", f"GCC {' and '.join(flips)} into it")
    return Cause(
        "unknown",
        "no cause visible in the source: a changed callee's inlining, cloning or"
        " register use changed its code",
    )


def _changed_kinds() -> frozenset[str]:
    return frozenset(("changed", "calls-renamed"))


def _preview(
    diffs: Sequence[tuple[str, ObjectDiff]], predicted: set[tuple[str, str]]
) -> list[PreviewEntry]:
    out = []
    for obj, od in diffs:
        for d in od.functions:
            if d.kind == "line-only" or cold_parent(d.name) is not None:
                continue
            if d.kind == "removed":
                reason = f"gone from the patched build ({d.detail})"
            elif d.kind == "added":
                reason = f"new in the patched build ({d.detail})"
            else:
                reason = d.detail
            if d.old_name:
                reason = f"renamed from {d.old_name}; {reason}"
            was = (obj, d.name) in predicted or (obj, d.old_name) in predicted
            out.append(PreviewEntry(obj, d.name, d.kind, d.origin, reason, was, d.old_name))
    return out


def _list(names: Iterable[str]) -> str:
    seen = list(dict.fromkeys(names))
    text = ", ".join(seen[:_PREVIEW])
    return text + (f" and {len(seen) - _PREVIEW} more" if len(seen) > _PREVIEW else "")


def reconcile(
    result: CheckResult,
    diffs: Sequence[tuple[str, ObjectDiff]],
    causes: Mapping[tuple[str, str], Cause],
    report: CompileReport,
) -> CheckResult:
    """The prediction joined with the compiled objects' comparison.

    `diffs`: (livepatch object, comparison) of each compiled object; `causes`: the cause of
    each function the compiler changed, by (livepatch object, symbol); `report`: everything
    else about the compile, completed here with the kpatch preview.
    """
    predicted = {(e.object, e.symbol) for e in result.replace}
    source_names = {(c.object, c.name) for c in result.changed_functions}
    # C functions whose compiled code changed, and the functions holding inlined copies of them.
    compiled: set[tuple[str, str]] = set()
    for obj, od in diffs:
        for d in od.functions:
            if d.kind in _changed_kinds() or d.kind in ("added", "removed"):
                compiled.add((obj, d.origin))
                compiled.update((obj, f) for f in d.inlined if d.kind != "removed")
    changed = [
        replace(c, evidence="both" if (c.object, c.name) in compiled else "source")
        for c in result.changed_functions
    ]
    findings = list(result.findings)
    seen: set[tuple[str, str]] = set()
    for obj, od in diffs:
        for d in od.functions:
            if d.kind not in _changed_kinds() or (obj, d.origin) in source_names:
                continue
            # A `.cold` part is replaced with the function it was split from.
            names = {n for n in (d.name, d.old_name) if n is not None}
            names |= {p for n in list(names) if (p := cold_parent(n)) is not None}
            was_predicted = any((obj, n) in predicted for n in names)
            if (obj, d.origin) not in seen:
                seen.add((obj, d.origin))
                # Predicted through the replace set (it inlines a changed function, say):
                # both sides say it changes.
                changed.append(
                    ChangedFunction(
                        d.origin,
                        d.decl_file or "",
                        obj,
                        source_line=d.decl_line,
                        evidence="both" if was_predicted else "compiler",
                    )
                )
            if was_predicted or cold_parent(d.name) is not None:
                continue  # A changed .cold part speaks through its parent's own difference.
            cause = causes.get((obj, d.name), Cause("unknown", "no cause visible in the source"))
            severity: Severity = "information" if cause.kind in _BINARY_DIFF_ONLY else "warning"
            consequence = (
                "a source-level live patch built against the original kernel need not replace"
                " it; a binary-diff build (kpatch-build, klp-build) will"
                if cause.kind in _BINARY_DIFF_ONLY
                else "a live patch that does not replace it keeps the old code there"
            )
            findings.append(
                Finding(
                    "compiler-only-change",
                    severity,
                    d.origin,
                    obj,
                    f"the compiled code of {d.name} changes ({d.detail}) although the patch"
                    f" does not touch {d.origin}: {cause.text}; {consequence}",
                    source_file=d.decl_file,
                    source_line=d.decl_line,
                    related=(
                        Related("symbol", d.name, obj, d.decl_file, d.decl_line, message=d.detail),
                    ),
                )
            )
    preview = _preview(diffs, predicted)
    if diffs:
        findings.append(_preview_finding(result, preview, diffs))
    compile_report = replace(
        report,
        kpatch_preview=tuple(preview),
        comparison=tuple(side_by_side(result, preview, diffs)),
    )
    # A patch that does not compile is a problem with the input, shown with the others.
    problems = (
        *result.problems,
        *(
            Problem(obj, None, f"the patched source does not compile ({obj}): {message}")
            for obj, message in report.failures
        ),
    )
    return replace(
        result,
        changed_functions=tuple(changed),
        findings=tuple(findings),
        problems=problems,
        compile=compile_report,
    )


def side_by_side(
    result: CheckResult, preview: Sequence[PreviewEntry], diffs: Sequence[tuple[str, ObjectDiff]]
) -> list[Comparison]:
    """The predicted replace set and the compiler's changes, one row per function."""
    rows: dict[tuple[str, str], list[str | None]] = {}
    for e in result.replace:
        rows.setdefault((e.object, e.symbol), [e.reason, None])
    for p in preview:
        old = (p.object, p.old_symbol) if p.old_symbol else None
        if old is not None and old in rows:
            rows[old][1] = f"{p.kind}, renamed to {p.symbol}"
        else:
            rows.setdefault((p.object, p.symbol), [None, None])[1] = p.kind
    compiled = {(obj, name) for obj, od in diffs for name in od.symbols}
    out = []
    for (obj, symbol), (predicted, seen) in rows.items():
        if seen is None:
            seen = "same code" if (obj, symbol) in compiled else "not compiled"
        out.append(Comparison(obj, symbol, predicted, seen))
    return out


def _preview_finding(
    result: CheckResult, preview: Sequence[PreviewEntry], diffs: Sequence[tuple[str, ObjectDiff]]
) -> Finding:
    replaced = [p for p in preview if p.kind in _changed_kinds()]
    new = [p for p in preview if p.kind == "added"]
    gone = [p for p in preview if p.kind == "removed"]
    in_preview = {(p.object, p.symbol) for p in preview}
    in_preview |= {
        (obj, d.old_name) for obj, od in diffs for d in od.functions if d.old_name is not None
    }
    compiled = {(obj, name) for obj, od in diffs for name in od.symbols}
    identical = [
        e.symbol
        for e in result.replace
        if (e.object, e.symbol) not in in_preview and (e.object, e.symbol) in compiled
    ]
    extra = [p.symbol for p in replaced if not p.predicted]
    line_only = [d.name for _, od in diffs for d in od.functions if d.kind == "line-only"]
    parts = [
        f"a binary-diff build (kpatch-build, klp-build) would replace {len(replaced)}"
        f" function(s)" + (f": {_list(p.symbol for p in replaced)}" if replaced else "")
    ]
    if new:
        parts.append(f"add {len(new)} new: {_list(p.symbol for p in new)}")
    if gone:
        parts.append(f"find {len(gone)} gone: {_list(p.symbol for p in gone)}")
    parts.append(f"the predicted replace set has {len(result.replace)}")
    if extra:
        parts.append(f"not predicted: {_list(extra)}")
    if identical:
        parts.append(f"predicted but compiled to the same code: {_list(identical)}")
    if line_only:
        parts.append(f"left out, __LINE__ only: {_list(line_only)}")
    return Finding(
        "kpatch-preview",
        "information",
        None,
        None,
        "; ".join(parts),
        related=tuple(
            Related("symbol", p.symbol, p.object, message=f"{p.kind}: {p.reason}") for p in preview
        ),
    )
