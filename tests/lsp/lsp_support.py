"""Helpers for the LSP end-to-end tests: the server command, fixture paths, waiting."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BUILD = FIXTURES / "build" / "x86_64"
KERNEL_SRC = FIXTURES / "kernel"
PATCHES = FIXTURES / "patches"

PROFILES = ["visual_studio_code", "neovim@v0.7.0"]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "server"), env.get("PYTHONPATH", "")) if p
    )
    return env


SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "klp_lsp", "serve"], server_env=server_env()
)


class IndexStates:
    """The `klp-lsp/indexState` notifications a client received, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def add(self, params: Any) -> None:
        # pygls hands unknown notifications' params over as a namedtuple.
        value = params if isinstance(params, dict) else params._asdict()
        self.seen.append(value)
        self._changed.set()

    async def wait_for(self, state: str, timeout: float = 60) -> dict[str, Any]:
        return await self.wait_for_new(state, 0, timeout)

    async def wait_for_new(self, state: str, after: int, timeout: float = 60) -> dict[str, Any]:
        """The first notification of `state` among those after the first `after` ones."""

        async def loop() -> dict[str, Any]:
            while True:
                for s in self.seen[after:]:
                    if s.get("state") == state:
                        return s
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout)


def options(index_dir: Path, **extra: Any) -> dict[str, Any]:
    """initializationOptions for the fixture kernel."""
    return {
        "binaries": [str(BUILD / "vmlinux"), str(BUILD / "demo.ko")],
        "sourceRoot": str(KERNEL_SRC),
        "indexDir": str(index_dir),
        **extra,
    }


async def start(
    client: LanguageClient, init_options: Any, *, wait: str | None = "ready"
) -> types.InitializeResult:
    """Initialize with the fixture's profile and wait for the index state `wait`."""
    profile = client.profile  # type: ignore[attr-defined]
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=pytest_lsp.client_capabilities(profile),
            initialization_options=init_options,
            root_uri=KERNEL_SRC.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=KERNEL_SRC.as_uri(), name="kernel")],
        )
    )
    if wait is not None:
        await client.index_states.wait_for(wait)  # type: ignore[attr-defined]
    return result


def open_document(
    client: LanguageClient, path: Path, language: str, text: str | None = None
) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri,
                language_id=language,
                version=1,
                text=path.read_text(encoding="utf-8") if text is None else text,
            )
        )
    )
    return uri


def position_of(path: Path, needle: str, offset: int = 0) -> types.Position:
    """The position of the first occurrence of `needle` in a file (plus `offset` columns)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        col = line.find(needle)
        if col >= 0:
            return types.Position(line=number, character=col + offset)
    raise AssertionError(f"{needle!r} not in {path}")


async def hover_text(
    client: LanguageClient, uri: str, path: Path, needle: str, offset: int = 0
) -> str | None:
    """The hover Markdown at `needle` in the document `uri` (opened from `path`), or None."""
    hover = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position_of(path, needle, offset),
        )
    )
    if hover is None:
        return None
    assert isinstance(hover.contents, types.MarkupContent)
    return hover.contents.value


async def show_report(client: LanguageClient, *arguments: Any) -> Any:
    """The result of the `klp-lsp.showFunctionReport` command with these arguments."""
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="klp-lsp.showFunctionReport", arguments=list(arguments))
    )


async def wait_for_diagnostics(client: LanguageClient, uri: str, timeout: float = 30) -> list[Any]:
    async def loop() -> list[Any]:
        while uri not in client.diagnostics:
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        return list(client.diagnostics[uri])

    return await asyncio.wait_for(loop(), timeout)
