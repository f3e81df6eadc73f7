"""The server's indexes: built in a background thread, reported as work-done progress.

`IndexManager` owns the `Session` of the configured binaries and two `IndexSet`s over the same
files: one queried on the event loop (hover, lenses, call hierarchy, symbols) and one queried only
by the check thread (diagnostics, commands), so no SQLite connection is shared between threads
and a long check never delays a hover.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from lsprotocol import types

from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import IndexError_, KlpError
from klp_lsp.index.query import IndexSet
from klp_lsp.index.store import complete_index
from klp_lsp.lsp.config import Config
from klp_lsp.patch.includes import with_including_files
from klp_lsp.progress import Cancelled, progress_title

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from klp_lsp.index.builder import BuildResult
    from klp_lsp.lsp.server import KlpServer
    from klp_lsp.patch.check import Checker

log = logging.getLogger(__name__)

INDEX_STATE_NOTIFICATION = "klp-lsp/indexState"

State = Literal["none", "building", "ready", "error"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IndexStatus:
    """What the `klp-lsp/indexState` notification says."""

    state: State
    percent: int | None = None
    object: str | None = None
    message: str | None = None

    def to_params(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "percent": self.percent,
            "object": self.object,
            "message": self.message,
        }

    def describe(self) -> str:
        """A short sentence for hovers and lenses while no answer is possible."""
        if self.state == "building":
            pct = "" if self.percent is None else f": {self.percent}%"
            return f"klp-lsp: indexing {self.object or 'kernel'}{pct}"
        if self.state == "error":
            return f"klp-lsp: no index: {self.message or 'indexing failed'}"
        if self.state == "none":
            return f"klp-lsp: no index yet{': ' + self.message if self.message else ''}"
        return "klp-lsp: index ready"


class LspProgress:
    """A `klp_lsp.progress.Progress` that reports through `$/progress` and `klp-lsp/indexState`.

    Called from the indexing thread; everything it sends is posted to the event loop.
    """

    def __init__(self, manager: IndexManager, generation: int) -> None:
        self._manager = manager
        self._server = manager.server
        self._generation = generation
        self._token: str | None = None
        # What the editor shows instead of the builder's title (the files the user opened).
        self.title: str | None = None
        self._total = 1
        self._object = ""
        self._last_percent = -1
        self._last_time = 0.0

    def begin(self, title: str, total: int) -> None:
        title = self.title or title
        self._total = max(total, 1)
        self._object = title.removeprefix("indexing ")
        self._last_percent, self._last_time = -1, 0.0
        self._token = self._create_token()
        token = self._token
        if token is not None:
            begin = types.WorkDoneProgressBegin(
                title=f"klp-lsp: {title}", cancellable=True, percentage=0
            )
            self._server.post(lambda: self._server.work_done_progress.begin(token, begin))
        self._manager.post_status(IndexStatus("building", 0, self._object, title))

    def _create_token(self) -> str | None:
        capabilities = self._server.client_capabilities
        if capabilities.window is None or not capabilities.window.work_done_progress:
            return None
        token = f"klp-lsp-index-{uuid.uuid4()}"
        loop = self._server.loop
        if loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(
            self._server.work_done_progress.create_async(token), loop
        )
        try:
            future.result(timeout=10)
        except Exception:  # A client that refuses or never answers just gets no progress bar.
            log.warning("window/workDoneProgress/create failed", exc_info=True)
            return None
        return token

    def advance(self, done: int, message: str = "") -> None:
        percent = min(100, 100 * done // self._total)
        now = time.monotonic()
        if percent == self._last_percent or (now - self._last_time < 0.2 and done < self._total):
            return
        self._last_percent, self._last_time = percent, now
        token = self._token
        if token is not None:
            report = types.WorkDoneProgressReport(percentage=percent, message=message[:60])
            self._server.post(lambda: self._server.work_done_progress.report(token, report))
        self._manager.post_status(IndexStatus("building", percent, self._object, message[:60]))

    def end(self, message: str = "") -> None:
        token = self._token
        self._token = None
        if token is not None:
            end = types.WorkDoneProgressEnd(message=message)
            self._server.post(lambda: self._server.work_done_progress.end(token, end))

    def cancelled(self) -> bool:
        if self._generation != self._manager.generation:
            return True
        token = self._token
        if token is None:
            return False
        future = self._server.work_done_progress.tokens.get(token)
        return future is not None and future.cancelled()


class IndexManager:
    """Builds missing indexes in the background and holds the open ones."""

    def __init__(self, server: KlpServer) -> None:
        self.server = server
        self.status = IndexStatus("none")
        self.generation = 0
        self.interactive: IndexSet | None = None
        self.complete = False
        self.objects: list[str] = []
        # The compile units the running build indexes first.
        self.first_cus: list[str] | None = None
        self.check_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="klp-check")
        self._checks: IndexSet | None = None
        self._checker: Checker | None = None
        self._thread: threading.Thread | None = None
        self._child: BaseProcess | None = None
        self._on_ready: list[Callable[[], None]] = []

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the event loop whenever new indexes are opened."""
        self._on_ready.append(callback)

    # --- called on the event loop ------------------------------------------------------------

    def start(self, config: Config, cu_names: Sequence[str] | None) -> None:
        """(Re)start building and opening the indexes of `config`'s binaries.

        `cu_names` are the compile units the open documents touch: indexed first, so their
        diagnostics do not wait for the whole kernel.
        """
        self.generation += 1
        generation = self.generation
        self.first_cus = list(cu_names) if cu_names else None
        previous = self._thread
        self.complete = False
        self._set_status(IndexStatus("building", 0, None, "looking for the kernel's binaries"))
        thread = threading.Thread(
            target=self._build,
            args=(generation, config, list(cu_names) if cu_names else None, previous),
            name=f"klp-index-{generation}",
            daemon=True,
        )
        self._thread = thread
        thread.start()

    def cancel(self) -> None:
        """Stop the running build at its next step (shutdown, new settings)."""
        self.generation += 1

    def post_status(self, status: IndexStatus) -> None:
        """Set the status from any thread."""
        self.server.post(lambda: self._set_status(status))

    def _set_status(self, status: IndexStatus) -> None:
        self.status = status
        self.server.protocol.notify(INDEX_STATE_NOTIFICATION, status.to_params())

    def _opened(self, generation: int, results: list[BuildResult], complete: bool) -> None:
        if generation != self.generation:
            return
        paths = [r.index_path for r in results]
        try:
            interactive = IndexSet.open(paths)
            checks = IndexSet.open(paths)
        except KlpError as e:
            self._failed(generation, str(e))
            return
        old_interactive, old_checks = self.interactive, self._checks
        self.interactive, self._checks = interactive, checks
        self.check_executor.submit(self._new_checker, checks)
        self.objects = [r.object for r in results]
        if old_interactive is not None:
            old_interactive.close()
        if old_checks is not None:
            self.check_executor.submit(old_checks.close)
        self.complete = complete
        names = ", ".join(self.objects)
        if complete:
            self._set_status(IndexStatus("ready", 100, names, f"indexed {names}"))
        else:
            # The first compile units answer now; the rest is still to come.
            message = "the open files' compile units are indexed; indexing the rest"
            self._set_status(IndexStatus("building", None, names, message))
        for callback in self._on_ready:
            callback()

    def _failed(self, generation: int, message: str) -> None:
        if generation != self.generation:
            return
        self.server.show_message(f"klp-lsp: {message}", types.MessageType.Error)
        self._set_status(IndexStatus("error", None, None, message))

    # --- for the check thread ----------------------------------------------------------------

    def _new_checker(self, checks: IndexSet) -> None:
        """One Checker per IndexSet, reused across checks: it caches parsed source files.

        Made on the check thread, which also loads the compile-unit tables now rather than in
        the first diagnostics, and keeps the check engine's imports off the server's start.
        """
        from klp_lsp.patch.check import Checker

        if self._checks is not checks:
            return
        checker = Checker(checks)
        self._checker = checker
        checker.built_files()

    def run_check(self, fn: Callable[[Checker], T]) -> asyncio.Future[T | None]:
        """Run `fn` on the check thread with its `Checker`; resolves to None without indexes."""

        def job() -> T | None:
            checker = self._checker
            if checker is None:
                return None
            return fn(checker)

        return asyncio.wrap_future(self.check_executor.submit(job))

    def shutdown(self) -> None:
        self.cancel()
        child = self._child
        if child is not None and child.is_alive():
            child.terminate()
        if self.interactive is not None:
            self.interactive.close()
            self.interactive = None
        checks, self._checks = self._checks, None
        self._checker = None
        if checks is not None:
            self.check_executor.submit(checks.close)
        self.check_executor.shutdown(wait=False)

    # --- the indexing thread -----------------------------------------------------------------

    def _build(
        self,
        generation: int,
        config: Config,
        cu_names: list[str] | None,
        previous: threading.Thread | None,
    ) -> None:
        # Two builders must never write the same index file: wait for the cancelled one.
        if previous is not None:
            previous.join()
        if generation != self.generation:
            return
        from klp_lsp.session import Session

        try:
            session = Session(
                list(config.binaries), config.kernel_release, config.index_dir, jobs=0
            )
            files = session.binary_files()
            message = f"checking indexes of {len(files)} file(s)"
            self.post_status(IndexStatus("building", 0, files[0].name, message))
            ready = existing_indexes(files, config.index_dir)
            if ready is None:
                progress = LspProgress(self, generation)
                if cu_names:
                    # The open files by name, though a file the kernel #includes into another
                    # (kernel/sched/rt.c in build_policy.c) is indexed as that CU.
                    progress.title = progress_title("", cu_names)
                    wanted = with_including_files(cu_names, config.source_root)
                    first = self._run_child(progress, files, config, wanted)
                    progress.title = None
                    if not all(r.complete for r in first):
                        self.server.post(lambda: self._opened(generation, first, False))
                ready = self._run_child(progress, files, config, None)
            results = ready
            self.server.post(lambda: self._opened(generation, results, True))
        except Cancelled:
            self.post_status(IndexStatus("none", None, None, "indexing cancelled; run Reindex"))
        except KlpError as e:
            message = str(e)
            self.server.post(lambda: self._failed(generation, message))
        except Exception as e:
            log.exception("indexing failed")
            message = f"indexing failed: {type(e).__name__}: {e}"
            self.server.post(lambda: self._failed(generation, message))

    def _run_child(
        self,
        progress: LspProgress,
        files: list[Path],
        config: Config,
        cu_names: list[str] | None,
    ) -> list[BuildResult]:
        """Build in a child process and relay its progress; returns its build results.

        The child is started with `spawn`: this process has threads (pygls reads stdin in one),
        and a `fork` here can copy a held lock into the child (a forked worker hung in
        `sys.stdin.close()`). The child is single-threaded, so the builder's own fork-based
        process pool is safe there.
        """
        # Imported here: a warm start never builds, and start-up time counts.
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        args = (list(files), config.kernel_release, config.index_dir, cu_names, theirs)
        child = ctx.Process(target=_index_in_child, args=args, name="klp-lsp-index")
        child.start()
        theirs.close()
        self._child = child
        cancel_sent = False
        finished = False
        try:
            while True:
                if not cancel_sent and progress.cancelled():
                    ours.send("cancel")
                    cancel_sent = True
                if not ours.poll(0.2):
                    if not child.is_alive() and not ours.poll(0):
                        raise IndexError_(f"the indexing process died (exit code {child.exitcode})")
                    continue
                try:
                    message = ours.recv()
                except EOFError:
                    raise IndexError_(
                        f"the indexing process died (exit code {child.exitcode})"
                    ) from None
                kind, payload = message
                if kind == "begin":
                    progress.begin(*payload)
                elif kind == "advance":
                    progress.advance(*payload)
                elif kind == "end":
                    progress.end(*payload)
                elif kind == "done":
                    finished = True
                    return list(payload)
                elif kind == "cancelled":
                    raise Cancelled(payload)
                elif kind == "error":
                    raise IndexError_(payload)
                else:
                    log.error("indexing process failed:\n%s", payload)
                    raise IndexError_(f"indexing failed: {payload.splitlines()[-1]}")
        finally:
            if not finished:
                # A cancelled, failed or dead child: the progress the client shows ends too.
                progress.end("cancelled" if cancel_sent else "stopped")
            ours.close()
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
            self._child = None


class _PipeProgress:
    """The child's side of `LspProgress`: sends each call to the server over a pipe."""

    def __init__(self, conn: Connection, parent_pid: int) -> None:
        self._conn = conn
        self._parent = parent_pid
        self._cancelled = False

    def begin(self, title: str, total: int) -> None:
        self._conn.send(("begin", (title, total)))

    def advance(self, done: int, message: str = "") -> None:
        self._conn.send(("advance", (done, message)))

    def end(self, message: str = "") -> None:
        self._conn.send(("end", (message,)))

    def cancelled(self) -> bool:
        # A server that went away (its editor closed) cancels too.
        if os.getppid() != self._parent:
            return True
        while not self._cancelled and self._conn.poll(0):
            self._cancelled = self._conn.recv() == "cancel"
        return self._cancelled


def _index_in_child(
    files: list[Path],
    kernel: str | None,
    index_dir: Path,
    cu_names: list[str] | None,
    conn: Connection,
) -> None:
    """The indexing process: build, and report progress and the result over `conn`."""
    # stdout is the LSP stream of the server that started us: nothing may be written to it.
    os.dup2(2, 1)
    from klp_lsp.session import Session

    progress = _PipeProgress(conn, os.getppid())
    try:
        session = Session(files, kernel, index_dir, jobs=0)
        conn.send(("done", session.ensure_indexes(progress, cu_names=cu_names)))
    except Cancelled as e:
        conn.send(("cancelled", str(e)))
    except KlpError as e:
        conn.send(("error", str(e)))
    except BaseException as e:
        conn.send(("crash", f"{traceback.format_exc()}{type(e).__name__}: {e}"))
    finally:
        conn.close()


def existing_indexes(files: Sequence[Path], index_dir: Path) -> list[BuildResult] | None:
    """The build results of `files` when every one is already fully indexed, else None.

    This is the warm start: it opens each ELF only to read its build-id, so the server answers
    within a fraction of a second without starting an indexing process.
    """
    from klp_lsp.index.builder import BuildResult

    out: list[BuildResult] = []
    for path in files:
        try:
            with ElfBinary.open(path) as binary:
                build_id, name = binary.build_id, binary.object_name
        except KlpError:
            return None
        target = complete_index(index_dir, build_id)
        if target is None:
            return None
        out.append(BuildResult(path, name, build_id, target, True, True, 0.0))
    return out


def source_root_from_dwarf(indexes: IndexSet) -> Path | None:
    """The build directory that DWARF names (`DW_AT_comp_dir`), when it exists here."""
    for o in indexes.objects:
        for cu in o.cus().values():
            if cu.unit.comp_dir and Path(cu.unit.comp_dir).is_dir():
                return Path(cu.unit.comp_dir)
            break
    return None
