"""SARIF 2.1.0 output of `check`, for CI systems and code-scanning dashboards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from klp_lsp import __version__
from klp_lsp.model import FINDING_KINDS, CheckResult, Finding
from klp_lsp.patch.render import finding_doc_url

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVELS = {"error": "error", "warning": "warning", "information": "note", "hint": "note"}

_RULE_TEXT = {
    "register-dependents": "Callers rely on registers the function does not write",
    "not-patchable": "The function cannot be patched through ftrace",
    "inlined": "The function is inlined into other functions",
    "has-clones": "GCC made clones of the function",
    "signature-changed": "Callers use a signature other than the C prototype",
    "ambiguous-sympos": "Several local functions share the name; sympos is needed",
    "header-change": "A header change reaches every CU that uses it",
    "data-change": "The patch changes data, which a live patch does not replace",
    "init-code": "The patch changes __init code that already ran",
    "static-local": "The patch adds or removes static local variables",
    "unknown-function": "The changed function is not in the indexed binaries",
    "export-symbol": "The patch adds or removes an EXPORT_SYMBOL",
    "per-cpu": "The patch defines or uses a per-CPU variable of its file",
    "static-key": "The patch defines or uses a static key of its file",
    "tracepoint": "The patch defines or uses a tracepoint of its file",
    "compiler-only-change": "The compiled code changes where the source mapping saw no change",
    "kpatch-preview": "What a binary-diff build would replace, next to the prediction",
}


def _location(uri: str, line: int | None) -> dict[str, Any]:
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
    if line:
        loc["physicalLocation"]["region"] = {"startLine": line}
    return loc


def _result(f: Finding, kinds: Sequence[str]) -> dict[str, Any]:
    locations = []
    if f.patch_file:
        locations.append(_location(Path(f.patch_file).as_posix(), f.patch_line))
    if f.source_file:
        locations.append(_location(f.source_file, f.source_line))
    out: dict[str, Any] = {
        "ruleId": f.kind,
        "ruleIndex": kinds.index(f.kind),
        "level": _LEVELS[f.severity],
        "message": {"text": f.message},
        "locations": locations[:1],
    }
    if len(locations) > 1:
        out["relatedLocations"] = [{"id": 1, **locations[1], "message": {"text": "source"}}]
    if f.function:
        out["properties"] = {"function": f.function, "object": f.object}
    return out


def result_to_sarif(result: CheckResult) -> dict[str, Any]:
    """The SARIF 2.1.0 log of one check run."""
    return findings_to_sarif(result.findings, FINDING_KINDS, _RULE_TEXT)


def findings_to_sarif(
    findings: Sequence[Finding], kinds: Sequence[str], rule_text: Mapping[str, str]
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of `findings`, with one rule per kind (linking to docs/findings/)."""
    rules = [
        {
            "id": kind,
            "name": "".join(w.capitalize() for w in kind.split("-")),
            "shortDescription": {"text": rule_text[kind]},
            "helpUri": finding_doc_url(kind),
        }
        for kind in kinds
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "klp-lsp",
                        "version": __version__,
                        "informationUri": finding_doc_url("README"),
                        "rules": rules,
                    }
                },
                "results": [_result(f, kinds) for f in findings],
            }
        ],
    }
