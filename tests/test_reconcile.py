"""Reconciling the prediction with the compiler (analysis/reconcile.py) over plain records."""

from __future__ import annotations

import pytest

from klp_lsp.analysis.reconcile import Cause, PatchNames, explain, reconcile
from klp_lsp.model import (
    ChangedFunction,
    CheckResult,
    CompileReport,
    FunctionDiff,
    ObjectDiff,
    ReplaceEntry,
)

NAMES = PatchNames(
    functions=frozenset({"balance", "mix"}),
    macros=frozenset({"SHIFT"}),
    data={"quota": "variable", "rt_rq": "struct"},
)
MACROS = {"SCALE": frozenset({"x", "SHIFT"}), "WRAP": frozenset({"SCALE"})}


def diff(name: str, kind: str = "changed", **kw: object) -> FunctionDiff:
    return FunctionDiff(  # type: ignore[arg-type]
        object="kernel/x.o", name=name, origin=name.split(".")[0], kind=kind, **kw
    )


@pytest.mark.parametrize(
    ("d", "body", "flips", "expected"),
    [
        (
            diff("tick", renamed_calls=(("charge", "charge.isra.0"),)),
            set(),
            ((), ()),
            Cause(
                "clone",
                "it calls charge.isra.0 instead of charge: GCC cloned the callee differently",
            ),
        ),
        (
            diff("schedule", inlined=("mix", "other")),
            set(),
            ((), ()),
            Cause("inline", "it inlines mix, which the patch changes"),
        ),
        (
            diff("schedule", inlined=("mix",)),
            set(),
            (("mix",), ()),
            Cause("inline", "it now inlines mix, which the patch changes"),
        ),
        (
            diff("scaled"),
            {"rq", "WRAP"},
            ((), ()),
            Cause("macro", "it expands the changed macro SHIFT (through WRAP, SCALE)"),
        ),
        (
            diff("budget"),
            {"rq", "quota", "period"},
            ((), ()),
            Cause("constant", "it uses the changed variable quota"),
        ),
        (
            diff("len"),
            {"rt_rq"},
            ((), ()),
            Cause("type", "it uses the changed struct rt_rq"),
        ),
        (
            diff("schedule"),
            set(),
            ((), ("pick",)),
            Cause("inline", "GCC no longer inlines pick into it"),
        ),
    ],
)
def test_explain(
    d: FunctionDiff,
    body: set[str],
    flips: tuple[tuple[str, ...], tuple[str, ...]],
    expected: Cause,
) -> None:
    bodies = {d.origin: frozenset(body)}
    assert explain(d, NAMES, bodies, MACROS, *flips) == expected


def test_explain_through_an_inlined_callee_and_unknown() -> None:
    d = diff("outer", inlined=("helper",))
    bodies = {"outer": frozenset({"helper"}), "helper": frozenset({"SCALE"})}
    assert explain(d, NAMES, bodies, MACROS) == Cause(
        "macro", "it inlines helper, and expands the changed macro SHIFT (through SCALE)"
    )
    assert explain(diff("plain"), NAMES, {}, MACROS).kind == "unknown"


def result(*changed: ChangedFunction, replace: tuple[ReplaceEntry, ...] = ()) -> CheckResult:
    return CheckResult(tuple(changed), (), replace, ())


def od(*functions: FunctionDiff, symbols: tuple[str, ...] = ()) -> ObjectDiff:
    return ObjectDiff("kernel/x.o", functions, (), (), 3, symbols)


REPORT = CompileReport("/tree", (), ())


def test_evidence_and_compiler_only_change() -> None:
    prediction = result(
        ChangedFunction("balance", "kernel/x.c", "vmlinux"),
        ChangedFunction("same", "kernel/x.c", "vmlinux"),
        replace=(
            ReplaceEntry("vmlinux", "balance", 0, "changed"),
            ReplaceEntry("vmlinux", "same", 0, "changed"),
            ReplaceEntry("vmlinux", "host", 0, "inlines balance"),
        ),
    )
    diffs = [
        (
            "vmlinux",
            od(
                diff("balance"),
                diff("host", inlined=("balance",)),
                diff("budget", decl_file="kernel/x.c", decl_line=40, detail="1 of 9 differ"),
                diff("wait", "line-only"),
                diff("pick", "added", detail="new out-of-line copy"),
                symbols=("balance", "same", "host", "budget", "wait"),
            ),
        )
    ]
    causes = {("vmlinux", "budget"): Cause("constant", "it uses the changed variable quota")}
    merged = reconcile(prediction, diffs, causes, REPORT)
    evidence = {c.name: c.evidence for c in merged.changed_functions}
    assert evidence == {
        "balance": "both",
        "same": "source",  # the compiler made the same code of it
        "host": "both",  # predicted through the replace set, and changed
        "budget": "compiler",
    }
    (only,) = [f for f in merged.findings if f.kind == "compiler-only-change"]
    assert (only.function, only.severity, only.source_line) == ("budget", "warning", 40)
    assert "it uses the changed variable quota" in only.message
    (preview,) = [f for f in merged.findings if f.kind == "kpatch-preview"]
    assert preview.message.startswith(
        "a binary-diff build (kpatch-build, klp-build) would replace 3 function(s):"
        " balance, host, budget; add 1 new: pick; the predicted replace set has 3;"
        " not predicted: budget; predicted but compiled to the same code: same;"
        " left out, __LINE__ only: wait"
    )
    assert merged.compile is not None
    assert [(p.symbol, p.kind, p.predicted) for p in merged.compile.kpatch_preview] == [
        ("balance", "changed", True),
        ("host", "changed", True),
        ("budget", "changed", False),
        ("pick", "added", False),
    ]


def test_clone_caused_change_is_information() -> None:
    merged = reconcile(
        result(ChangedFunction("charge", "kernel/x.c", "vmlinux")),
        [("vmlinux", od(diff("tick", renamed_calls=(("charge", "charge.isra.0"),))))],
        {("vmlinux", "tick"): Cause("clone", "it calls charge.isra.0 instead of charge")},
        REPORT,
    )
    (only,) = [f for f in merged.findings if f.kind == "compiler-only-change"]
    assert only.severity == "information"
    assert "need not replace it; a binary-diff build" in only.message


def test_no_compile_no_preview() -> None:
    merged = reconcile(result(ChangedFunction("f", "x.c", "vmlinux")), [], {}, REPORT)
    assert [f.kind for f in merged.findings] == []
    assert [c.evidence for c in merged.changed_functions] == ["source"]
