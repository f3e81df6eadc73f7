"""Push diagnostics: the findings of `check` on patch documents and on edited C files.

Checks run on the check thread (see `indexing.py`), debounced while typing; a result is
published only if its document is still open and unchanged since the check started.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.documents import (
    document_kind,
    pre_image,
    relative_to_root,
    uri_to_path,
    word_range,
)
from klp_lsp.lsp.features.call_hierarchy import c_name, definition_site
from klp_lsp.model import CheckResult, Finding, Related

if TYPE_CHECKING:
    from klp_lsp.fleet.local import FleetCheckers
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.check import Checker

log = logging.getLogger(__name__)

# Seconds to wait after the last keystroke before checking again.
DEBOUNCE = 0.3


def patch_display_name(uri: str) -> str:
    """The name a patch is checked under: its path, or the URI of an untitled buffer."""
    path = uri_to_path(uri)
    return str(path) if path is not None else uri


def open_cu_names(server: KlpServer) -> list[str] | None:
    """The compile units the open documents touch (indexed first); None when none is known."""
    names: list[str] = []
    for uri, kind in server.open_documents.items():
        doc = server.workspace.get_text_document(uri)
        if kind == "patch":
            from klp_lsp.patch.check import cu_names_for_patch

            try:
                wanted = cu_names_for_patch(doc.source)
            except Exception:
                log.exception("cu_names_for_patch failed on %s", uri)
                wanted = None
            names.extend(wanted or ())
        elif kind == "c":
            rel = relative_to_root(uri_to_path(uri), server.config.source_root)
            if rel is not None:
                names.append(rel)
    return list(dict.fromkeys(names)) or None


class DiagnosticsScheduler:
    """One pending check per open document; newer edits cancel older checks."""

    def __init__(self, server: KlpServer) -> None:
        self.server = server
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The `fleet` setting's checkers, with the (fleet, index dir) they were made for.
        self._fleet: tuple[tuple[object, ...], FleetCheckers] | None = None

    def schedule(self, uri: str, delay: float) -> None:
        old = self._tasks.pop(uri, None)
        if old is not None:
            old.cancel()
        task = asyncio.ensure_future(self._run(uri, delay))
        self._tasks[uri] = task
        task.add_done_callback(lambda t: self._forget(uri, t))

    def _forget(self, uri: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(uri) is task:
            del self._tasks[uri]

    def refresh_all(self) -> None:
        for uri in list(self.server.open_documents):
            self.schedule(uri, 0)

    def close(self, uri: str) -> None:
        task = self._tasks.pop(uri, None)
        if task is not None:
            task.cancel()
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )

    async def _run(self, uri: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        server = self.server
        kind = server.open_documents.get(uri)
        on_fleet = kind == "patch" and server.config.fleet is not None
        if kind is None or (server.index.interactive is None and not on_fleet):
            return
        doc = server.workspace.get_text_document(uri)
        version, text = doc.version, doc.source
        try:
            if kind == "patch":
                diagnostics = await self._check_patch(uri, text)
            elif kind == "c":
                diagnostics = await self._check_source(uri, text)
            else:
                return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("checking %s failed", uri)
            server.show_message(
                f"klp-lsp: checking {uri} failed: {type(e).__name__}: {e}",
                types.MessageType.Error,
            )
            return
        if diagnostics is None or uri not in server.open_documents:
            return
        if server.workspace.get_text_document(uri).version != version:
            return
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    async def _check_patch(self, uri: str, text: str) -> list[types.Diagnostic] | None:
        source_root = self.server.source_root()
        name = patch_display_name(uri)
        if self.server.config.fleet is not None:
            result = await self._check_on_fleet(name, text)
        else:
            result = await self.server.index.run_check(
                lambda checker: checker.check_patches([(name, text)], source_root)
            )
        if result is None:
            return None
        lines = text.splitlines()

        def place(f: Finding) -> types.Range:
            line = (f.patch_line or 1) - 1
            line = min(max(line, 0), max(len(lines) - 1, 0))
            content = lines[line] if lines else ""
            if f.function:
                start, end = word_range(content, f.function)
                return convert.line_range(line, start, end)
            return convert.line_range(line, 0, len(content))

        return self._diagnostics(result, uri, lines, place)

    def fleet_checkers(self) -> FleetCheckers | None:
        """The checkers of the `fleet` setting's kernels (made again when it changes)."""
        from klp_lsp.fleet.local import FleetCheckers

        config = self.server.config
        key = (config.fleet, config.index_dir)
        if self._fleet is not None and self._fleet[0] != key:
            # Their SQLite connections belong to the check thread: closed there.
            self.server.index.check_executor.submit(self._fleet[1].close)
            self._fleet = None
        if config.fleet is None:
            return None
        if self._fleet is None:
            self._fleet = (key, FleetCheckers(config.fleet, config.index_dir))
        return self._fleet[1]

    async def _check_on_fleet(self, name: str, text: str) -> CheckResult | None:
        """The patch on every indexed kernel of the fleet: findings say which kernels they hit."""
        from klp_lsp.fleet.results import merge_findings, merge_problems

        checkers = self.fleet_checkers()
        if checkers is None:
            return None
        check = await asyncio.wrap_future(
            self.server.index.check_executor.submit(checkers.check_patches, [(name, text)])
        )
        if check.unavailable:
            total = len(check.results) + len(check.unavailable)
            missing = "; ".join(f"{n} ({why})" for n, why in check.unavailable)
            self.server.show_message(
                f"klp-lsp: fleet {checkers.fleet.origin}: {len(check.unavailable)} of {total}"
                f" kernels not checked: {missing}. Index them with `klp-lsp fleet PATCH"
                f" --kernels {checkers.fleet.origin}`",
                types.MessageType.Warning,
            )
        if not check.results:
            return None
        results = list(check.results)
        return CheckResult((), tuple(merge_findings(results)), (), tuple(merge_problems(results)))

    async def _check_source(self, uri: str, text: str) -> list[types.Diagnostic] | None:
        from klp_lsp.patch.source_map import parse_source

        root = self.server.source_root()
        rel = relative_to_root(uri_to_path(uri), root)
        if root is None or rel is None:
            return None

        def job(checker: Checker) -> CheckResult | None:
            old = pre_image(root, rel)
            if old is None or old == text:
                return None
            return checker.check_source_edit(root, rel, old, text)

        result = await self.server.index.run_check(job)
        if result is None:
            return []
        lines = text.splitlines()
        functions = parse_source(text).functions

        def place(f: Finding) -> types.Range:
            # At the edited function's name in the buffer, which is what the author looks at.
            for fn in functions:
                if f.function is not None and (
                    fn.name == f.function or f.function in fn.binary_names
                ):
                    line = fn.name_line - 1
                    start, end = word_range(lines[line] if line < len(lines) else "", fn.name)
                    return convert.line_range(line, start, end)
            line = min(max((f.source_line or 1) - 1, 0), max(len(lines) - 1, 0))
            return convert.line_range(line, 0, len(lines[line]) if lines else 0)

        return self._diagnostics(result, uri, lines, place)

    def _diagnostics(
        self,
        result: CheckResult,
        uri: str,
        lines: list[str],
        place: Callable[[Finding], types.Range],
    ) -> list[types.Diagnostic]:
        config = self.server.config
        root = self.server.source_root()
        out: list[types.Diagnostic] = []
        for f in result.findings:
            severity = config.severity(f.kind, f.severity)
            if severity is None:
                continue
            rng = place(f)
            related = functools.partial(self._related_location, uri=uri, fallback=rng, root=root)
            out.append(convert.finding_to_diagnostic(f, rng, severity, related))
        for p in result.problems:
            line = min(max((p.line or 1) - 1, 0), max(len(lines) - 1, 0))
            out.append(convert.problem_to_diagnostic(p, convert.line_range(line, 0, None)))
        return out

    def _related_location(
        self, r: Related, uri: str, fallback: types.Range, root: Path | None
    ) -> types.Location:
        source_file, source_line = r.source_file, r.source_line
        indexes = self.server.index.interactive
        if source_file is None and indexes is not None:
            # A caller or clone named only by the binary: point at its C definition.
            obj = indexes.get_object(r.object)
            if obj is not None:
                source_file, source_line = definition_site(obj, c_name(r.name))
        if source_file and root is not None:
            path = root / source_file
            if path.is_file():
                line = max((source_line or 1) - 1, 0)
                return types.Location(uri=path.as_uri(), range=convert.line_range(line, 0, 0))
        return types.Location(uri=uri, range=fallback)


def register(server: KlpServer) -> None:
    scheduler = DiagnosticsScheduler(server)
    server.index.on_ready(scheduler.refresh_all)
    server.on_config_change(scheduler.refresh_all)

    def maybe_index_first(uri: str) -> None:
        # A document opened while the whole kernel is being indexed: index its CUs first.
        index = server.index
        if index.complete or index.interactive is not None or index.status.state != "building":
            return
        names = open_cu_names(server)
        if names and not set(names) <= set(index.first_cus or ()):
            index.start(server.config, names)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @server.guard("didOpen")
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        kind = document_kind(doc.uri, doc.language_id)
        if kind == "other":
            return
        server.open_documents[doc.uri] = kind
        maybe_index_first(doc.uri)
        scheduler.schedule(doc.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @server.guard("didChange")
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        if params.text_document.uri in server.open_documents:
            scheduler.schedule(params.text_document.uri, DEBOUNCE)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @server.guard("didSave")
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        if params.text_document.uri in server.open_documents:
            scheduler.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @server.guard("didClose")
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        if server.open_documents.pop(params.text_document.uri, None) is not None:
            scheduler.close(params.text_document.uri)
