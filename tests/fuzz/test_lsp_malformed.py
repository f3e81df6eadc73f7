"""Each kind of malformed message to a real `klp-lsp serve`, and the exact answer it must get.

JSON-RPC 2.0 section 5.1: invalid JSON -32700 with id null; not a valid request object -32600
(with the id when it is a valid one, else null); params that do not fit -32602; an unknown method
-32601. A notification is never answered, but must leave the server answering. LSP 3.17: after
`shutdown`, requests get -32600 and `exit` ends the process with status 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lsp_wire import CORE_C, Wire

_WAIT = 30.0


def _answer(wire: Wire, body: bytes | dict[str, Any], msg_id: Any) -> dict[str, Any]:
    wire.send_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    got = wire.wait_for(lambda m: "method" not in m and m.get("id", 0) == msg_id, _WAIT)
    assert got is not None, f"no response with id {msg_id!r} to {body!r}"
    assert got["jsonrpc"] == "2.0" and "id" in got
    return got


def _code(got: dict[str, Any]) -> int | None:
    return got["error"]["code"] if "error" in got else None


def _hover(msg_id: Any, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/hover", "params": params}


_GOOD_HOVER = {"textDocument": {"uri": CORE_C.as_uri()}, "position": {"line": 40, "character": 8}}


@pytest.mark.parametrize(
    ("body", "msg_id", "code"),
    [
        # Params that do not fit the method's type: InvalidParams with the request's id.
        (_hover(1, None), 1, -32602),
        (_hover(2, {"textDocument": {"uri": CORE_C.as_uri()}}), 2, -32602),
        (_hover(3, {**_GOOD_HOVER, "position": {"line": -1, "character": 0}}), 3, -32602),
        (_hover("s4", {**_GOOD_HOVER, "position": {"line": "x", "character": 0}}), "s4", -32602),
        (
            {"jsonrpc": "2.0", "id": 5, "method": "codeLens/resolve", "params": {"data": [1]}},
            5,
            -32602,
        ),
        (
            {"jsonrpc": "2.0", "id": 6, "method": "callHierarchy/incomingCalls", "params": {}},
            6,
            -32602,
        ),
        # Unknown methods.
        ({"jsonrpc": "2.0", "id": 7, "method": "klp-lsp/nothing", "params": {}}, 7, -32601),
        # Envelopes that are not a valid request: InvalidRequest, with the id when valid.
        ({"jsonrpc": "2.0", "id": 8, "method": 42, "params": {}}, 8, -32600),
        ({"jsonrpc": "1.0", "id": 9, "method": "workspace/symbol", "params": {}}, 9, -32600),
        ({"id": 10, "method": "workspace/symbol", "params": {"query": ""}}, 10, -32600),
        ({"jsonrpc": "2.0", "id": 11}, 11, -32600),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "workspace/symbol", "params": {}}, None, -32600),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "workspace/symbol"}, None, -32600),
        ({"jsonrpc": "2.0", "id": True, "method": "workspace/symbol"}, None, -32600),
        (b"[]", None, -32600),
        (b"42", None, -32600),
        (b'"hello"', None, -32600),
        (b"null", None, -32600),
        (
            json.dumps([{"jsonrpc": "2.0", "id": 12, "method": "workspace/symbol"}]).encode(),
            12,
            -32600,
        ),
        # Not JSON at all: ParseError with id null.
        (b'{"jsonrpc": "2.0", "id": 13, "method": ', None, -32700),
        (b'{"jsonrpc": "2.0", "id": 14, "method": "x", "params": \xff}', None, -32700),
        (b"\x00\x01\x02", None, -32700),
    ],
)
def test_malformed_request_gets_its_error(wire: Wire, body: Any, msg_id: Any, code: int) -> None:
    got = _answer(wire, body, msg_id)
    assert _code(got) == code, got


def test_a_well_formed_request_still_gets_a_result(wire: Wire) -> None:
    got = _answer(wire, _hover(20, _GOOD_HOVER), 20)
    assert "result" in got


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": None},
        {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": 1}},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": [1]}},
        {"jsonrpc": "2.0", "method": "klp-lsp/unknownNotification", "params": {}},
        {"jsonrpc": "3.0", "method": "initialized"},
    ],
)
def test_malformed_notification_leaves_the_server_answering(wire: Wire, body: Any) -> None:
    wire.send(body)
    got = wire.request("workspace/symbol", {"query": "demo_lookup"}, _WAIT)
    assert got is not None and "result" in got, got


def test_requests_after_shutdown_are_refused_and_exit_ends_the_server(
    fixture_index_dir: Path,
) -> None:
    w = Wire(fixture_index_dir)
    try:
        w.start()
        shutdown = w.request("shutdown", None, _WAIT)
        assert shutdown is not None and shutdown["result"] is None
        got = _answer(w, _hover(30, _GOOD_HOVER), 30)
        assert _code(got) == -32600, got
        w.send({"jsonrpc": "2.0", "method": "exit"})
        assert w.proc.wait(timeout=_WAIT) == 0
    finally:
        w.close()


def test_patch_document_with_a_line_of_1_mb_gets_a_diagnostic(wire: Wire) -> None:
    """The editor's limit is the command line's: the patch is not checked, and says why."""
    from lsp_wire import DEMO_PATCH

    lines = DEMO_PATCH.read_text().splitlines(keepends=True)
    lines.insert(20, "+" + "x" * (1 << 20) + "\n")
    uri = "file:///tmp/klp-lsp-long-line.patch"
    wire.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {
                    "uri": uri,
                    "languageId": "diff",
                    "version": 1,
                    "text": "".join(lines),
                }
            },
        }
    )
    got = wire.wait_for(
        lambda m: (
            m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
        ),
        _WAIT,
    )
    assert got is not None
    messages = [d["message"] for d in got["params"]["diagnostics"]]
    assert any("characters long" in m and "65536" in m for m in messages), messages
    assert got["params"]["diagnostics"][0]["range"]["start"]["line"] == 20
    assert wire.request("workspace/symbol", {"query": "demo"}, _WAIT) is not None
