"""Start-up, settings and shutdown: read the settings, start indexing, react to changes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp import settings
from klp_lsp.lsp.config import describe_errors, parse_settings
from klp_lsp.lsp.documents import uri_to_path

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer

log = logging.getLogger(__name__)


def register(server: KlpServer) -> None:
    pending_errors: list[str] = []

    def apply(raw: Any) -> None:
        old_key = server.config.selection_key()
        config, errors = parse_settings(raw, server.root)
        server.config = config
        if errors:
            server.show_message(describe_errors(errors), types.MessageType.Warning)
        if server.loop is not None and config.selection_key() != old_key:
            from klp_lsp.lsp.features.diagnostics import open_cu_names

            server.index.start(config, open_cu_names(server))
        server.config_changed()

    async def pull() -> Any:
        if not server.client_supports_configuration():
            return None
        result = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=settings.SECTION)])
        )
        return result[0] if result else None

    @server.feature(types.INITIALIZE)
    @server.guard("initialize")
    def initialize(params: types.InitializeParams) -> None:
        server.loop = asyncio.get_running_loop()
        if params.workspace_folders:
            server.root = uri_to_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            server.root = uri_to_path(params.root_uri)
        elif params.root_path:
            from pathlib import Path

            server.root = Path(params.root_path)
        config, errors = parse_settings(params.initialization_options, server.root)
        server.config = config
        pending_errors.extend(errors)

    @server.feature(types.INITIALIZED)
    @server.guard("initialized")
    async def initialized(params: types.InitializedParams) -> None:
        if pending_errors:
            server.show_message(describe_errors(pending_errors), types.MessageType.Warning)
            pending_errors.clear()
        raw = await pull()
        if raw is not None:
            config, errors = parse_settings(raw, server.root)
            server.config = config
            if errors:
                server.show_message(describe_errors(errors), types.MessageType.Warning)
        from klp_lsp.lsp.features.diagnostics import open_cu_names

        server.index.start(server.config, open_cu_names(server))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    @server.guard("didChangeConfiguration")
    async def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        raw = await pull()
        if raw is None:
            raw = params.settings
        apply(raw)

    @server.feature(types.SHUTDOWN)
    @server.guard("shutdown")
    def shutdown(params: None) -> None:
        server.index.shutdown()
