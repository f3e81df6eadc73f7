"""Code lenses: above every function definition in a C file, and above every hunk of a patch.

In a C file, `textDocument/codeLens` only parses the buffer (tree-sitter); `codeLens/resolve`
asks the index, so a file with hundreds of functions costs index queries only for the lenses on
screen. In a patch, the lenses come resolved from the diagnostics' check of the same version
(`server.checked`): what each hunk changes and what must be replaced, and a summary on line 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import document_kind, word_range
from klp_lsp.lsp.features.hover import reports_for

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.source_map import SourceParser

# How long a patch's lens request waits for the check in flight (diagnostics) before answering
# with a status lens; a `workspace/codeLens/refresh` follows the check.
PATCH_LENS_WAIT = 5.0


def refresh_code_lenses(server: KlpServer) -> None:
    """`workspace/codeLens/refresh`, when the client supports it (lenses have new answers)."""
    ws = server.client_capabilities.workspace
    if ws is not None and ws.code_lens is not None and ws.code_lens.refresh_support:
        server.workspace_code_lens_refresh(None)


def lens_command(server: KlpServer, data: dict[str, Any]) -> types.Command:
    """The resolved command of one lens: its summary, and a click shows the full report."""
    names = [n for n in data.get("names", []) if isinstance(n, str)]
    uri = data.get("uri") if isinstance(data.get("uri"), str) else None
    if server.index.interactive is None:
        return types.Command(title=server.index.status.describe(), command="")
    for name in names:
        reports = reports_for(server, name, uri)
        if reports:
            return convert.function_report_command(name, convert.lens_title(reports[0]), uri)
    if not server.index.complete:
        return types.Command(title=server.index.status.describe(), command="")
    return types.Command(title="not in the kernel binary (not built, or no code)", command="")


def register(server: KlpServer) -> None:
    parsers: list[SourceParser] = []

    def parser() -> SourceParser:
        # Imported and made on first use: tree-sitter need not load before the first lens.
        if not parsers:
            from klp_lsp.patch.source_map import SourceParser

            parsers.append(SourceParser())
        return parsers[0]

    async def patch_lenses(uri: str, version: int) -> list[types.CodeLens]:
        checked = await server.checked.wait_for(uri, version, PATCH_LENS_WAIT)
        if checked is None:
            index = server.index
            busy = index.interactive is None or index.status.state != "ready"
            return [convert.status_lens(index.status.describe() if busy else "klp-lsp: checking…")]
        return convert.patch_code_lenses(
            checked.result, uri, checked.count("error"), checked.count("warning")
        )

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=True))
    @server.guard("codeLens", default=[])
    async def code_lens(params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        kind = document_kind(uri, doc.language_id)
        if kind == "patch":
            return await patch_lenses(uri, doc.version or 0)
        if kind != "c":
            return []
        lines = doc.lines
        out = []
        for fn in parser().parse(doc.source).functions:
            line = fn.name_line - 1
            text = lines[line] if line < len(lines) else ""
            start, end = word_range(text, fn.name)
            names = [*fn.binary_names, fn.name] if fn.binary_names else [fn.name]
            out.append(
                types.CodeLens(
                    range=convert.line_range(line, start, end),
                    data={"names": list(dict.fromkeys(names)), "uri": uri},
                )
            )
        return out

    @server.feature(types.CODE_LENS_RESOLVE)
    @server.guard("codeLens/resolve")
    def resolve(lens: types.CodeLens) -> types.CodeLens:
        if lens.command is not None:
            return lens  # A patch's lenses come resolved.
        data = lens.data if isinstance(lens.data, dict) else {}
        lens.command = lens_command(server, data)
        return lens

    server.index.on_ready(lambda: refresh_code_lenses(server))
