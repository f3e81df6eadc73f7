"""Workspace symbols: the functions of the indexed binaries, by name prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer

# Names returned per query; clients filter further as the user types.
LIMIT = 100


def register(server: KlpServer) -> None:
    @server.feature(types.WORKSPACE_SYMBOL)
    @server.guard("workspace/symbol", default=None)
    def workspace_symbol(
        params: types.WorkspaceSymbolParams,
    ) -> list[types.SymbolInformation] | None:
        from klp_lsp.lsp.features.call_hierarchy import Locator

        indexes = server.index.interactive
        query = params.query.strip()
        if indexes is None or not query:
            return None
        fallback = server.root.as_uri() if server.root is not None else "file:///"
        locator = Locator(server, fallback)
        out: list[types.SymbolInformation] = []
        for obj in indexes.objects:
            for name in obj.search_names(query, LIMIT - len(out)):
                uri, line = locator.of_symbol(obj, name)
                location = types.Location(uri=uri, range=convert.line_range(line, 0, 0))
                out.append(convert.workspace_symbol(name, obj.object, location))
            if len(out) >= LIMIT:
                break
        return out
