"""Code actions on a patch document: generate the livepatch module (after the user confirms),
its skeleton, and the replace set.

The skeleton and the replace set are text for the client to open. "Generate livepatch module"
writes a directory, and only once the user has confirmed it in a `window/showMessageRequest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from klp_lsp.lsp.convert import SHOW_REPLACE_SET
from klp_lsp.lsp.documents import document_kind

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer

GENERATE_MODULE = "klp-lsp.generateModule"
GENERATE_SKELETON = "klp-lsp.generateSkeleton"


def register(server: KlpServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Source]),
    )
    @server.guard("codeAction", default=None)
    def code_action(
        params: types.CodeActionParams,
    ) -> list[types.CodeAction | types.Command] | None:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        if document_kind(uri, doc.language_id) != "patch":
            return None
        only = params.context.only
        if only and not any(
            k == types.CodeActionKind.Source or str(k).startswith("source") for k in only
        ):
            return None
        args = [{"uri": uri}]
        commands = [
            types.Command(
                title="Generate livepatch module",
                command=GENERATE_MODULE,
                arguments=args,
            ),
            types.Command(
                title="Generate livepatch module skeleton",
                command=GENERATE_SKELETON,
                arguments=args,
            ),
            types.Command(title="Show replace set", command=SHOW_REPLACE_SET, arguments=args),
        ]
        td = server.client_capabilities.text_document
        if (
            td is None
            or td.code_action is None
            or td.code_action.code_action_literal_support is None
        ):
            # Clients without CodeAction literals (Neovim 0.7 announces none) take commands.
            return list(commands)
        return [
            types.CodeAction(title=c.title, kind=types.CodeActionKind.Source, command=c)
            for c in commands
        ]
