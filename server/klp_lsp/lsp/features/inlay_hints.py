"""Inlay hints in C files: after a function's name, the ABI facts that matter to a live patch
(`inlined ×12`, `.isra`, `not patchable`, `sympos 2`), so they show without hovering.

Behind the `inlayHints` setting (default on). Only the functions in the requested range are
looked up; the buffer's parse is kept per document version and each function's label per open
index, so a client asking for the whole file again after an edit (Neovim) pays only for what is
new. A long request yields to the event loop now and then, so hovers are not held up by it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import document_kind, word_range
from klp_lsp.lsp.features.hover import reports_for

if TYPE_CHECKING:
    from klp_lsp.index.query import IndexSet
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.model import FunctionReport
    from klp_lsp.patch.source_map import FunctionExtent, SourceParser

# Functions looked up between two yields to the event loop.
_BATCH = 25


def register(server: KlpServer) -> None:
    parsers: list[SourceParser] = []
    # uri -> (version, the functions of that version of the buffer)
    parsed: dict[str, tuple[int, list[FunctionExtent]]] = {}
    # The index the reports below come from, and (uri, names) -> the report a hint shows.
    reports_of: list[IndexSet] = []
    found: dict[tuple[str, tuple[str, ...]], FunctionReport | None] = {}

    def report(uri: str, names: tuple[str, ...]) -> FunctionReport | None:
        indexes = server.index.interactive
        if not reports_of or reports_of[0] is not indexes:
            reports_of[:] = [indexes] if indexes is not None else []
            found.clear()
        key = (uri, names)
        if key not in found:
            found[key] = next((r[0] for n in names if (r := reports_for(server, n, uri))), None)
        return found[key]

    def functions(uri: str, version: int, text: str) -> list[FunctionExtent]:
        cached = parsed.get(uri)
        if cached is not None and cached[0] == version:
            return cached[1]
        for closed in [u for u in parsed if u not in server.open_documents]:
            del parsed[closed]
            for key in [k for k in found if k[0] == closed]:
                del found[key]
        if not parsers:
            # Imported and made on first use: tree-sitter need not load before the first hint.
            from klp_lsp.patch.source_map import SourceParser

            parsers.append(SourceParser())
        extents = list(parsers[0].parse(text).functions)
        parsed[uri] = (version, extents)
        return extents

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
    @server.guard("inlayHint", default=None)
    async def inlay_hint(params: types.InlayHintParams) -> list[types.InlayHint] | None:
        uri = params.text_document.uri
        if not server.config.inlay_hints or server.index.interactive is None:
            return None
        doc = server.workspace.get_text_document(uri)
        if document_kind(uri, doc.language_id) != "c":
            return None
        lines = doc.lines
        first, last = params.range.start.line, params.range.end.line
        hints = []
        for i, fn in enumerate(functions(uri, doc.version or 0, doc.source)):
            line = fn.name_line - 1
            if not first <= line <= last or line >= len(lines):
                continue
            if i % _BATCH == _BATCH - 1:
                await asyncio.sleep(0)
                if server.index.interactive is None:
                    return None
            r = report(uri, tuple(dict.fromkeys((*fn.binary_names, fn.name))))
            if r is None:
                continue
            _start, end = word_range(lines[line].rstrip("\r\n"), fn.name)
            hint = convert.inlay_hint(line, end, r)
            if hint is not None:
                hints.append(hint)
        return hints

    def refresh() -> None:
        ws = server.client_capabilities.workspace
        if ws is not None and ws.inlay_hint is not None and ws.inlay_hint.refresh_support:
            server.workspace_inlay_hint_refresh(None)

    server.index.on_ready(refresh)
    server.on_config_change(refresh)
