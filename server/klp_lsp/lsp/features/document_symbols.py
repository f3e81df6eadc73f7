"""The outline of a patch (`textDocument/documentSymbol`): files, their hunks, and under each
hunk the functions it changes, so outline views and symbol pickers list what a patch touches.

The functions come from the diagnostics' check of the same version, waited for (also while the
first index is built); without an index (it failed) the outline has the parsed files and hunks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import document_kind
from klp_lsp.lsp.features.diagnostics import patch_display_name

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.model import FileImpact

# How long the outline waits for the index to open and the check in flight to end before it
# shows files and hunks alone. Long: clients ask for the outline in the background and keep it
# until the text changes (no request refreshes document symbols), so an early answer would stay.
OUTLINE_WAIT = 300.0


def parsed_outline(name: str, text: str) -> tuple[FileImpact, ...]:
    """Files and hunks of a patch text, without what they change (no index needed)."""
    from klp_lsp.patch.diff import parse_patch_text
    from klp_lsp.patch.outline import outline_patches

    patches, problems = parse_patch_text(text, name)
    return outline_patches(patches, (), (), problems, lambda path: (), mapped=False)


def register(server: KlpServer) -> None:
    waiting: list[asyncio.Future[None]] = []

    def opened() -> None:
        # Runs after the diagnostics' own callback, which has scheduled the checks by then.
        for future in waiting:
            if not future.done():
                future.set_result(None)
        waiting.clear()

    server.index.on_ready(opened)

    async def index_opened(timeout: float) -> None:
        """Wait while the first indexes are being built (not after an error)."""
        index = server.index
        if index.interactive is not None or index.status.state != "building":
            return
        future = asyncio.get_running_loop().create_future()
        waiting.append(future)
        await asyncio.wait({future}, timeout=timeout)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @server.guard("documentSymbol", default=None)
    async def document_symbol(
        params: types.DocumentSymbolParams,
    ) -> list[types.DocumentSymbol] | list[types.SymbolInformation] | None:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        if document_kind(uri, doc.language_id) != "patch":
            return None
        started = asyncio.get_running_loop().time()
        await index_opened(OUTLINE_WAIT)
        left = OUTLINE_WAIT - (asyncio.get_running_loop().time() - started)
        checked = await server.checked.wait_for(uri, doc.version or 0, max(left, 0.0))
        if checked is not None:
            files = checked.result.files
        else:
            files = parsed_outline(patch_display_name(uri), doc.source)
        symbols = convert.patch_document_symbols(files)
        td = server.client_capabilities.text_document
        ds = td.document_symbol if td is not None else None
        if ds is None or not ds.hierarchical_document_symbol_support:
            return convert.flat_symbols(symbols, uri)
        return symbols
