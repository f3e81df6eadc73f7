"""A real LSP client (pytest-lsp) driving `python -m klp_lsp serve` over stdio.

Every test runs with the VS Code and the Neovim 0.7 client-capability profiles, against the
fixture kernel (tests/fixtures/build/x86_64) indexed into a fresh temporary `indexDir`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_lsp
from lsp_support import PROFILES, SERVER, IndexStates
from lsprotocol import types
from pytest_lsp import LanguageClient


@pytest_lsp.fixture(params=PROFILES, config=SERVER)
async def client(request: pytest.FixtureRequest, lsp_client: LanguageClient) -> AsyncIterator[None]:
    states = IndexStates()

    def on_index_state(params: Any) -> None:
        states.add(params)

    lsp_client.feature("klp-lsp/indexState")(on_index_state)

    # Real clients that announce `codeLens.refreshSupport` answer this request; pytest-lsp's
    # client does not by itself.
    def on_code_lens_refresh(params: None) -> None:
        lsp_client.code_lens_refreshes += 1  # type: ignore[attr-defined]

    lsp_client.code_lens_refreshes = 0  # type: ignore[attr-defined]
    lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(on_code_lens_refresh)
    lsp_client.index_states = states  # type: ignore[attr-defined]
    lsp_client.profile = request.param  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()
