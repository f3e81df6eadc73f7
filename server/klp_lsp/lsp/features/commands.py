"""`workspace/executeCommand`: reindex, the full report of a function, a patch's skeleton and
replace set. Each takes one object argument and returns text for the client to show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp.errors import UsageError
from klp_lsp.lsp import convert
from klp_lsp.lsp.convert import SHOW_FUNCTION_REPORT, SHOW_REPLACE_SET
from klp_lsp.lsp.documents import uri_to_path
from klp_lsp.lsp.features.code_actions import GENERATE_SKELETON
from klp_lsp.lsp.features.diagnostics import open_cu_names, patch_display_name
from klp_lsp.lsp.features.hover import reports_for, word_at_position
from klp_lsp.model import CheckResult

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer

REINDEX = "klp-lsp.reindex"


def _argument(args: tuple[Any, ...]) -> dict[str, Any]:
    if not args:
        return {}
    if len(args) != 1 or not isinstance(args[0], dict):
        raise UsageError('command arguments must be one object, e.g. {"name": "vfs_read"}')
    return args[0]


def register(server: KlpServer) -> None:
    async def check_document(args: tuple[Any, ...]) -> CheckResult:
        uri = _argument(args).get("uri")
        if not isinstance(uri, str):
            raise UsageError('this command needs {"uri": <patch document>}')
        if uri in server.open_documents:
            text = server.workspace.get_text_document(uri).source
        else:
            path = uri_to_path(uri)
            if path is None or not path.is_file():
                raise UsageError(f"{uri}: not an open document or a readable file")
            text = path.read_text(encoding="utf-8", errors="replace")
        if server.index.interactive is None:
            raise UsageError(server.index.status.describe().removeprefix("klp-lsp: "))
        source_root = server.source_root()
        name = patch_display_name(uri)
        result = await server.index.run_check(
            lambda checker: checker.check_patches([(name, text)], source_root)
        )
        if result is None:
            raise UsageError("no index is open")
        return result

    @server.command(REINDEX)
    @server.guard(REINDEX)
    def reindex(*args: Any) -> None:
        server.index.start(server.config, open_cu_names(server))

    @server.command(SHOW_FUNCTION_REPORT)
    @server.guard(SHOW_FUNCTION_REPORT, default="")
    def show_function_report(*args: Any) -> str:
        """{"name"}, or {"uri", "position"}; "file" and "object" pick one definition."""
        arg = _argument(args)
        name = arg.get("name")
        uri = arg.get("uri")
        pos = arg.get("position")
        if not isinstance(name, str) and isinstance(uri, str) and isinstance(pos, dict):
            found = word_at_position(
                server, uri, types.Position(int(pos.get("line", 0)), int(pos.get("character", 0)))
            )
            name = found[0] if found else None
        if not isinstance(name, str) or not name:
            raise UsageError(
                'showFunctionReport needs {"name": ...} or {"uri": ..., "position": ...}'
            )
        reports = reports_for(server, name, uri if isinstance(uri, str) else None)
        # A patch's lens names the definition it changes: that file's copy in that object.
        chosen = [
            r
            for r in reports
            if arg.get("file") in (None, r.decl_file) and arg.get("object") in (None, r.object)
        ]
        reports = chosen or reports
        if not reports:
            if server.index.interactive is None or not server.index.complete:
                return f"{server.index.status.describe()}\n\n`{name}` is not indexed yet."
            objects = ", ".join(server.index.objects)
            return f"`{name}`: no such function in the indexed binaries ({objects})."
        return f"# {name}\n\n" + convert.reports_to_markdown(reports, full=True)

    @server.command(GENERATE_SKELETON)
    @server.guard(GENERATE_SKELETON, default=None)
    async def generate_skeleton(*args: Any) -> dict[str, str]:
        from klp_lsp.patch.render import render_skeleton

        result = await check_document(args)
        name = Path(patch_display_name(_argument(args)["uri"])).name
        return {"content": render_skeleton(result, [name])}

    @server.command(SHOW_REPLACE_SET)
    @server.guard(SHOW_REPLACE_SET, default="")
    async def show_replace_set(*args: Any) -> str:
        from klp_lsp.patch.render import render_replace_set

        return render_replace_set(await check_document(args))
