"""End-to-end: what a patch shows besides its findings (code lenses, hovers anywhere on a
hunk line, the outline) and inlay hints in C files, for a patch with no findings (clean.patch,
demo_fill) and one with findings (demo.patch).

Facts from tests/fixtures/README.md: demo_fill is a plain global function with an ftrace record;
demo_account is fully inlined into demo_submit, demo_complete and demo_reset; demo_lookup has the
clone demo_lookup.part.0; demo_lib_step has no ftrace record and demo_lib_sum relies on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsp_support import (
    KERNEL_SRC,
    PATCHES,
    open_document,
    options,
    position_of,
    show_report,
    start,
    wait_for_diagnostics,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

CLEAN = PATCHES / "clean.patch"
DEMO = PATCHES / "demo.patch"
DEMO_CORE = KERNEL_SRC / "kernel" / "demo_core.c"


async def lenses(client: LanguageClient, uri: str) -> list[types.CodeLens]:
    found = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert found is not None
    return found


def titles(found: list[types.CodeLens]) -> list[tuple[int, str]]:
    return [(x.range.start.line, x.command.title if x.command else "") for x in found]


async def hover_at(client: LanguageClient, uri: str, position: types.Position) -> str | None:
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
    )
    if hover is None:
        return None
    assert isinstance(hover.contents, types.MarkupContent)
    return hover.contents.value


async def outline(client: LanguageClient, uri: str) -> list[Any]:
    """(kind, name, container) of every document symbol, parents first."""
    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert found
    out: list[Any] = []

    def walk(symbols: Any, container: str | None) -> None:
        for s in symbols:
            if isinstance(s, types.SymbolInformation):
                out.append((s.kind, s.name, s.container_name))
            else:
                out.append((s.kind, s.name, container))
                walk(s.children or (), s.name)

    walk(found, None)
    return out


def line_of(path: Path, needle: str) -> int:
    return position_of(path, needle).line


async def test_clean_patch(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, CLEAN, "diff")
    diagnostics = await wait_for_diagnostics(client, uri)
    # No findings: one hint says the function was checked and what to replace.
    [hint] = diagnostics
    changed = line_of(CLEAN, "+\t\tbuf[i] = (unsigned char)(seed + i * 11);") - 1
    assert (hint.code, hint.severity, hint.range.start) == (
        "changed-function",
        types.DiagnosticSeverity.Hint,
        types.Position(changed, 0),
    )
    found = await lenses(client, uri)
    hunk = line_of(CLEAN, "@@ -141,7 +141,7 @@")
    assert titles(found) == [
        (0, "klp-lsp: 1 changed function → 1 to replace · 0 errors · 0 warnings"),
        (hunk, "demo_fill · replace in vmlinux (sympos 0) · patchable"),
    ]
    summary, fill = found
    assert summary.command is not None and summary.command.command == "klp-lsp.showReplaceSet"
    replace = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=summary.command.command, arguments=list(summary.command.arguments or ())
        )
    )
    assert "| vmlinux | `demo_fill` | 0 |" in replace
    assert fill.command is not None
    report = await show_report(client, *(fill.command.arguments or ()))
    assert report.startswith("# demo_fill") and "**✔ patchable**" in report

    text = await hover_at(client, uri, hint.range.start)
    assert text is not None
    assert text.startswith("**demo_fill** is changed here: replace in vmlinux (sympos 0)")
    assert "**demo_fill** · vmlinux · kernel/demo_core.c:139" in text

    diff_line = line_of(CLEAN, "diff --git a/kernel/demo_core.c")
    text = await hover_at(client, uri, types.Position(diff_line, 0))
    assert text is not None
    assert text.startswith("**kernel/demo_core.c** · modified · 1 hunk · 1 changed function")
    assert "built into **vmlinux** as CU `kernel/demo_core.c`" in text
    assert "compiler: -O2, -pg -mfentry, IPA-RA off" in text

    assert await outline(client, uri) == [
        (types.SymbolKind.File, "kernel/demo_core.c", None),
        (types.SymbolKind.Namespace, "@@ -141,7 +141,7 @@", "kernel/demo_core.c"),
        (types.SymbolKind.Function, "demo_fill", "@@ -141,7 +141,7 @@"),
    ]


async def test_patch_with_findings(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO, "diff")
    diagnostics = await wait_for_diagnostics(client, uri)
    assert "changed-function" not in {d.code for d in diagnostics}
    found = await lenses(client, uri)
    assert titles(found) == [
        (0, "klp-lsp: 3 changed functions → 7 to replace · 3 errors · 3 warnings"),
        (
            line_of(DEMO, "@@ -51,7 +51,7 @@"),
            "demo_account · inlined into demo_submit, demo_complete, demo_reset"
            " → replace demo_submit, demo_complete, demo_reset",
        ),
        (
            line_of(DEMO, "@@ -123,6 +123,8 @@"),
            "demo_lookup · replace in vmlinux (sympos 0) · patchable · clone .part.0 also"
            " changed · inlined into demo_submit, demo_complete → replace demo_submit,"
            " demo_complete",
        ),
        (
            line_of(DEMO, "@@ -9,7 +9,7 @@"),
            "demo_lib_step · vmlinux (sympos 0) · NOT patchable: its CU is built without ftrace"
            " flags · 1 caller relies on its registers → replace demo_lib_sum (not patchable)",
        ),
    ]

    # At the start of the not-patchable error on demo_account's changed line (column 0, "-").
    error = next(
        d for d in diagnostics if d.code == "not-patchable" and "demo_account" in d.message
    )
    assert error.range.start.character == 0
    text = await hover_at(client, uri, error.range.start)
    assert text is not None
    findings, changed, card = text.split("\n\n---\n\n")
    assert findings.startswith("**klp-lsp findings on this line**")
    assert "✘ error [`not-patchable`]" in findings and "⚠ warning [`inlined`]" in findings
    assert changed.startswith("**demo_account** is changed here: inlined into demo_submit")
    assert card.startswith("**demo_account** · vmlinux · kernel/demo_core.c:")
    assert "NOT patchable" in card
    # The card on a function name stays.
    name = position_of(DEMO, "demo_lib_step(", 3)
    text = await hover_at(client, uri, name)
    assert text is not None and text.startswith("**demo_lib_step** · vmlinux · lib/demo_lib.c:")
    # A context line no diagnostic covers: nothing.
    assert await hover_at(client, uri, position_of(DEMO, " \tst->hits++;")) is None

    assert await outline(client, uri) == [
        (types.SymbolKind.File, "kernel/demo_core.c", None),
        (types.SymbolKind.Namespace, "@@ -51,7 +51,7 @@", "kernel/demo_core.c"),
        (types.SymbolKind.Function, "demo_account", "@@ -51,7 +51,7 @@"),
        (types.SymbolKind.Namespace, "@@ -123,6 +123,8 @@", "kernel/demo_core.c"),
        (types.SymbolKind.Function, "demo_lookup", "@@ -123,6 +123,8 @@"),
        (types.SymbolKind.File, "lib/demo_lib.c", None),
        (types.SymbolKind.Namespace, "@@ -9,7 +9,7 @@", "lib/demo_lib.c"),
        (types.SymbolKind.Function, "demo_lib_step", "@@ -9,7 +9,7 @@"),
    ]


async def test_series_hunks_that_change_no_function(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    mbox = PATCHES / "pitfalls.mbox"
    uri = open_document(client, mbox, "diff")
    await wait_for_diagnostics(client, uri)
    by_line = dict(titles(await lenses(client, uri)))
    assert by_line[line_of(mbox, "@@ -18,6 +18,7 @@ struct demo_req {")] == (
        "data only: struct demo_req"
    )
    comment = line_of(mbox, "@@ -63,7 +64,7 @@")
    assert by_line[comment] == "comment only: no code changes"
    # An mbox series: one outline entry per message, its files under it.
    symbols = await outline(client, uri)
    packages = [name for kind, name, _ in symbols if kind == types.SymbolKind.Package]
    assert len(packages) > 1 and all(name.startswith("[PATCH") for name in packages)


async def test_lenses_before_the_index_say_why(client: LanguageClient, tmp_path: Path) -> None:
    not_elf = tmp_path / "vmlinux"
    not_elf.write_text("not an ELF file")
    await start(client, options(tmp_path, binaries=[str(not_elf)]), wait="error")
    uri = open_document(client, CLEAN, "diff")
    [status] = await lenses(client, uri)
    assert status.command is not None and status.command.title.startswith("klp-lsp: no index")
    # The outline still lists files and hunks.
    assert [name for _, name, _ in await outline(client, uri)] == [
        "kernel/demo_core.c",
        "@@ -141,7 +141,7 @@",
    ]


async def inlay_hints(client: LanguageClient, uri: str) -> dict[int, str]:
    hints = await client.text_document_inlay_hint_async(
        types.InlayHintParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(0, 0), types.Position(400, 0)),
        )
    )
    return {h.position.line: str(h.label) for h in hints or ()}


async def test_inlay_hints_in_c_files(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    hints = await inlay_hints(client, uri)
    assert hints[line_of(DEMO_CORE, "int demo_lookup(")] == "inlined ×2 · .part"
    assert (
        hints[line_of(DEMO_CORE, "static noinline int demo_req_cost(")] == ".isra · not patchable"
    )
    assert hints[line_of(DEMO_CORE, "static void demo_account(")].endswith("· not patchable")
    assert hints[line_of(DEMO_CORE, "static noinline u32 demo_hash(")] == "sympos 1"
    assert line_of(DEMO_CORE, "noinline void demo_fill(") not in hints  # nothing to say
    # The hint sits right after the name.
    lookup = position_of(DEMO_CORE, "int demo_lookup(", len("int demo_lookup"))
    found = await client.text_document_inlay_hint_async(
        types.InlayHintParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(lookup.line, 0), types.Position(lookup.line + 1, 0)),
        )
    )
    assert found is not None and [h.position for h in found] == [lookup]

    changed = options(tmp_path, inlayHints=False)
    client.set_configuration(changed, section="klp-lsp")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"klp-lsp": changed})
    )

    # The setting applies once the server has pulled the new configuration.
    async def off() -> None:
        while await inlay_hints(client, uri):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(off(), 10)
