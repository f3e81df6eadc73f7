"""The one place where klp-lsp's domain records become LSP types (and Markdown for hovers).

Everything else in `lsp/` asks the engine for `model` records and hands them to these functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from urllib.parse import quote

from lsprotocol import types

from klp_lsp.model import (
    CallFact,
    Finding,
    FunctionReport,
    Problem,
    Related,
    Severity,
    SymbolFact,
)
from klp_lsp.patch.render import DOCS_DIR, finding_doc_url
from klp_lsp.report import compiler_line, hexaddr, host_text, signature_text, verdict_line

SOURCE = "klp-lsp"

_SEVERITY: dict[str, types.DiagnosticSeverity] = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}

# How many entries of a list a hover shows before "... N more".
_PREVIEW = 4


def to_lsp_severity(severity: Severity | str) -> types.DiagnosticSeverity:
    return _SEVERITY.get(severity, types.DiagnosticSeverity.Warning)


@cache
def finding_href(kind: str) -> str | None:
    """The docs page of a finding kind (`docs/findings/<kind>.md`), when it exists."""
    page = DOCS_DIR / f"{kind}.md"
    return finding_doc_url(kind) if page.is_file() else None


def command_uri(command: str, arguments: Sequence[object]) -> str:
    """A `command:` link for Markdown (VS Code runs it when the hover is trusted)."""
    return f"command:{command}?{quote(json.dumps(list(arguments)))}"


def line_range(line: int, start: int = 0, end: int | None = None) -> types.Range:
    """A range on one 0-based line; `end=None` is the start of the next line."""
    if end is None:
        return types.Range(types.Position(line, start), types.Position(line + 1, 0))
    return types.Range(types.Position(line, start), types.Position(line, end))


# --- diagnostics ---------------------------------------------------------------------------


def finding_to_diagnostic(
    finding: Finding,
    rng: types.Range,
    severity: Severity,
    related_location: Callable[[Related], types.Location],
) -> types.Diagnostic:
    """A finding as a diagnostic: kind as `code`, its docs page, callers/clones as related info."""
    href = finding_href(finding.kind)
    related = [
        types.DiagnosticRelatedInformation(location=related_location(r), message=related_message(r))
        for r in finding.related
    ]
    return types.Diagnostic(
        range=rng,
        message=finding.message,
        severity=to_lsp_severity(severity),
        code=finding.kind,
        code_description=None if href is None else types.CodeDescription(href=href),
        source=SOURCE,
        related_information=related or None,
        data={"kind": finding.kind, "function": finding.function, "object": finding.object},
    )


def related_message(r: Related) -> str:
    where = f" at {hexaddr(r.address)}" if r.address is not None else ""
    text = f"{r.role} {r.name} [{r.object}]{where}"
    return f"{text}: {r.message}" if r.message else text


def problem_to_diagnostic(problem: Problem, rng: types.Range) -> types.Diagnostic:
    """Something wrong with the input itself (not a patch, a hunk that does not apply)."""
    return types.Diagnostic(
        range=rng,
        message=problem.message,
        severity=types.DiagnosticSeverity.Error,
        code="input-problem",
        source=SOURCE,
    )


def note_to_diagnostic(message: str, rng: types.Range) -> types.Diagnostic:
    return types.Diagnostic(
        range=rng, message=message, severity=types.DiagnosticSeverity.Information, source=SOURCE
    )


# --- hover and reports ---------------------------------------------------------------------


def _code(text: str) -> str:
    return f"`{text}`"


def _sym(s: SymbolFact) -> str:
    pos = f"sympos {s.sympos}" if s.sympos else "unique name"
    trace = "" if s.has_mcount else ", no ftrace record"
    return f"{_code(s.name)} in {s.object} ({pos}{trace})"


def _more(items: Sequence[str], shown: int) -> str:
    head = ", ".join(items[:shown])
    return head if len(items) <= shown else f"{head}, … {len(items) - shown} more"


def _dependents_summary(r: FunctionReport) -> tuple[int, list[str]]:
    callers = {d.caller for d in r.register_dependents}
    registers = sorted({reg for d in r.register_dependents for reg in d.registers})
    return len(callers), registers


def report_to_markdown(r: FunctionReport, *, full: bool = False) -> str:
    """A patchability card: verdict first, then what a live patch must account for.

    With `full`, nothing is cut short (the "show function report" command).
    """
    limit = 10_000 if full else _PREVIEW
    where = f"{r.decl_file}:{r.decl_line}" if r.decl_file else "no DWARF (asm or stripped)"
    lines = [f"**{r.name}** · {r.object} · {where}", ""]
    if r.queried_symbol is not None:
        lines[0] += f" · for symbol {_code(r.queried_symbol.name)}"
    verdict = verdict_line(r)
    lines.append(f"**{'✔' if r.patchable else '✘'} {verdict}**")
    lines.append("")
    if r.symbols:
        lines.append(f"- symbols: {_more([_sym(s) for s in r.symbols], limit)}")
    elif r.dead_copies:
        lines.extend(
            f"- out-of-line copy at {_code(hexaddr(a))} never runs: {why}"
            for a, why in r.dead_copies
        )
    elif not r.out_of_line:
        lines.append("- no out-of-line copy: every call was inlined")
    if r.clones:
        clones = [f"{_code(c.name)} ({' '.join(c.clone_kinds)})" for c in r.clones]
        lines.append(f"- clones ({len(r.clones)}): {_more(clones, limit)}")
        for sig in r.clone_signatures[:limit]:
            if not sig.matches_prototype:
                text = signature_text(sig, r.arch, verdict=False)
                lines.append(f"  - {_code(sig.symbol)} takes {_code(text)}, not the C prototype")
    if r.aliases:
        lines.append(f"- aliases: {_more([_code(a) for a in r.aliases], limit)}")
    if r.inlined_into:
        names = list(dict.fromkeys(_code(i.function) for i in r.inlined_into if not i.dead))
        lines.append(f"- inlined into {len(r.inlined_into)} place(s): {_more(names, limit)}")
        dead = list(dict.fromkeys(host_text(i) for i in r.inlined_into if i.dead))
        if dead:
            lines.append(f"  - in code that never runs (nothing to replace): {_more(dead, limit)}")
    if r.register_dependents:
        count, registers = _dependents_summary(r)
        deps = [
            f"{_code(d.caller)} keeps {', '.join(d.registers)} ({d.reason})"
            for d in r.register_dependents
        ]
        lines.append(
            f"- {count} caller(s) rely on {', '.join(registers)} surviving the call:"
            f" {_more(deps, limit)}"
        )
    if r.clobbers is not None:
        lines.append(f"- clobbers: {_code(' '.join(r.clobbers)) if r.clobbers else '(none)'}")
    if r.callee_saved_clobbers:
        saved = " ".join(r.callee_saved_clobbers)
        lines.append(f"- writes callee-saved registers without restoring: {saved}")
    lines.append(f"- {compiler_line(r)}")
    if r.abi_deviation or r.calling_convention != "normal":
        params = ", ".join(f"{p.name or '?'} in {p.location}" for p in r.params)
        note = "parameters not where the ABI puts them" if r.abi_deviation else ""
        lines.append(f"- signature: {r.calling_convention} convention; {note} ({params})")
    if full:
        lines.append("")
        lines.append(f"binary: {r.binary} (build-id {r.build_id}, {r.arch})")
    else:
        link = command_uri("klp-lsp.showFunctionReport", [{"name": r.name}])
        lines.append("")
        lines.append(f"[Full report]({link})")
    return "\n".join(lines)


def reports_to_markdown(reports: Sequence[FunctionReport], *, full: bool = False) -> str:
    """Several definitions of one name (static functions in several files, modules)."""
    shown = reports if full else reports[:3]
    text = "\n\n---\n\n".join(report_to_markdown(r, full=full) for r in shown)
    if len(reports) > len(shown):
        text += f"\n\n… {len(reports) - len(shown)} more definition(s) of this name"
    return text


def markdown_hover(text: str, rng: types.Range | None) -> types.Hover:
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=rng
    )


def lens_title(r: FunctionReport) -> str:
    """`patchable · 2 clones · inlined into 14 · 3 callers rely on rcx`."""
    if r.patchable:
        parts = ["patchable"]
    elif not r.out_of_line and r.inlined_into:
        parts = ["not patchable: always inlined"]
    else:
        parts = ["NOT patchable"]
    # A .cold part is a piece of its function, not a clone with callers of its own.
    clones = [c for c in r.clones if "cold" not in c.clone_kinds]
    if clones:
        parts.append(f"{len(clones)} clone{'s' if len(clones) != 1 else ''}")
    if r.inlined_into:
        parts.append(f"inlined into {len(r.inlined_into)}")
    if r.register_dependents:
        count, registers = _dependents_summary(r)
        verb = "relies" if count == 1 else "rely"
        parts.append(f"{count} caller{'s' if count != 1 else ''} {verb} on {' '.join(registers)}")
    return " · ".join(parts)


def function_report_command(name: str, title: str, uri: str | None = None) -> types.Command:
    """The command that shows a function's full report; `uri` scopes it to that file's copy."""
    argument: dict[str, str] = {"name": name}
    if uri is not None:
        argument["uri"] = uri
    return types.Command(title=title, command="klp-lsp.showFunctionReport", arguments=[argument])


# --- call hierarchy and symbols ------------------------------------------------------------


def call_item(
    name: str,
    object_name: str,
    uri: str,
    line: int,
    detail: str,
) -> types.CallHierarchyItem:
    rng = line_range(line, 0, 0)
    return types.CallHierarchyItem(
        name=name,
        kind=types.SymbolKind.Function,
        uri=uri,
        range=rng,
        selection_range=rng,
        detail=detail,
        data={"name": name, "object": object_name},
    )


def call_kind_label(fact: CallFact, via_clone: str | None) -> str:
    """How a caller reaches a function: `call`, `tail-call`, `calls clone foo.isra.0`, `inlined`."""
    if fact.kind == "inlined":
        return "inlined"
    return f"{fact.kind} of clone {via_clone}" if via_clone else fact.kind


def workspace_symbol(
    name: str, object_name: str, location: types.Location
) -> types.SymbolInformation:
    return types.SymbolInformation(
        name=name, kind=types.SymbolKind.Function, location=location, container_name=object_name
    )
