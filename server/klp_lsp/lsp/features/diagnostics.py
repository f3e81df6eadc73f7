"""Push diagnostics: the findings of `check` on patch documents and on edited C files.

Checks run on the check thread (see `indexing.py`), debounced while typing; a result is
published only if its document is still open and unchanged since the check started, and kept in
`server.checked` for the lenses, hovers and outline of the same version. On a patch, a changed
function without findings gets a hint, so "checked, nothing to worry about" shows too. With the
`compileCheck` setting, the touched objects are then compiled before and after the change on a
compile thread (`build/compile_check.py`), and the diagnostics are published again with what
the compiler showed; a newer edit drops that result.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp import convert
from klp_lsp.lsp.checked import Checked, Placed
from klp_lsp.lsp.documents import (
    document_kind,
    pre_image,
    relative_to_root,
    uri_to_path,
    word_range,
)
from klp_lsp.lsp.features.call_hierarchy import c_name, definition_site
from klp_lsp.lsp.features.code_lens import refresh_code_lenses
from klp_lsp.model import CheckResult, Finding, Related

if TYPE_CHECKING:
    from klp_lsp.build.compile_check import CompilePlan
    from klp_lsp.build.tree import BuildTree
    from klp_lsp.fleet.local import FleetCheckers
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.check import Checker

# How to turn a check's result into the document's diagnostics and the findings as placed.
_ToDiagnostics = Callable[[CheckResult], tuple[list[types.Diagnostic], tuple["Placed", ...]]]
# A check's result, how to turn it into diagnostics, and what to compile.
_Checked = tuple[CheckResult, _ToDiagnostics, "CompilePlan | None"]

log = logging.getLogger(__name__)

# Seconds to wait after the last keystroke before checking again.
DEBOUNCE = 0.3


def patch_display_name(uri: str) -> str:
    """The name a patch is checked under: its path, or the URI of an untitled buffer."""
    path = uri_to_path(uri)
    return str(path) if path is not None else uri


def open_cu_names(server: KlpServer) -> list[str] | None:
    """The compile units the open documents touch (indexed first); None when none is known."""
    root = server.config.source_root
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
            rel = relative_to_root(uri_to_path(uri), root)
            if rel is not None:
                names.append(rel)
    return list(dict.fromkeys(names)) or None


class DiagnosticsScheduler:
    """One pending check per open document; newer edits cancel older checks."""

    def __init__(self, server: KlpServer) -> None:
        self.server = server
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Compiling never runs on the check thread: hovers and other checks go on meanwhile.
        self._compile_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="klp-cc")
        self._tree: tuple[Path, BuildTree] | None = None
        self._reported: set[str] = set()
        # The `fleet` setting's checkers, with the (fleet, index dir) they were made for.
        self._fleet: tuple[tuple[object, ...], FleetCheckers] | None = None

    def _build_tree(self) -> BuildTree | None:
        """The configured build tree when `compileCheck` is on (loaded once per path)."""
        config = self.server.config
        if not config.compile_check or config.build_tree is None:
            return None
        if self._tree is None or self._tree[0] != config.build_tree:
            from klp_lsp.build.tree import BuildTree

            self._tree = (config.build_tree, BuildTree.load(config.build_tree))
        return self._tree[1]

    def _plan(self, checker: Checker, result: CheckResult) -> CompilePlan | None:
        """On the check thread: what to compile for the check just made (needs the index)."""
        from klp_lsp.build.compile_check import plan_compile

        tree = self._build_tree()
        if tree is None or (not result.changed_functions and not checker.changes):
            return None
        plan = plan_compile(checker.indexes, tree, checker.images, checker.changes, result)
        return plan if plan.targets else None

    def _report_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            self.server.show_message(message, types.MessageType.Warning)

    def schedule(self, uri: str, delay: float) -> None:
        old = self._tasks.pop(uri, None)
        if old is not None:
            old.cancel()
        task = asyncio.ensure_future(self._run(uri, delay))
        self._tasks[uri] = task
        self.server.checked.running(uri, task)
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
        self.server.checked.forget(uri)
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
        version, text = doc.version or 0, doc.source
        try:
            if kind == "patch":
                checked = await self._check_patch(uri, text)
            elif kind == "c":
                checked = await self._check_source(uri, text)
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
        if checked is None:
            return
        result, to_diagnostics, plan = checked
        if not self._publish(uri, version, kind, result, to_diagnostics) or plan is None:
            return
        await self._compile(uri, version, kind, result, to_diagnostics, plan)

    def _publish(
        self, uri: str, version: int, kind: str, result: CheckResult, to_diagnostics: _ToDiagnostics
    ) -> bool:
        """Publish, and keep for the lenses, hovers and outline, if the document is still open
        at `version`; False when it is not."""
        server = self.server
        if uri not in server.open_documents:
            return False
        if (server.workspace.get_text_document(uri).version or 0) != version:
            return False
        diagnostics, placed = to_diagnostics(result)
        server.checked.store(uri, Checked(version, result, placed))
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )
        if kind == "patch":
            # The patch's lenses come from this result: clients that can, ask for them again.
            refresh_code_lenses(server)
        return True

    async def _compile(
        self,
        uri: str,
        version: int,
        kind: str,
        result: CheckResult,
        to_diagnostics: _ToDiagnostics,
        plan: CompilePlan,
    ) -> None:
        """Compile in the background and publish the diagnostics again with the compiler's."""
        from klp_lsp.build.compile_check import CompileChecker
        from klp_lsp.errors import KlpError

        tree = self._build_tree()
        if tree is None:
            return
        stop = threading.Event()
        checker = CompileChecker(tree, jobs=1)
        future = self._compile_executor.submit(checker.run, plan, result, stop.is_set)
        try:
            merged = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stop.set()  # A newer edit: the compile thread stops between its steps.
            raise
        except KlpError as e:
            log.warning("compile check of %s failed: %s", uri, e)
            self._report_once(f"klp-lsp: compile check: {e}")
            return
        except Exception as e:
            log.exception("compile check of %s failed", uri)
            self._report_once(f"klp-lsp: compile check failed: {type(e).__name__}: {e}")
            return
        self._publish(uri, version, kind, merged, to_diagnostics)

    async def _check_patch(self, uri: str, text: str) -> _Checked | None:
        source_root = self.server.source_root()
        name = patch_display_name(uri)
        if self.server.config.fleet is not None:
            on_fleet = await self._check_on_fleet(name, text)
            got: tuple[CheckResult, CompilePlan | None] | None = (
                None if on_fleet is None else (on_fleet, None)
            )
        else:

            def job(checker: Checker) -> tuple[CheckResult, CompilePlan | None]:
                result = checker.check_patches([(name, text)], source_root)
                return result, self._plan_safely(checker, result)

            got = await self.server.index.run_check(job)
        if got is None:
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

        def to_diagnostics(
            result: CheckResult,
        ) -> tuple[list[types.Diagnostic], tuple[Placed, ...]]:
            diagnostics, placed = self._diagnostics(result, uri, lines, place)
            # A hint on each changed function without findings: checked, nothing to worry about.
            with_findings = {(p.finding.function, p.finding.object) for p in placed}
            seen: set[tuple[str, str | None]] = set()
            for file in result.files:
                for hunk in file.hunks:
                    for impact in hunk.functions:
                        key = (impact.name, impact.object)
                        if key in with_findings or key in seen or not impact.patch_lines:
                            continue
                        seen.add(key)
                        line = min(impact.patch_lines[0] - 1, max(len(lines) - 1, 0))
                        rng = convert.line_range(line, 0, len(lines[line]) if lines else 0)
                        diagnostics.append(convert.impact_to_diagnostic(impact, rng))
            return diagnostics, placed

        return got[0], to_diagnostics, got[1]

    def _plan_safely(self, checker: Checker, result: CheckResult) -> CompilePlan | None:
        """`_plan`, with a failure reported once and the first diagnostics kept."""
        from klp_lsp.errors import KlpError

        try:
            return self._plan(checker, result)
        except KlpError as e:
            message = f"klp-lsp: compile check: {e}"
            self.server.post(lambda: self._report_once(message))
        except Exception:
            log.exception("planning the compile check failed")
        return None

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

    async def _check_source(self, uri: str, text: str) -> _Checked | None:
        from klp_lsp.patch.source_map import parse_source

        root = self.server.source_root()
        rel = relative_to_root(uri_to_path(uri), root)
        if root is None or rel is None:
            return None

        def job(checker: Checker) -> tuple[CheckResult, CompilePlan | None] | None:
            old = pre_image(root, rel)
            if old is None or old == text:
                return None
            result = checker.check_source_edit(root, rel, old, text)
            return result, self._plan_safely(checker, result)

        got = await self.server.index.run_check(job)
        lines = text.splitlines()
        if got is None:
            return CheckResult((), (), (), ()), lambda r: ([], ()), None
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

        return got[0], lambda r: self._diagnostics(r, uri, lines, place), got[1]

    def _diagnostics(
        self,
        result: CheckResult,
        uri: str,
        lines: list[str],
        place: Callable[[Finding], types.Range],
    ) -> tuple[list[types.Diagnostic], tuple[Placed, ...]]:
        config = self.server.config
        root = self.server.source_root()
        out: list[types.Diagnostic] = []
        placed: list[Placed] = []
        for f in result.findings:
            severity = config.severity(f.kind, f.severity)
            if severity is None:
                continue
            rng = place(f)
            related = functools.partial(self._related_location, uri=uri, fallback=rng, root=root)
            out.append(convert.finding_to_diagnostic(f, rng, severity, related))
            placed.append(Placed(f, rng, severity))
        for p in result.problems:
            line = min(max((p.line or 1) - 1, 0), max(len(lines) - 1, 0))
            out.append(convert.problem_to_diagnostic(p, convert.line_range(line, 0, None)))
        return out, tuple(placed)

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
