"""Hover on a function name in a C file or a patch: the function's patchability card."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import document_kind, relative_to_root, uri_to_path, word_at
from klp_lsp.model import FunctionReport

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer


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


def register(server: KlpServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @server.guard("hover")
    def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        if document_kind(uri, doc.language_id) == "other":
            return None
        found = word_at_position(server, uri, params.position)
        if found is None:
            return None
        word, rng = found
        reports = reports_for(server, word, uri)
        if reports:
            return convert.markdown_hover(convert.reports_to_markdown(reports), rng)
        status = server.index.status
        if server.index.interactive is None or not server.index.complete:
            # No answer yet: say why instead of nothing.
            return convert.markdown_hover(status.describe(), rng)
        return None
