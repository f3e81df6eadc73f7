"""`workspace/executeCommand`: reindex, the full report of a function, a patch's skeleton and
replace set, the verification of a built livepatch module, and the livepatch module of a patch.
Each takes one object argument and returns text (or an object with `content`) for the client
to show.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp.errors import UsageError
from klp_lsp.lsp import convert
from klp_lsp.lsp.convert import SHOW_FUNCTION_REPORT, SHOW_REPLACE_SET
from klp_lsp.lsp.documents import uri_to_path
from klp_lsp.lsp.features.code_actions import GENERATE_MODULE, GENERATE_SKELETON
from klp_lsp.lsp.features.diagnostics import open_cu_names, patch_display_name
from klp_lsp.lsp.features.hover import reports_for, word_at_position
from klp_lsp.model import CheckResult

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.check import Checker
    from klp_lsp.patch.render import Prototype

REINDEX = "klp-lsp.reindex"
VERIFY_MODULE = "klp-lsp.verifyModule"


def _argument(args: tuple[Any, ...]) -> dict[str, Any]:
    if not args:
        return {}
    if len(args) != 1 or not isinstance(args[0], dict):
        raise UsageError('command arguments must be one object, e.g. {"name": "vfs_read"}')
    return args[0]


def register(server: KlpServer) -> None:
    def document_text(args: tuple[Any, ...]) -> tuple[str, str]:
        uri = _argument(args).get("uri")
        if not isinstance(uri, str):
            raise UsageError('this command needs {"uri": <patch document>}')
        if uri in server.open_documents:
            return uri, server.workspace.get_text_document(uri).source
        path = uri_to_path(uri)
        if path is None or not path.is_file():
            raise UsageError(f"{uri}: not an open document or a readable file")
        return uri, path.read_text(encoding="utf-8", errors="replace")

    async def check_document(args: tuple[Any, ...]) -> CheckResult:
        uri, text = document_text(args)
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

    @server.command(GENERATE_MODULE)
    @server.guard(GENERATE_MODULE, default=None)
    async def generate_module(*args: Any) -> dict[str, Any]:
        """Write the patch's livepatch module to `outdir` once the user confirms it.

        Arguments: {"uri": <patch>, "outdir"?: <directory>, "build"?: bool}. Without `outdir`
        the module goes to `livepatch-<patch name>` beside the patch (or in the workspace). The
        answer says whether anything was written, and what.
        """
        from klp_lsp.generate.pipeline import GenerateOptions, Generator
        from klp_lsp.generate.render import result_to_json, result_to_text

        arg = _argument(args)
        uri, text = document_text(args)
        source_root = server.source_root()
        if source_root is None:
            raise UsageError("set klp-lsp.sourceRoot: generating a module needs the kernel source")
        if server.index.interactive is None:
            raise UsageError(server.index.status.describe().removeprefix("klp-lsp: "))
        name = patch_display_name(uri)
        outdir = _module_dir(arg.get("outdir"), uri, server.workspace.root_path)
        answer = await server.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=types.MessageType.Info,
                message=f"klp-lsp: write the livepatch module for {Path(name).name} to {outdir}?",
                actions=[types.MessageActionItem(title=t) for t in (_CONFIRM, "Cancel")],
            )
        )
        if answer is None or answer.title != _CONFIRM:
            return {"written": False, "outdir": str(outdir), "content": "Nothing was written."}
        options = GenerateOptions(
            outdir=outdir, source_root=source_root, build=bool(arg.get("build"))
        )

        def run(checker: Any) -> Any:
            gen = Generator(checker.indexes, options)
            try:
                result = gen.generate([(name, text)])
                if options.build and not result.has_errors:
                    gen.build(result)
                return result
            finally:
                gen.close()

        result = await server.index.run_check(run)
        if result is None:
            raise UsageError("no index is open")
        return {
            "written": True,
            "outdir": str(outdir),
            "content": result_to_text(result),
            "result": result_to_json(result),
        }


_CONFIRM = "Generate"


def _module_dir(given: object, uri: str, workspace: str | None) -> Path:
    """Where "Generate livepatch module" writes: the argument, else beside the patch."""
    if isinstance(given, str) and given:
        return Path(given).expanduser()
    path = uri_to_path(uri)
    stem = path.stem if path is not None else "patch"
    base = path.parent if path is not None else Path(workspace or ".")
    return base / f"livepatch-{stem}"
