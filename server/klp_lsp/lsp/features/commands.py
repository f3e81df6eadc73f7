"""`workspace/executeCommand`: reindex, the full report of a function, a patch's skeleton and
replace set, the verification of a built livepatch module. Each takes one object argument and
returns text for the client to show.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp.errors import UsageError
from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import uri_to_path
from klp_lsp.lsp.features.code_actions import GENERATE_SKELETON, SHOW_REPLACE_SET
from klp_lsp.lsp.features.diagnostics import open_cu_names, patch_display_name
from klp_lsp.lsp.features.hover import reports_for, word_at_position
from klp_lsp.model import CheckResult

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.check import Checker
    from klp_lsp.patch.render import Prototype

REINDEX = "klp-lsp.reindex"
SHOW_FUNCTION_REPORT = "klp-lsp.showFunctionReport"
VERIFY_MODULE = "klp-lsp.verifyModule"


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
        if not reports:
            if server.index.interactive is None or not server.index.complete:
                return f"{server.index.status.describe()}\n\n`{name}` is not indexed yet."
            objects = ", ".join(server.index.objects)
            return f"`{name}`: no such function in the indexed binaries ({objects})."
        return f"# {name}\n\n" + convert.reports_to_markdown(reports, full=True)

    @server.command(GENERATE_SKELETON)
    @server.guard(GENERATE_SKELETON, default=None)
    async def generate_skeleton(*args: Any) -> dict[str, str]:
        from klp_lsp.livepatch.skeleton import skeleton_prototypes
        from klp_lsp.patch.render import render_skeleton

        result = await check_document(args)
        name = Path(patch_display_name(_argument(args)["uri"])).name
        source_root = server.source_root()

        def prototypes(checker: Checker) -> dict[tuple[str, str, int], Prototype]:
            root, _note = checker.find_source_root(source_root)
            return skeleton_prototypes(result, checker.indexes, root)

        found = await server.index.run_check(prototypes)
        return {"content": render_skeleton(result, [name], found)}

    @server.command(VERIFY_MODULE)
    @server.guard(VERIFY_MODULE, default="")
    async def verify_module(*args: Any) -> str:
        from klp_lsp.livepatch.render import verify_to_markdown

        arg = _argument(args)
        uri = arg.get("uri")
        path = uri_to_path(uri) if isinstance(uri, str) else None
        if path is None and isinstance(arg.get("path"), str):
            path = Path(arg["path"])
        if path is None or not path.is_file():
            raise UsageError('verifyModule needs {"uri": <a .ko file>} of a readable module')
        patches: list[tuple[str, str]] = []
        for p in arg.get("patches") or []:
            patch_path = uri_to_path(p) if isinstance(p, str) else None
            if patch_path is None or not patch_path.is_file():
                raise UsageError(f"{p}: not a readable patch file")
            patches.append((patch_path.name, patch_path.read_text(errors="replace")))
        config = server.config
        # Verify indexes the module: in a spawned process, as all indexing (a fork of this
        # threaded server can deadlock; lsp/indexing.py).
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return await asyncio.get_running_loop().run_in_executor(
                pool,
                verify_to_markdown,
                path,
                list(config.binaries),
                config.kernel_release,
                config.index_dir,
                patches,
                server.source_root(),
            )

    @server.command(SHOW_REPLACE_SET)
    @server.guard(SHOW_REPLACE_SET, default="")
    async def show_replace_set(*args: Any) -> str:
        from klp_lsp.patch.render import render_replace_set

        return render_replace_set(await check_document(args))
