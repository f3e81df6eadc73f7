"""Renders a `VerifyResult`: JSON for tools, text for people, Markdown for editors, SARIF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from klp_lsp.livepatch.verify import VERIFY_FINDING_KINDS, VerifiedFunction, VerifyResult
from klp_lsp.model import Finding
from klp_lsp.patch.render import finding_doc_url, finding_to_json
from klp_lsp.patch.sarif import findings_to_sarif

_RULE_TEXT = {
    "unresolved-symbol": "old_name/old_sympos do not resolve to one function as the kernel does it",
    "unpatchable-target": "ftrace cannot redirect the function the entry replaces",
    "abi-mismatch": "The replacement does not take arguments the way the compiled original does",
    "register-clobber": "The replacement writes registers callers of the original rely on",
    "coverage": "The module does not replace everything the patch's replace set needs",
    "klp-relocation": "A klp relocation or an import does not resolve when the module loads",
    "vermagic": "The module's vermagic, symbol versions or livepatch modinfo do not fit",
    "module-structure": "The klp_patch/klp_object/klp_func structures are malformed",
}


def _function_json(v: VerifiedFunction) -> dict[str, Any]:
    f = v.func
    return {
        "object": f.object,
        "old_name": f.old_name,
        "old_sympos": f.old_sympos,
        "new_func": f.new_func,
        "status": v.status,
        "target": None
        if v.target is None
        else {
            "symbol": v.target.name,
            "address": f"{v.target.address:#x}",
            "section": v.target.section,
            "sympos": v.target.sympos,
            "patchable": v.target.patchable,
        },
        "where": f.where,
        "findings": [finding_to_json(x) for x in v.findings],
    }


def result_to_json(result: VerifyResult) -> dict[str, Any]:
    """The `verify --format json` document."""
    m = result.module
    errors = sum(f.severity == "error" for f in result.all_findings)
    return {
        "module": m.path,
        "patch": list(result.patches) or None,
        "functions": [_function_json(v) for v in result.functions],
        "findings": [finding_to_json(x) for x in result.findings],
        "module_info": {
            "name": m.name,
            "arch": m.arch,
            "build_id": m.build_id,
            "format": m.format,
            "vermagic": m.get_modinfo("vermagic"),
            "livepatch": m.get_modinfo("livepatch") is not None,
            "replace": m.replace,
            "klp_relocations": len(m.relocations),
        },
        "kernel_vermagic": result.kernel_vermagic,
        "notes": list(result.notes),
        "summary": {
            "functions": len(result.functions),
            "findings": len(result.all_findings),
            "errors": errors,
            "ok": not result.has_errors,
        },
    }


def _line(f: Finding) -> str:
    return f"{f.severity}: [{f.kind}] {f.message}"


def result_to_text(result: VerifyResult) -> str:
    """One block per klp_func, verdict first; then module-wide findings and notes."""
    m = result.module
    lines = [f"{m.path}: livepatch module {m.name} ({m.arch}, {m.format or 'no records'})"]
    for v in result.functions:
        f = v.func
        target = ""
        if v.target is not None:
            target = f" -> {v.target.name} at {v.target.address:#x} ({v.target.section})"
        lines.append("")
        lines.append(
            f"{f.object}: {f.old_name} sympos {f.old_sympos} <- {f.new_func or '?'}{target}:"
            f" {v.status.upper()}"
        )
        for x in sorted(v.findings, key=lambda x: x.severity != "error"):
            lines.append(f"  {_line(x)}")
    if result.findings:
        lines.append("")
        lines.append("module:")
        for x in sorted(result.findings, key=lambda x: x.severity != "error"):
            lines.append(f"  {_line(x)}")
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    errors = sum(x.severity == "error" for x in result.all_findings)
    lines.append("")
    lines.append(
        f"{len(result.functions)} function(s), {len(result.all_findings)} finding(s),"
        f" {errors} error(s): {'the kernel would refuse or misrun it' if errors else 'clean'}"
    )
    return "\n".join(lines)


def result_to_markdown(result: VerifyResult) -> str:
    """The result as a Markdown table and finding list, for the editor command."""
    m = result.module
    rows = [
        f"# verify {m.name}",
        "",
        "| object | old_name | old_sympos | new_func | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for v in result.functions:
        f = v.func
        target = "—" if v.target is None else f"`{v.target.name}` {v.target.address:#x}"
        rows.append(
            f"| {f.object} | `{f.old_name}` | {f.old_sympos} | `{f.new_func or '?'}` |"
            f" {target} | {v.status} |"
        )
    findings = result.all_findings
    if findings:
        rows.append("")
        for x in findings:
            who = f"`{x.function}`: " if x.function else ""
            rows.append(
                f"- **{x.severity}** [{x.kind}]({finding_doc_url(x.kind)}) {who}{x.message}"
            )
    if result.notes:
        rows.append("")
        rows.extend(f"- note: {n}" for n in result.notes)
    if not findings:
        rows.append("")
        rows.append("No findings: the kernel resolves and can patch every entry.")
    return "\n".join(rows)


def result_to_sarif(result: VerifyResult) -> dict[str, Any]:
    """The SARIF 2.1.0 log of one verify run."""
    return findings_to_sarif(result.all_findings, VERIFY_FINDING_KINDS, _RULE_TEXT)


def verify_to_markdown(
    module: Path,
    binaries: Sequence[Path],
    kernel: str | None,
    index_dir: Path,
    patches: Sequence[tuple[str, str]] = (),
    source_root: Path | None = None,
) -> str:
    """`verify` of one module as Markdown, from plain arguments: what the language server runs
    in a spawned process (indexing the module never happens in the server's own process)."""
    from klp_lsp.livepatch.verify import verify_module
    from klp_lsp.session import Session

    session = Session(list(binaries), kernel, index_dir, jobs=1)
    return result_to_markdown(
        verify_module(module, session, patches=patches, source_root=source_root)
    )
