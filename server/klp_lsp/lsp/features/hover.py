"""Hovers: on a function name in a C file or a patch, the function's patchability card.

Elsewhere in a patch they answer from the diagnostics' check of the same version: on a hunk line,
its findings and the card of the function it changes; on a file's `diff` line, the binaries and
compile units the file is built into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import document_kind, relative_to_root, uri_to_path, word_at
from klp_lsp.model import FunctionReport

if TYPE_CHECKING:
    from klp_lsp.lsp.checked import Checked
    from klp_lsp.lsp.server import KlpServer

# How long a hover in a patch waits for the check in flight: a hover is asked for and read now.
PATCH_HOVER_WAIT = 1.0


def word_at_position(
    server: KlpServer, uri: str, position: types.Position
) -> tuple[str, types.Range] | None:
    """The identifier under the cursor and its range."""
    doc = server.workspace.get_text_document(uri)
    lines = doc.lines
    if position.line >= len(lines):
        return None
    line = lines[position.line].rstrip("\r\n")
    word = word_at(line, position.character)
    if word is None:
        return None
    start = line.rfind(word, 0, position.character + 1)
    start = max(start, 0)
    rng = convert.line_range(position.line, start, start + len(word))
    return word, rng


def reports_for(server: KlpServer, name: str, uri: str | None) -> list[FunctionReport]:
    """The reports of a name, those defined in the document's own file first."""
    indexes = server.index.interactive
    if indexes is None:
        return []
    # Any symbol the index knows: a clone (`foo.isra.0`) or an alias gets its C function's.
    reports = indexes.reports(name)
    if uri is not None and len(reports) > 1:
        rel = relative_to_root(uri_to_path(uri), server.source_root())
        if rel is not None:
            own = [r for r in reports if r.decl_file == rel]
            if own:
                return own + [r for r in reports if r.decl_file != rel]
    return reports


def patch_hover(server: KlpServer, checked: Checked, position: types.Position) -> str | None:
    """The hover text of a patch line that is no function name, from its check result."""
    line = position.line + 1
    for file in checked.result.files:
        if file.line == line:
            return convert.file_markdown(file, server.index.objects)
    findings = [
        (p.finding, p.severity)
        for p in checked.placed
        if p.range.start.line <= position.line <= p.range.end.line
    ]
    impact = next(
        (
            i
            for file in checked.result.files
            for hunk in file.hunks
            if hunk.line <= line <= hunk.end_line
            for i in hunk.functions
            if line in i.patch_lines
        ),
        None,
    )
    if not findings and impact is None:
        return None
    if findings:
        f = findings[0][0]
        name, obj, source = f.function, f.object, f.source_file
    else:
        assert impact is not None
        name, obj, source = impact.name, impact.object, impact.source_file
    reports = [
        r
        for r in (reports_for(server, name, None) if name else [])
        if r.object == obj and r.decl_file in (None, source)
    ]
    if impact is not None and (impact.name, impact.object) != (name, obj):
        impact = None
    return convert.patch_line_markdown(findings, impact, reports)


def register(server: KlpServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @server.guard("hover")
    async def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        kind = document_kind(uri, doc.language_id)
        if kind == "other":
            return None
        found = word_at_position(server, uri, params.position)
        if found is not None:
            reports = reports_for(server, found[0], uri)
            if reports:
                return convert.markdown_hover(convert.reports_to_markdown(reports), found[1])
        if kind == "patch":
            checked = await server.checked.wait_for(uri, doc.version or 0, PATCH_HOVER_WAIT)
            text = patch_hover(server, checked, params.position) if checked else None
            if text is not None:
                line = params.position.line
                return convert.markdown_hover(text, convert.line_range(line, 0, None))
        if found is None:
            return None
        rng = found[1]
        status = server.index.status
        if server.index.interactive is None or not server.index.complete:
            # No answer yet: say why instead of nothing.
            return convert.markdown_hover(status.describe(), rng)
        return None
