"""The JSON-RPC protocol class of the server: pygls' own, made to answer every request.

pygls 2.1 (and its main branch, checked at e0fc705) turns a message whose params do not fit the
lsprotocol type into `JsonRpcInvalidParams` *inside* the `json.loads` object hook of its read
loop (`JsonRPCProtocol.structure_message`, `pygls/io_.py` `run_async`); the loop only logs it, so
the request's id is lost and the client waits forever. Messages that are not JSON-RPC objects
(a JSON array, a number, an object without `jsonrpc`, a wrong version, a request after
`shutdown`) are dropped the same way, and invalid JSON gets no answer either. The pygls tracker
has the symptoms but no fix: #326 ("Be less strict with wrong LSP types?", open) and #277
("Improve handling of unexpected errors", closed; PR #282 in pygls 0.13 added
`report_server_error`, which only shows a message). So this subclass answers them as JSON-RPC
2.0 section 5.1 requires:

- params that do not fit the method's type: -32602 InvalidParams, with the request's id;
- an invalid envelope (no or wrong `jsonrpc`, a method that is not a string, an id that is not
  an integer or a string, an object that is neither request nor response, a batch):
  -32600 InvalidRequest, with the id when it is a valid one, else null;
- invalid JSON: -32700 ParseError with id null (`KlpServer.report_server_error` calls
  `answer_parse_error`: the read loop hands such errors only to the server);
- a request after `shutdown`: -32600 InvalidRequest (LSP 3.17, "shutdown").

Unknown methods already get -32601 MethodNotFound from pygls, and an exception in a handler an
InternalError (klp-lsp's `guard` answers most with an empty result first). Notifications are
never answered, as JSON-RPC requires; malformed ones are logged.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol.types import EXIT
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)

_VERSION = "2.0"


def valid_id(value: object) -> bool:
    """An id a response can carry back: an integer or a string (LSP `integer | string`)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class Unanswerable:
    """A message that could not be turned into an LSP message, and the error it deserves.

    `structure_message` returns one instead of raising, so that `handle_message` still knows
    the id. `msg_id` is None when the id itself was missing or invalid (the answer then carries
    id null); `request` is False for notifications and responses, which get no answer.
    """

    __slots__ = ("code", "message", "msg_id", "request")

    def __init__(self, msg_id: Any, request: bool, code: int, message: str) -> None:
        self.msg_id = msg_id
        self.request = request
        self.code = code
        self.message = message


def _summary(e: BaseException) -> str:
    """The first line of what failed, without cattrs' exception-group tree."""
    cause = e.__cause__ or e
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return text[:200]


def _id_of(message: object) -> Any:
    """The id of anything `json.loads` made of a message (None when it has none)."""
    if isinstance(message, dict):
        return message.get("id")
    if isinstance(message, Unanswerable):
        return message.msg_id
    return getattr(message, "id", None)


class KlpProtocol(LanguageServerProtocol):
    """pygls' `LanguageServerProtocol`, answering malformed requests instead of dropping them."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Deserialise one JSON object; a malformed message becomes an `Unanswerable`."""
        if "jsonrpc" not in data:
            # A nested object, or a top-level one without `jsonrpc` (`handle_message` sees it).
            return data
        msg_id = data.get("id")
        has_id = "id" in data
        method = data.get("method")
        if data.get("jsonrpc") != _VERSION:
            return self._invalid(data, 'jsonrpc must be "2.0"')
        if "method" in data and not isinstance(method, str):
            return self._invalid(data, "method must be a string")
        if has_id and not valid_id(msg_id):
            return self._invalid(data, "id must be an integer or a string")
        if "method" not in data and "result" not in data and "error" not in data:
            return self._invalid(data, "neither a request nor a response")
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if "method" not in data:
                # A response to one of our requests that does not fit: nothing to answer.
                log.warning("dropped a malformed response to request %r: %s", msg_id, _summary(e))
                return Unanswerable(msg_id, False, JsonRpcInvalidParams.CODE, _summary(e))
            return Unanswerable(
                msg_id if has_id else None,
                has_id,
                JsonRpcInvalidParams.CODE,
                f"invalid params for {method}: {_summary(e)}",
            )

    @staticmethod
    def _invalid(data: dict[str, Any], why: str) -> Unanswerable:
        msg_id = data.get("id")
        # Only requests are answered; an object that is not a notification (it has an id, or
        # nothing says what it is) counts as one.
        request = "id" in data or "method" not in data
        return Unanswerable(
            msg_id if valid_id(msg_id) else None,
            request,
            JsonRpcInvalidRequest.CODE,
            f"invalid request: {why}",
        )

    def handle_message(self, message: Any) -> None:
        """Dispatch one message; answer the ones pygls would drop."""
        if isinstance(message, Unanswerable):
            if message.request:
                self.answer_error(message.msg_id, message.code, message.message)
            else:
                log.warning("ignored a malformed notification: %s", message.message)
            return
        if isinstance(message, list):
            # LSP has no batches (JSON-RPC 2.0 section 6 is not part of it).
            ids = [_id_of(m) for m in message]
            answered = [i for i in ids if valid_id(i)]
            for msg_id in answered or [None]:
                self.answer_error(msg_id, JsonRpcInvalidRequest.CODE, "batches are not supported")
            return
        if isinstance(message, dict) or not hasattr(message, "jsonrpc"):
            msg_id = message.get("id") if isinstance(message, dict) else None
            self.answer_error(
                msg_id if valid_id(msg_id) else None,
                JsonRpcInvalidRequest.CODE,
                "invalid request: not a JSON-RPC 2.0 message",
            )
            return
        method = getattr(message, "method", None)
        if self._shutdown and method != EXIT:
            if method is not None and hasattr(message, "id"):
                self.answer_error(
                    message.id, JsonRpcInvalidRequest.CODE, "the server is shutting down"
                )
            return
        super().handle_message(message)

    def answer_error(self, msg_id: Any, code: int, message: str) -> None:
        """Send an error response; `msg_id` None sends `"id": null`."""
        # Built by hand: lsprotocol's converter drops an `id` of None, and JSON-RPC requires
        # the member.
        self._send_data(
            {
                "jsonrpc": _VERSION,
                "id": msg_id if valid_id(msg_id) else None,
                "error": {"code": code, "message": message},
            }
        )

    def answer_parse_error(self, error: Exception) -> None:
        """Answer a message body that is not JSON (or not UTF-8) with -32700 and id null."""
        self.answer_error(None, JsonRpcParseError.CODE, f"parse error: {_summary(error)}")
