"""The klp-lsp language server: one `KlpServer`, its state, and the ordered list of features.

`build_server()` returns a fresh server with every feature registered, so tests and `serve()` get
the same thing and a reader sees all features in `FEATURES`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from klp_lsp import __version__
from klp_lsp.errors import KlpError, UsageError
from klp_lsp.lsp.checked import CheckedDocuments
from klp_lsp.lsp.config import Config
from klp_lsp.lsp.documents import DocumentKind
from klp_lsp.lsp.indexing import IndexManager, source_root_from_dwarf
from klp_lsp.lsp.protocol import KlpProtocol

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class KlpServer(LanguageServer):
    """pygls' server plus klp-lsp's state: settings, indexes, open documents."""

    protocol: KlpProtocol

    def __init__(self) -> None:
        super().__init__(
            name="klp-lsp",
            version=__version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=KlpProtocol,
        )
        self.config = Config()
        self.root: Path | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.index = IndexManager(self)
        # uri as the client spells it -> kind; diagnostics are published only for these.
        self.open_documents: dict[str, DocumentKind] = {}
        # The last check of each open document (diagnostics store it; lenses, hovers read it).
        self.checked = CheckedDocuments()
        self._config_listeners: list[Callable[[], None]] = []
        self._shown: set[str] = set()
        self._dwarf_root: tuple[int, Path | None] | None = None

    # --- threads and messages ----------------------------------------------------------------

    def post(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the event loop (from any thread); errors are logged, never raised."""

        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("error in a posted callback")

        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(run)

    def show_message(
        self, message: str, kind: types.MessageType = types.MessageType.Warning
    ) -> None:
        """`window/showMessage`, once per distinct text, so a failing feature does not spam."""
        if message in self._shown:
            return
        self._shown.add(message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def guard(self, feature: str, default: Any = None) -> Callable[[F], F]:
        """Decorate a handler: an exception is logged with its traceback, answered with
        `default`, and shown once; the server keeps running."""

        def report(e: Exception) -> None:
            log.exception("%s failed", feature)
            if isinstance(e, KlpError):
                self.show_message(f"klp-lsp: {e}", types.MessageType.Error)
            else:
                self.show_message(
                    f"klp-lsp: {feature} failed: {type(e).__name__}: {e} (see the server log)",
                    types.MessageType.Error,
                )

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    try:
                        return await fn(*args, **kwargs)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        report(e)
                        return default

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return fn(*args, **kwargs)
                except Exception as e:
                    report(e)
                    return default

            return cast(F, wrapper)

        return decorate

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls' error reporter; a message body that is not JSON gets its -32700 answer here.

        pygls' read loop hands errors of `json.loads` (JSONDecodeError, UnicodeDecodeError) only
        to this method, as `source` `JsonRpcException`, so the protocol never sees them (see
        `lsp/protocol.py`). Other errors from the same loop are not parse errors.
        """
        if source is JsonRpcException and isinstance(
            error, json.JSONDecodeError | UnicodeDecodeError
        ):
            self.protocol.answer_parse_error(error)
            return
        super().report_server_error(error, source)

    # --- settings ----------------------------------------------------------------------------

    def on_config_change(self, callback: Callable[[], None]) -> None:
        self._config_listeners.append(callback)

    def config_changed(self) -> None:
        for callback in self._config_listeners:
            callback()

    def source_root(self) -> Path | None:
        """`sourceRoot`, else the build directory DWARF names, when it exists here."""
        if self.config.source_root is not None:
            return self.config.source_root
        indexes = self.index.interactive
        if indexes is None:
            return None
        if self._dwarf_root is None or self._dwarf_root[0] != id(indexes):
            self._dwarf_root = (id(indexes), source_root_from_dwarf(indexes))
        return self._dwarf_root[1]

    def client_supports_configuration(self) -> bool:
        ws = self.client_capabilities.workspace
        return bool(ws is not None and ws.configuration)


def _features() -> list[Callable[[KlpServer], None]]:
    # Imported here: each feature module imports `KlpServer` from this one.
    from klp_lsp.lsp.features import (
        call_hierarchy,
        code_actions,
        code_lens,
        commands,
        diagnostics,
        document_symbols,
        hover,
        inlay_hints,
        lifecycle,
        symbols,
    )

    # The order is the order of registration; lifecycle first since others rely on its state.
    return [
        lifecycle.register,
        diagnostics.register,
        hover.register,
        code_lens.register,
        document_symbols.register,
        inlay_hints.register,
        call_hierarchy.register,
        code_actions.register,
        symbols.register,
        commands.register,
    ]


def build_server() -> KlpServer:
    """A fresh server with every feature registered."""
    server = KlpServer()
    for register in _features():
        register(server)
    return server


def _parse_tcp(tcp: str) -> tuple[str, int]:
    host, sep, port = tcp.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--tcp {tcp}: expected HOST:PORT, e.g. 127.0.0.1:2087")
    return host or "127.0.0.1", int(port)


def serve(tcp: str | None, log_file: Path | None) -> int:
    """Run the server on stdio (or TCP) until the client exits; the `serve` command."""
    address = _parse_tcp(tcp) if tcp else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # pygls logs every message at INFO; keep the log to what klp-lsp says.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server()
    if address is None:
        server.start_io()
    else:
        server.start_tcp(*address)
    return 0
