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
    CheckResult,
    FileImpact,
    Finding,
    FunctionImpact,
    FunctionReport,
    HunkImpact,
    Problem,
    Related,
    ReplaceEntry,
    Severity,
    SymbolFact,
)
from klp_lsp.patch.render import DOCS_DIR, finding_doc_url
from klp_lsp.report import (
    compiler_line,
    flags_line,
    hexaddr,
    host_text,
    signature_text,
    verdict_line,
)

SOURCE = "klp-lsp"
# The server's commands that lenses and links run (`features/commands.py` implements them).
SHOW_FUNCTION_REPORT = "klp-lsp.showFunctionReport"
SHOW_REPLACE_SET = "klp-lsp.showReplaceSet"

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
        link = command_uri(SHOW_FUNCTION_REPORT, [{"name": r.name}])
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
    return types.Command(title=title, command=SHOW_FUNCTION_REPORT, arguments=[argument])


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


# --- patches: lenses, hints, hovers and the outline ---------------------------------------------

# The code of the hint on a changed function that has no findings.
CHANGED_FUNCTION = "changed-function"
# Names a lens lists before "and N more".
_LENS_NAMES = 3

_NOTE_TITLES = {
    "comment-only": "comment only: no code changes",
    "outside-definitions": "no function: a change outside any definition",
    "not-c": "not C: changes no function",
    "binary": "binary file: changes no function",
    "renamed": "renamed: no content change",
    "new-file": "new file: nothing to replace",
    "deleted-file": "deleted file",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listed(names: Sequence[str], limit: int = _LENS_NAMES) -> str:
    names = list(dict.fromkeys(names))
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def _suffix(name: str, symbol: str) -> str:
    """`.part.0` for `foo.part.0` of `foo`: how GCC named the clone."""
    return symbol[len(name) :] if symbol.startswith(name + ".") else symbol


def _entry(e: ReplaceEntry) -> str:
    pos = f" sympos {e.sympos}" if e.sympos else ""
    return f"{e.symbol}{pos}{'' if e.patchable else ' (not patchable)'}"


def impact_summary(i: FunctionImpact) -> str:
    """What a live patch must do about one changed function, without its name.

    `replace in vmlinux (sympos 0) · patchable`, `inlined into __queue_work → replace
    __queue_work`, `... · clone .part.0 also changed`.
    """
    if i.status == "added":
        return "new function: comes with the patch module, nothing to replace"
    if i.status == "not-built":
        return f"{i.source_file} is not built into the indexed binaries: nothing to replace"
    if i.status == "not-found":
        return "not found in the indexed binaries"
    parts = ["removed"] if i.status == "removed" else []
    own = {s.name for s in (*i.symbols, *i.clones)}
    # What to replace: its own copy (or, when only clones are out of line, the first clone).
    verb = "replace " if i.patchable else ""
    if i.symbols:
        copies = "" if len(i.symbols) == 1 else f"{len(i.symbols)} copies "
        sympos = ", ".join(str(s.sympos) for s in i.symbols)
        where = f"in {i.object}" if i.patchable else i.object
        parts.append(f"{verb}{copies}{where} (sympos {sympos})".strip())
    elif i.clones:
        clone = i.clones[0]
        parts.append(
            f"{verb}clone {_suffix(i.name, clone.name)} in {i.object} (sympos {clone.sympos})"
        )
    if i.symbols or i.clones:
        parts.append(
            "patchable" if i.patchable else f"NOT patchable: {'; '.join(i.not_patchable_reasons)}"
        )
    clones = i.clones if i.symbols else i.clones[1:]
    if clones:
        names = ", ".join(_suffix(i.name, s.name) for s in clones)
        parts.append(f"clone{'s' if len(clones) > 1 else ''} {names} also changed")
    if i.register_callers:
        n = len(i.register_callers)
        parts.append(f"{_plural(n, 'caller')} rel{'ies' if n == 1 else 'y'} on its registers")
    if i.inlined_into:
        parts.append(f"inlined into {_listed(i.inlined_into)}")
    others = [e for e in i.replace if e.symbol not in own]
    if others and parts:
        parts[-1] += f" → replace {_listed([_entry(e) for e in others])}"
    elif others:
        parts.append(f"replace {_listed([_entry(e) for e in others])}")
    return " · ".join(parts) or "nothing to replace"


def impact_title(i: FunctionImpact) -> str:
    """The lens of one changed function: `find_lock_lowest_rq · replace in vmlinux (sympos 0) ·
    patchable`."""
    return f"{i.name} · {impact_summary(i)}"


def hunk_note_title(hunk: HunkImpact, path: str, problems: Sequence[str] = ()) -> str:
    """The lens of a hunk that changes no function: why not (`data only`, `comment only`, ...)."""
    if problems or hunk.problems:
        return f"not mapped: {(*problems, *hunk.problems)[0]}"
    parts = []
    if hunk.data:
        parts.append(f"data only: {_listed(hunk.data, 2)}")
    if hunk.macros:
        affects = f"affects {_plural(hunk.macro_users, 'function')}"
        if path.endswith(".h"):
            parts.append(f"header: {affects}")
        else:
            parts.append(f"macro {_listed(hunk.macros, 2)}: {affects}")
    parts.extend(_NOTE_TITLES.get(n, n) for n in hunk.notes)
    return " · ".join(dict.fromkeys(parts)) or "changes no function"


def summary_title(result: CheckResult, errors: int, warnings: int) -> str:
    """`klp-lsp: 3 changed functions → 5 to replace · 0 errors · 2 warnings`."""
    changed = _plural(len(result.changed_functions), "changed function")
    text = (
        f"klp-lsp: {changed} → {len(result.replace)} to replace · {_plural(errors, 'error')}"
        f" · {_plural(warnings, 'warning')}"
    )
    if result.problems:
        text += f" · {_plural(len(result.problems), 'problem')}"
    return text


def _report_command(i: FunctionImpact, title: str) -> types.Command:
    if i.object is None or i.status in ("added", "not-built", "not-found"):
        return types.Command(title=title, command="")
    argument = {"name": i.name, "file": i.source_file, "object": i.object}
    return types.Command(title=title, command=SHOW_FUNCTION_REPORT, arguments=[argument])


def patch_code_lenses(
    result: CheckResult, uri: str, errors: int, warnings: int
) -> list[types.CodeLens]:
    """The summary lens on the first line, then above each hunk one lens per changed function,
    or one saying why it changes none; a file without hunks gets one on its `diff` line."""
    replace_set = types.Command(
        title=summary_title(result, errors, warnings),
        command=SHOW_REPLACE_SET,
        arguments=[{"uri": uri}],
    )
    lenses = [types.CodeLens(range=line_range(0, 0, 0), command=replace_set)]
    for file in result.files:
        if not file.hunks:
            note = HunkImpact(file.line, file.line, "", notes=(file.status,))
            title = hunk_note_title(note, file.path, file.problems)
            lenses.append(
                types.CodeLens(
                    line_range(file.line - 1, 0, 0), types.Command(title=title, command="")
                )
            )
        for hunk in file.hunks:
            rng = line_range(hunk.line - 1, 0, 0)
            if hunk.functions and not file.problems:
                lenses.extend(
                    types.CodeLens(rng, _report_command(i, impact_title(i))) for i in hunk.functions
                )
                continue
            title = hunk_note_title(hunk, file.path, file.problems)
            command = (
                types.Command(title=title, command=SHOW_REPLACE_SET, arguments=[{"uri": uri}])
                if hunk.macro_users
                else types.Command(title=title, command="")
            )
            lenses.append(types.CodeLens(rng, command))
    return lenses


def status_lens(title: str) -> types.CodeLens:
    """One lens on the first line saying why there is nothing else yet (indexing, checking)."""
    return types.CodeLens(range=line_range(0, 0, 0), command=types.Command(title=title, command=""))


def impact_to_diagnostic(i: FunctionImpact, rng: types.Range) -> types.Diagnostic:
    """A hint on a changed function without findings: it was checked, and what to replace."""
    return types.Diagnostic(
        range=rng,
        message=f"{i.name}: no findings · {impact_summary(i)}",
        severity=types.DiagnosticSeverity.Hint,
        code=CHANGED_FUNCTION,
        source=SOURCE,
        data={"kind": CHANGED_FUNCTION, "function": i.name, "object": i.object},
    )


_MARK = {"error": "✘", "warning": "⚠", "information": "ℹ", "hint": "·"}


def findings_markdown(findings: Sequence[tuple[Finding, Severity]]) -> str:
    """The findings of one patch line, most severe first, each with its docs page."""
    order = ("error", "warning", "information", "hint")
    lines = ["**klp-lsp findings on this line**", ""]
    for f, severity in sorted(findings, key=lambda x: order.index(x[1])):
        href = finding_href(f.kind)
        kind = f"[`{f.kind}`]({href})" if href else f"`{f.kind}`"
        lines.append(f"- {_MARK.get(severity, '')} {severity} {kind}: {f.message}")
    return "\n".join(lines)


def patch_line_markdown(
    findings: Sequence[tuple[Finding, Severity]],
    impact: FunctionImpact | None,
    reports: Sequence[FunctionReport],
) -> str:
    """Hover on a patch line: its findings, what the function it changes needs, and its card."""
    parts = []
    if findings:
        parts.append(findings_markdown(findings))
    if impact is not None:
        parts.append(f"**{impact.name}** is changed here: {impact_summary(impact)}")
    if reports:
        parts.append(reports_to_markdown(reports))
    return "\n\n---\n\n".join(parts)


def file_markdown(file: FileImpact, objects: Sequence[str]) -> str:
    """Hover on a file's `diff` line: the binaries and compile units it is built into."""
    n_functions = len({(i.name, i.object) for h in file.hunks for i in h.functions})
    lines = [
        f"**{file.path}** · {file.status} · {_plural(len(file.hunks), 'hunk')}"
        f" · {_plural(n_functions, 'changed function')}",
        "",
    ]
    for u in file.units:
        if u.error is not None:
            state = f" (unreadable, so not in the index: {u.error})"
        elif not u.analysed:
            state = " (not indexed yet: its facts come with the rest of the index)"
        else:
            state = ""
        how = f"inside CU `{u.name}`, which #includes it" if u.included else f"as CU `{u.name}`"
        lines.append(f"- built into **{u.object}** {how}{state}")
        lines.append(f"  - {flags_line(u.compiler)}")
    if not file.units:
        indexed = ", ".join(objects) or "no binary"
        if file.path.endswith(".h"):
            lines.append(
                "- a header: no compile unit of its own; its changes reach every CU that"
                f" includes it ({indexed} indexed)"
            )
        elif file.path.endswith((".c", ".S")):
            lines.append(f"- not built into the indexed binaries ({indexed})")
        else:
            lines.append("- not a source file of the kernel binaries")
    for problem in file.problems:
        lines.append(f"- not mapped: {problem}")
    return "\n".join(lines)


def _span(first: int, last: int) -> types.Range:
    """Patch lines `first`..`last` (1-based, inclusive) as a range."""
    return types.Range(types.Position(first - 1, 0), types.Position(max(last, first), 0))


def _hunk_symbol(hunk: HunkImpact, path: str, problems: Sequence[str]) -> types.DocumentSymbol:
    lines = set(range(hunk.line, hunk.end_line + 1))
    children = []
    for i in hunk.functions:
        mine = sorted(lines.intersection(i.patch_lines)) or [hunk.line]
        children.append(
            types.DocumentSymbol(
                name=i.name,
                kind=types.SymbolKind.Function,
                range=_span(mine[0], mine[-1]),
                selection_range=_span(mine[0], mine[0]),
                detail=impact_summary(i),
            )
        )
    kinds = {"struct": types.SymbolKind.Struct, "union": types.SymbolKind.Struct}
    for data in hunk.data:
        kind, _, name = data.partition(" ")
        children.append(
            types.DocumentSymbol(
                name=name,
                kind=kinds.get(
                    kind, types.SymbolKind.Enum if kind == "enum" else types.SymbolKind.Variable
                ),
                range=_span(hunk.line, hunk.end_line),
                selection_range=_span(hunk.line, hunk.line),
                detail=f"{kind}: data only",
            )
        )
    for macro in hunk.macros:
        children.append(
            types.DocumentSymbol(
                name=macro,
                kind=types.SymbolKind.Constant,
                range=_span(hunk.line, hunk.end_line),
                selection_range=_span(hunk.line, hunk.line),
                detail=f"macro: affects {_plural(hunk.macro_users, 'function')}",
            )
        )
    detail = (
        ", ".join(i.name for i in hunk.functions)
        if hunk.functions
        else hunk_note_title(hunk, path, problems)
    )
    return types.DocumentSymbol(
        name=hunk.header or f"hunk at line {hunk.line}",
        kind=types.SymbolKind.Namespace,
        range=_span(hunk.line, hunk.end_line),
        selection_range=_span(hunk.line, hunk.line),
        detail=detail,
        children=children or None,
    )


def patch_document_symbols(files: Sequence[FileImpact]) -> list[types.DocumentSymbol]:
    """Files > hunks > changed functions; under one entry per message for an mbox series."""
    symbols: list[tuple[int, str | None, types.DocumentSymbol]] = []
    for file in files:
        hunks = [_hunk_symbol(h, file.path, file.problems) for h in file.hunks]
        n = len({(i.name, i.object) for h in file.hunks for i in h.functions})
        symbols.append(
            (
                file.patch_start,
                file.patch_subject,
                types.DocumentSymbol(
                    name=file.path,
                    kind=types.SymbolKind.File,
                    range=_span(file.line, file.end_line),
                    selection_range=_span(file.line, file.line),
                    detail=f"{file.status} · {_plural(n, 'changed function')}",
                    children=hunks or None,
                ),
            )
        )
    starts = list(dict.fromkeys(start for start, _, _ in symbols))
    if len(starts) <= 1:
        return [s for _, _, s in symbols]
    out = []
    for start in starts:
        mine = [(subject, s) for first, subject, s in symbols if first == start]
        subject = mine[0][0] or f"patch at line {start}"
        end = max(s.range.end.line for _, s in mine)
        out.append(
            types.DocumentSymbol(
                name=subject,
                kind=types.SymbolKind.Package,
                range=types.Range(types.Position(start - 1, 0), types.Position(end, 0)),
                selection_range=_span(start, start),
                detail=_plural(len(mine), "file"),
                children=[s for _, s in mine],
            )
        )
    return out


def flat_symbols(
    symbols: Sequence[types.DocumentSymbol], uri: str, container: str | None = None
) -> list[types.SymbolInformation]:
    """The outline for clients without hierarchical symbols: parents become containers."""
    out = []
    for s in symbols:
        location = types.Location(uri=uri, range=s.range)
        out.append(
            types.SymbolInformation(
                name=s.name, kind=s.kind, location=location, container_name=container
            )
        )
        out.extend(flat_symbols(s.children or (), uri, s.name))
    return out


# --- inlay hints in C files ------------------------------------------------------------------


def inlay_label(r: FunctionReport) -> str | None:
    """`inlined ×12 · .isra · not patchable · sympos 2`: the facts worth seeing without a hover;
    None when there are none (a plain, unique, patchable function)."""
    parts = []
    if r.inlined_into:
        parts.append(f"inlined ×{len(r.inlined_into)}")
    kinds = [".".join(c.clone_kinds) for c in r.clones if "cold" not in c.clone_kinds]
    if kinds:
        parts.append(" ".join(f".{k}" for k in dict.fromkeys(kinds)))
    if not r.patchable:
        parts.append("not patchable")
    sympos = sorted({s.sympos for s in r.symbols if s.sympos})
    if sympos:
        parts.append(f"sympos {', '.join(map(str, sympos))}")
    return " · ".join(parts) or None


def inlay_hint(line: int, character: int, r: FunctionReport) -> types.InlayHint | None:
    """The hint after a function's name, with its verdict as the tooltip."""
    label = inlay_label(r)
    if label is None:
        return None
    return types.InlayHint(
        position=types.Position(line, character),
        label=label,
        padding_left=True,
        tooltip=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"**{r.name}** · {r.object}: {verdict_line(r)}"
        ),
    )
