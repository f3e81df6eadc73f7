"""End-to-end: hover, code lens, call hierarchy, workspace symbols and commands on the fixtures."""

from __future__ import annotations

import re
from pathlib import Path

from lsp_support import (
    KERNEL_SRC,
    PATCHES,
    hover_text,
    open_document,
    options,
    position_of,
    show_report,
    start,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

DEMO_CORE = KERNEL_SRC / "kernel" / "demo_core.c"


async def test_hover_shows_patchability_card(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    text = await hover_text(client, uri, DEMO_CORE, "int demo_lookup(", 6)
    assert text is not None
    first = text.splitlines()[0]
    assert first.startswith("**demo_lookup** · vmlinux · kernel/demo_core.c:")
    assert "patchable" in text.splitlines()[2]
    assert "demo_lookup.part.0" in text and "inlined into 2" in text
    assert "IPA-RA" in text and "klp-lsp.showFunctionReport" in text


async def test_hover_on_inlined_function(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    text = await hover_text(client, uri, DEMO_CORE, "void demo_account(", 6)
    assert text is not None
    assert "NOT patchable" in text and "fully inlined" in text
    assert re.search(r"inlined into \d+ place\(s\): `demo_submit`", text)


async def test_hover_on_unknown_word_is_empty(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    hover = await hover_text(client, uri, DEMO_CORE, "struct demo_req", 1)
    assert hover is None


async def test_code_lens_above_each_function(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert lenses
    assert all(lens.command is None for lens in lenses)  # resolved lazily
    lookup_line = position_of(DEMO_CORE, "int demo_lookup(").line
    lens = next(x for x in lenses if x.range.start.line == lookup_line)
    resolved = await client.code_lens_resolve_async(lens)
    assert resolved.command is not None
    assert resolved.command.title == "patchable · 1 clone · inlined into 2"
    assert resolved.command.command == "klp-lsp.showFunctionReport"
    # The report is scoped to this file's definition (same-named statics elsewhere stay out).
    assert list(resolved.command.arguments or ()) == [{"name": "demo_lookup", "uri": uri}]


async def test_call_hierarchy_from_the_binary(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    items = await client.text_document_prepare_call_hierarchy_async(
        types.CallHierarchyPrepareParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position_of(DEMO_CORE, "int demo_lookup(", 6),
        )
    )
    assert items and items[0].name == "demo_lookup"
    assert items[0].uri == DEMO_CORE.as_uri()
    incoming = await client.call_hierarchy_incoming_calls_async(
        types.CallHierarchyIncomingCallsParams(item=items[0])
    )
    assert incoming is not None
    by_name = {(c.from_.name, c.from_.detail) for c in incoming}
    assert any(name == "demo_submit" and detail.startswith("inlined") for name, detail in by_name)
    assert any("clone demo_lookup.part.0" in (detail or "") for _n, detail in by_name)
    outgoing = await client.call_hierarchy_outgoing_calls_async(
        types.CallHierarchyOutgoingCallsParams(item=items[0])
    )
    assert outgoing is not None
    assert any("from clone demo_lookup.part.0" in (c.to.detail or "") for c in outgoing)


async def test_workspace_symbols(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="demo_lo"))
    assert symbols
    lookup = next(s for s in symbols if s.name == "demo_lookup")
    assert lookup.location.uri == DEMO_CORE.as_uri()  # type: ignore[union-attr]
    assert lookup.container_name == "vmlinux"  # type: ignore[union-attr]
    # Clone symbols are found too, at their C function's definition.
    part = next(s for s in symbols if s.name == "demo_lookup.part.0")
    assert part.location.uri == DEMO_CORE.as_uri()  # type: ignore[union-attr]


async def test_show_function_report_command(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    by_name = await show_report(client, {"name": "demo_lookup"})
    assert by_name.startswith("# demo_lookup")
    assert "demo_lookup.part.0.cold" in by_name
    uri = open_document(client, DEMO_CORE, "c")
    pos = position_of(DEMO_CORE, "int demo_lookup(", 6)
    by_position = await show_report(
        client, {"uri": uri, "position": {"line": pos.line, "character": pos.character}}
    )
    assert by_position == by_name
    missing = await show_report(client, {"name": "no_such_fn"})
    assert "no such function" in missing
    # A clone's name gives its C function's report, for that symbol, with its signature.
    clone = await show_report(client, {"name": "demo_req_cost.isra.0"})
    assert "for symbol `demo_req_cost.isra.0`" in clone
    assert "takes `(req: replaced) +rdi -> rax`" in clone


async def test_hover_in_a_patch(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, PATCHES / "demo.patch", "diff")
    text = await hover_text(client, uri, PATCHES / "demo.patch", "demo_lib_step(", 3)
    assert text is not None
    assert text.startswith("**demo_lib_step** · vmlinux · lib/demo_lib.c:")
    assert "rely on" in text  # its IPA-RA register dependents


async def test_reindex_command(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    states = client.index_states.seen  # type: ignore[attr-defined]
    before = len(states)
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="klp-lsp.reindex", arguments=[])
    )
    await client.index_states.wait_for_new("ready", before)  # type: ignore[attr-defined]
    assert any(s["state"] == "building" for s in states[before:])
