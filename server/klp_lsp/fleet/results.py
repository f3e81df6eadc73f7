"""A fleet's outcome per kernel, and where the kernels disagree (pure, no IO).

The matrix has kernels as rows and, as columns, the status, one column per changed function
(its verdict and finding kinds), the replace-set size and the numbers of errors and warnings.
A cell differs when its value is not the column's majority value. `differences` also lists the
replace-set entries and findings that only some kernels have.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from klp_lsp.fleet.spec import KernelSpec
from klp_lsp.model import CheckResult, Finding, Problem

Status = Literal["ok", "needs-care", "does-not-apply", "failed"]

# Short names of the finding kinds, for matrix cells.
KIND_CODES: dict[str, str] = {
    "register-dependents": "regs",
    "not-patchable": "not-patchable",
    "inlined": "inlined",
    "has-clones": "clones",
    "signature-changed": "signature",
    "ambiguous-sympos": "sympos",
    "header-change": "header",
    "data-change": "data",
    "init-code": "init",
    "static-local": "static-local",
    "unknown-function": "unknown",
}

# A hunk found at another line still applies (patch(1) says "succeeded at offset").
_OFFSET_ONLY = re.compile(r"^hunk applies to .* at offset [+-]?\d+$")


@dataclass(frozen=True, slots=True)
class BinaryOutcome:
    """One binary of a kernel and its index."""

    path: str
    object: str
    build_id: str
    index: str | None
    reused: bool
    seconds: float
    host: str


@dataclass(frozen=True, slots=True)
class KernelOutcome:
    """One row of the fleet: a kernel's check result or the error that stopped it."""

    spec: KernelSpec
    status: Status
    error: str | None
    result: CheckResult | None
    binaries: tuple[BinaryOutcome, ...] = ()
    warnings: tuple[str, ...] = ()
    check_seconds: float = 0.0
    host: str = ""


@dataclass(frozen=True, slots=True)
class FleetReport:
    """Every kernel's outcome and how the fleet ran."""

    origin: str
    patches: tuple[str, ...]
    kernels: tuple[KernelOutcome, ...]
    cluster: str  # "LocalCluster, 2 workers" or the scheduler address
    shared_index_dir: bool
    index_dir: str
    wall_seconds: float


def kernel_status(result: CheckResult) -> tuple[Status, str | None]:
    """The row status of a check result, and the first hunk that does not apply."""
    failing = [p for p in result.problems if not _OFFSET_ONLY.match(p.message)]
    if failing:
        p = failing[0]
        where = f"{p.file}:{p.line}: " if p.line else f"{p.file}: "
        return "does-not-apply", where + p.message
    if result.has_errors:
        return "needs-care", None
    return "ok", None


def failed(spec: KernelSpec, error: str, warnings: Sequence[str] = ()) -> KernelOutcome:
    """A row for a kernel that could not be checked."""
    return KernelOutcome(spec, "failed", error, None, warnings=tuple(warnings))


# --- the matrix ---------------------------------------------------------------------------------

FunctionKey = tuple[str, str]  # (C name, source file)


@dataclass(frozen=True, slots=True)
class Matrix:
    """Cells by column for every kernel, with each column's majority value."""

    kernels: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[str, dict[str, str]]  # column -> kernel -> value
    majority: dict[str, str]

    def differs(self, column: str, kernel: str) -> bool:
        value = self.cells[column].get(kernel)
        return value is not None and value != self.majority.get(column)


def function_key_label(key: FunctionKey) -> str:
    return f"{key[0]} ({key[1]})"


def changed_function_keys(kernels: Sequence[KernelOutcome]) -> list[FunctionKey]:
    """Every changed C function of any kernel, in first-seen order."""
    keys: dict[FunctionKey, None] = {}
    for k in kernels:
        if k.result is not None:
            for c in k.result.changed_functions:
                keys.setdefault((c.name, c.source_file))
    return list(keys)


def function_cell(result: CheckResult, key: FunctionKey) -> str:
    """`CARE not-patchable,inlined`, `ok clones`, `not found`, or `absent` (not changed here)."""
    changed = [c for c in result.changed_functions if (c.name, c.source_file) == key]
    if not changed:
        return "absent"
    if all(c.object is None for c in changed):
        return "not found"
    objects = {c.object for c in changed}
    findings = [f for f in result.findings if f.function == key[0] and f.object in objects]
    verdict = "CARE" if any(f.severity == "error" for f in findings) else "ok"
    kinds = sorted({KIND_CODES.get(f.kind, f.kind) for f in findings})
    return f"{verdict} {','.join(kinds)}" if kinds else verdict


def counts(result: CheckResult) -> tuple[int, int, int]:
    """Replace-set size, errors and warnings of a result."""
    errors = sum(f.severity == "error" for f in result.findings)
    warnings = sum(f.severity == "warning" for f in result.findings)
    return len(result.replace), errors, warnings


def majority_value(values: Sequence[str]) -> str:
    """The most common value; a tie goes to the value met first."""
    tally = Counter(values)
    best = max(tally.values())
    return next(v for v in values if tally[v] == best)


def build_matrix(kernels: Sequence[KernelOutcome]) -> Matrix:
    """The fleet's matrix; failed kernels have only a status cell."""
    names = tuple(k.spec.name for k in kernels)
    keys = changed_function_keys(kernels)
    columns = ["status", *(function_key_label(key) for key in keys), "replace", "errors"]
    columns.append("warnings")
    cells: dict[str, dict[str, str]] = {c: {} for c in columns}
    for k in kernels:
        cells["status"][k.spec.name] = k.status
        if k.result is None:
            continue
        for key in keys:
            cells[function_key_label(key)][k.spec.name] = function_cell(k.result, key)
        n_replace, n_errors, n_warnings = counts(k.result)
        cells["replace"][k.spec.name] = str(n_replace)
        cells["errors"][k.spec.name] = str(n_errors)
        cells["warnings"][k.spec.name] = str(n_warnings)
    majority = {
        c: majority_value([by[n] for n in names if n in by]) for c, by in cells.items() if by
    }
    return Matrix(names, tuple(columns), cells, majority)


# --- differences --------------------------------------------------------------------------------


def differences(kernels: Sequence[KernelOutcome]) -> list[dict[str, object]]:
    """Where the kernels disagree: matrix cells off the majority, replace entries, findings."""
    matrix = build_matrix(kernels)
    out: list[dict[str, object]] = []
    for column in matrix.columns:
        off = {n: v for n, v in matrix.cells[column].items() if matrix.differs(column, n)}
        if off:
            out.append(
                {
                    "what": "cell",
                    "column": column,
                    "majority": matrix.majority[column],
                    "kernels": off,
                }
            )
    checked = [k for k in kernels if k.result is not None]
    names = [k.spec.name for k in checked]
    replace_on: dict[tuple[str, str, int, bool], list[str]] = {}
    finding_on: dict[tuple[str, str | None, str | None], list[str]] = {}
    for k in checked:
        assert k.result is not None
        for e in k.result.replace:
            replace_on.setdefault((e.object, e.symbol, e.sympos, e.patchable), []).append(
                k.spec.name
            )
        for key in dict.fromkeys((f.kind, f.function, f.object) for f in k.result.findings):
            finding_on.setdefault(key, []).append(k.spec.name)
    for (obj, symbol, sympos, patchable), on in replace_on.items():
        if len(on) < len(names):
            out.append(
                {
                    "what": "replace",
                    "object": obj,
                    "symbol": symbol,
                    "sympos": sympos,
                    "patchable": patchable,
                    "on": on,
                    "not_on": [n for n in names if n not in on],
                }
            )
    for (kind, function, found_in), on in finding_on.items():
        if len(on) < len(names):
            out.append(
                {
                    "what": "finding",
                    "kind": kind,
                    "function": function,
                    "object": found_in,
                    "on": on,
                    "not_on": [n for n in names if n not in on],
                }
            )
    return out


def describe_difference(d: dict[str, object]) -> str:
    """One line of text for a `differences` entry."""
    if d["what"] == "cell":
        kernels = d["kernels"]
        assert isinstance(kernels, dict)
        off = "; ".join(f"{n}: {v}" for n, v in kernels.items())
        return f"{d['column']}: {d['majority']} on most kernels, but {off}"
    on, not_on = d["on"], d["not_on"]
    assert isinstance(on, list) and isinstance(not_on, list)
    where = f"on {len(on)} of {len(on) + len(not_on)} kernels ({', '.join(on)})"
    if d["what"] == "replace":
        mark = "" if d["patchable"] else " (not patchable)"
        return f"replace {d['object']}: {d['symbol']} sympos {d['sympos']}{mark}: only {where}"
    return f"finding [{d['kind']}] on {d['function'] or '-'} [{d['object'] or '-'}]: only {where}"


# --- findings across kernels (the editor's view) ------------------------------------------------


def merge_findings(per_kernel: Sequence[tuple[str, CheckResult]]) -> list[Finding]:
    """Each distinct finding once, saying which kernels it applies to.

    Findings are the same when kind, function, object and patch place agree; the message is
    the first kernel's, prefixed with `not-patchable on 3 of 12 kernels: rt-amd64 6.1.0-55, …`
    unless every kernel has it.
    """
    total = len(per_kernel)
    first: dict[tuple[object, ...], Finding] = {}
    on: dict[tuple[object, ...], list[str]] = {}
    for name, result in per_kernel:
        for f in result.findings:
            key = (f.kind, f.function, f.object, f.patch_file, f.patch_line, f.source_line)
            first.setdefault(key, f)
            if name not in on.setdefault(key, []):
                on[key].append(name)
    return [
        replace(f, message=_on_kernels(f.kind, on[place], total, f.message))
        for place, f in first.items()
    ]


def merge_problems(per_kernel: Sequence[tuple[str, CheckResult]]) -> list[Problem]:
    """Each distinct problem (a hunk that does not apply...) once, saying on which kernels."""
    total = len(per_kernel)
    on: dict[Problem, list[str]] = {}
    for name, result in per_kernel:
        for p in result.problems:
            if name not in on.setdefault(p, []):
                on[p].append(name)
    return [replace(p, message=_on_kernels("", names, total, p.message)) for p, names in on.items()]


def _on_kernels(kind: str, names: Sequence[str], total: int, message: str) -> str:
    """`not-patchable on 3 of 12 kernels: a, b, c. <message>`, or `on all 12 kernels: ...`."""
    if len(names) == total:
        return f"on all {total} kernels: {message}" if total > 1 else message
    shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
    head = f"{kind} on" if kind else "on"
    return f"{head} {len(names)} of {total} kernels: {shown}. {message}"
