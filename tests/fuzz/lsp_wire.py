"""A raw JSON-RPC client for `klp-lsp serve` over stdio, and malformed LSP messages.

pytest-lsp's client only sends well-formed messages; the fuzz tests need to send anything
(junk params, wrong ids, invalid JSON, batches) and see, for every request, whether the server
answered. `Wire` frames and sends bytes and collects whatever comes back on a reader thread.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz_cases import BUILD, KERNEL_SRC, PATCH_BASES, ROOT, random_patch

CORE_C = KERNEL_SRC / "kernel" / "demo_core.c"
DEMO_PATCH = PATCH_BASES[0]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "server"), env.get("PYTHONPATH", "")) if p
    )
    return env


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Wire:
    """One `klp-lsp serve` process and the messages it sent back."""

    def __init__(self, index_dir: Path, log: Path | None = None) -> None:
        self.index_dir = index_dir
        self._log = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "klp_lsp", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=server_env(),
        )
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 1_000_000

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            while True:
                length = -1
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = stream.read(length)
                if len(body) < length:
                    return
                message = json.loads(body)
                self.inbox.put(message if isinstance(message, dict) else {"_invalid": message})
        except (OSError, ValueError):
            return
        finally:
            self.inbox.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_bytes(self, body: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(frame(body))
        stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(json.dumps(message).encode())

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def wait_for(self, pred: Any, timeout: float) -> dict[str, Any] | None:
        """The first message matching `pred` within `timeout` (server requests are answered)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                return None
            if message is None:
                self.inbox.put(None)  # the stream ended: tell every later waiter too
                return None
            if "method" in message and "id" in message:
                # A request from the server (workDoneProgress/create, codeLens/refresh...).
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            if pred(message):
                return message

    def request(self, method: str, params: Any, timeout: float = 30) -> dict[str, Any] | None:
        msg_id = self.new_id()
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def start(self, timeout: float = 120) -> None:
        """initialize, initialized, wait for the index, open a patch and a C file."""
        options = {
            "binaries": [str(BUILD / "x86_64" / "vmlinux"), str(BUILD / "x86_64" / "demo.ko")],
            "sourceRoot": str(KERNEL_SRC),
            "indexDir": str(self.index_dir),
        }
        params = {
            "processId": os.getpid(),
            "rootUri": KERNEL_SRC.as_uri(),
            "capabilities": {"window": {"workDoneProgress": True}},
            "initializationOptions": options,
        }
        if self.request("initialize", params, timeout) is None:
            raise RuntimeError("klp-lsp serve did not answer initialize")
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        ready = self.wait_for(
            lambda m: (
                m.get("method") == "klp-lsp/indexState"
                and m.get("params", {}).get("state") in ("ready", "error")
            ),
            timeout,
        )
        if ready is None or ready["params"]["state"] != "ready":
            raise RuntimeError(f"klp-lsp serve did not get ready: {ready}")
        for path, language in ((DEMO_PATCH, "diff"), (CORE_C, "c")):
            self.send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {
                        "textDocument": {
                            "uri": path.as_uri(),
                            "languageId": language,
                            "version": 1,
                            "text": path.read_text(encoding="utf-8"),
                        }
                    },
                }
            )

    def close(self) -> None:
        if self.alive():
            try:
                self.request("shutdown", None, timeout=5)
                self.send({"jsonrpc": "2.0", "method": "exit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not isinstance(self._log, int):
            self._log.close()


# --- malformed messages ---------------------------------------------------------------------


def _position(line: int = 40, character: int = 8) -> dict[str, int]:
    return {"line": line, "character": character}


def _doc(path: Path = CORE_C) -> dict[str, str]:
    return {"uri": path.as_uri()}


def _range() -> dict[str, Any]:
    return {"start": _position(10, 0), "end": _position(20, 0)}


def _item() -> dict[str, Any]:
    return {
        "name": "demo_lookup",
        "kind": 12,
        "uri": CORE_C.as_uri(),
        "range": _range(),
        "selectionRange": _range(),
        "data": {"name": "demo_lookup", "object": "vmlinux"},
    }


def base_messages() -> list[tuple[str, dict[str, Any] | list[Any] | None, bool]]:
    """(method, valid params, is a request) for every feature the server has."""
    patch = DEMO_PATCH.read_text(encoding="utf-8")
    return [
        ("textDocument/hover", {"textDocument": _doc(), "position": _position()}, True),
        ("textDocument/codeLens", {"textDocument": _doc()}, True),
        (
            "codeLens/resolve",
            {"range": _range(), "data": {"names": ["demo_lookup"], "uri": CORE_C.as_uri()}},
            True,
        ),
        (
            "textDocument/codeAction",
            {"textDocument": _doc(DEMO_PATCH), "range": _range(), "context": {"diagnostics": []}},
            True,
        ),
        (
            "textDocument/prepareCallHierarchy",
            {"textDocument": _doc(), "position": _position()},
            True,
        ),
        ("callHierarchy/incomingCalls", {"item": _item()}, True),
        ("callHierarchy/outgoingCalls", {"item": _item()}, True),
        ("workspace/symbol", {"query": "demo"}, True),
        (
            "workspace/executeCommand",
            {"command": "klp-lsp.showFunctionReport", "arguments": [{"name": "demo_lookup"}]},
            True,
        ),
        (
            "workspace/executeCommand",
            {"command": "klp-lsp.showReplaceSet", "arguments": [{"uri": DEMO_PATCH.as_uri()}]},
            True,
        ),
        (
            "workspace/executeCommand",
            {"command": "klp-lsp.generateSkeleton", "arguments": [{"uri": DEMO_PATCH.as_uri()}]},
            True,
        ),
        (
            "textDocument/didChange",
            {
                "textDocument": {"uri": DEMO_PATCH.as_uri(), "version": 2},
                "contentChanges": [{"text": patch}],
            },
            False,
        ),
        (
            "textDocument/didChange",
            {
                "textDocument": {"uri": CORE_C.as_uri(), "version": 2},
                "contentChanges": [{"range": _range(), "text": "x"}],
            },
            False,
        ),
        ("textDocument/didSave", {"textDocument": _doc()}, False),
        ("$/cancelRequest", {"id": 1}, False),
        ("$/setTrace", {"value": "off"}, False),
    ]


_JUNK: list[Any] = [
    None,
    -1,
    -(2**31),
    2**31,
    2**63,
    -(2**63),
    2**64,
    1.5,
    float("1e308"),
    "",
    "x" * 2000,
    "\u0000",
    "file:///etc/passwd",
    "untitled:foo",
    "file://",
    "://",
    [],
    {},
    [None],
    True,
    False,
    {"line": -5, "character": -5},
    {"uri": 7},
]
_METHODS = [
    "klp-lsp/unknown",
    "",
    "textDocument/unknown",
    "$/unknownNotification",
    "textDocument/HOVER",
    "workspace/symbol/",
    "rpc.foo",
    "initialize",
]
_IDS: list[Any] = [0, -1, 2**53, 2**70, "", "x", "é", 1.5, None, True, [], {}, [1]]
# Commands that change what the server indexes are left out: they are not malformed input, and
# each would start an indexing process.
_COMMANDS = [
    "klp-lsp.showFunctionReport",
    "klp-lsp.showReplaceSet",
    "klp-lsp.generateSkeleton",
    "klp-lsp.unknown",
    "",
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _set(value[head], rest, new, delete)
        return copy
    copy_list = list(value)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _set(value[head], rest, new, delete)
    return copy_list


@dataclass(frozen=True, slots=True)
class LspCase:
    """One message to send: its bytes, and the id a response must carry (None: no response)."""

    body: bytes
    expect: str  # "response" (with `msg_id`), "null-id" (an error with id null), "none"
    msg_id: Any
    description: str


def random_lsp_case(rng: random.Random, msg_id: int) -> LspCase:
    """A malformed (or, rarely, well-formed) message derived from one of `base_messages`."""
    method, params, is_request = rng.choice(base_messages())
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    description = method
    kind = rng.randrange(16)
    if kind <= 4:  # one leaf or subtree of params replaced by junk
        path = rng.choice(_paths(params))
        message["params"] = _set(params, path, rng.choice(_JUNK))
        description += f" params{list(path)}=junk"
    elif kind == 5:  # a key of params removed
        paths = [p for p in _paths(params) if p]
        if paths:
            path = rng.choice(paths)
            message["params"] = _set(params, path, None, delete=True)
            description += f" -params{list(path)}"
    elif kind == 6:
        message["params"] = rng.choice([None, [], "x", 0, {}, [params]])
        description += " params=wrong type"
        if message["params"] is None and rng.random() < 0.5:
            del message["params"]
    elif kind == 7:
        message["method"] = rng.choice(_METHODS)
        description = f"method {message['method']!r}"
    elif kind == 8:
        message["method"] = rng.choice(_JUNK[:10])
        description = "method of the wrong type"
    elif kind == 9 and method == "workspace/executeCommand":
        assert isinstance(params, dict)
        message["params"] = {
            "command": rng.choice(_COMMANDS),
            "arguments": rng.choice(
                [
                    [],
                    [None],
                    [1, 2],
                    ["x"],
                    [{"uri": 5}],
                    [{"name": ""}],
                    [{"uri": "file:///etc/passwd"}],
                    [{"uri": CORE_C.as_uri(), "position": "x"}],
                    [{"uri": CORE_C.as_uri(), "position": {"line": "a"}}],
                ]
            ),
        }
        description = "executeCommand with junk arguments"
    elif kind == 10:  # positions out of range
        message["params"] = {
            "textDocument": _doc(rng.choice([CORE_C, DEMO_PATCH])),
            "position": {
                "line": rng.choice([-1, 10**6, 2**31 - 1, 2**32]),
                "character": rng.choice([-1, 0, 10**6, 2**31 - 1]),
            },
        }
        message["method"] = rng.choice(["textDocument/hover", "textDocument/prepareCallHierarchy"])
        description = f"{message['method']} position out of range"
    elif kind == 11:  # a patch document with a mutated text
        text = random_patch(rng, [DEMO_PATCH.read_text(encoding="utf-8")])
        message["method"] = rng.choice(["textDocument/didOpen", "textDocument/didChange"])
        if message["method"] == "textDocument/didOpen":
            message["params"] = {
                "textDocument": {
                    "uri": f"file:///tmp/fuzz-{msg_id}.patch",
                    "languageId": "diff",
                    "version": 1,
                    "text": text,
                }
            }
        else:
            message["params"] = {
                "textDocument": {"uri": DEMO_PATCH.as_uri(), "version": msg_id},
                "contentChanges": [{"text": text}],
            }
        is_request = False
        description = f"{message['method']} with a mutated patch"
    elif kind == 12:  # the envelope
        choice = rng.randrange(3)
        if choice == 0:
            message["jsonrpc"] = rng.choice(["1.0", 2.0, None, ""])
        elif choice == 1:
            del message["jsonrpc"]
        else:
            del message["method"]
        description += " bad envelope"
    # kinds 13-15: the message as it is, to mix well-formed traffic in
    if kind == 14 and is_request:
        # an id of the wrong type: the answer must then carry id null
        bad_id = rng.choice(_IDS)
        message["id"] = bad_id
        valid = isinstance(bad_id, (int, str)) and not isinstance(bad_id, bool)
        body = json.dumps(message).encode()
        return LspCase(
            body, "response" if valid else "null-id", bad_id, f"{description} id={bad_id!r}"
        )
    if kind == 15:  # not JSON-RPC at all
        choice = rng.randrange(5)
        if choice == 0:
            body = json.dumps(message).encode()[: rng.randrange(1, 40)]
            what = "truncated JSON"
        elif choice == 1:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
            what = "random bytes"
        elif choice == 2:
            body = json.dumps(rng.choice([[], 1, "x", None, True])).encode()
            what = "a JSON value that is not an object"
        elif choice == 3:
            body = (
                b'{"jsonrpc": "2.0", "id": '
                + str(msg_id).encode()
                + b', "method": "x", "params": \xff}'
            )
            what = "invalid UTF-8"
        else:
            body = json.dumps(
                [{"jsonrpc": "2.0", "method": "workspace/symbol", "params": {"query": "x"}}]
            ).encode()
            what = "a batch"
        return LspCase(body, "null-id", None, what)
    if is_request and "method" in message:
        message["id"] = msg_id
        return LspCase(json.dumps(message).encode(), "response", msg_id, description)
    if is_request:  # the method was removed: an object with an id and nothing to do
        message["id"] = msg_id
        return LspCase(json.dumps(message).encode(), "response", msg_id, description)
    return LspCase(json.dumps(message).encode(), "none", None, description)


def run_lsp_case(wire: Wire, case: LspCase, timeout: float) -> tuple[str, str]:
    """Send one case; ("answer", detail) when the server answered as it must."""
    if not wire.alive():
        return "crash", f"server exited with {wire.proc.returncode}"
    wire.send_bytes(case.body)
    if case.expect == "response":
        got = wire.wait_for(
            lambda m: (
                "method" not in m
                and m.get("id") == case.msg_id
                and type(m.get("id")) is type(case.msg_id)
            ),
            timeout,
        )
    elif case.expect == "null-id":
        got = wire.wait_for(lambda m: "method" not in m and m.get("id", 0) is None, timeout)
    else:
        # A notification has no answer; the server must still answer the next request.
        got = wire.request("workspace/symbol", {"query": "demo"}, timeout)
    if got is None:
        return (
            ("crash", f"server exited with {wire.proc.poll()}")
            if not wire.alive()
            else (
                "hang",
                f"no response to {case.description}",
            )
        )
    if "error" in got:
        error = got["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return "bad-response", json.dumps(got)[:300]
        return "answer", f"error {error['code']}"
    if "result" not in got:
        return "bad-response", json.dumps(got)[:300]
    return "answer", "result"
