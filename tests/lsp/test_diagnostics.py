"""End-to-end: diagnostics on patches and edited C files, code actions, settings, progress."""

from __future__ import annotations

import ast
import asyncio
import time
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
    wait_for_diagnostics,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

DEMO_PATCH = PATCHES / "demo.patch"
DEMO_CORE = KERNEL_SRC / "kernel" / "demo_core.c"


def codes(diagnostics: list[types.Diagnostic]) -> set[str]:
    return {str(d.code) for d in diagnostics}


async def test_patch_diagnostics(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_PATCH, "diff")
    diagnostics = await wait_for_diagnostics(client, uri)
    assert {"register-dependents", "not-patchable", "inlined", "has-clones"} <= codes(diagnostics)
    deps = next(d for d in diagnostics if d.code == "register-dependents")
    lines = DEMO_PATCH.read_text().splitlines()
    assert lines[deps.range.start.line] == "-\treturn (x ^ (x >> 7)) + 0x9e37;"
    assert deps.severity == types.DiagnosticSeverity.Error
    assert deps.source == "klp-lsp"
    assert deps.code_description is not None
    assert deps.code_description.href.endswith("docs/findings/register-dependents.md")
    assert deps.related_information
    related = deps.related_information[0]
    assert "demo_lib_sum" in related.message
    assert related.location.uri == (KERNEL_SRC / "lib" / "demo_lib.c").as_uri()


async def test_not_a_patch_says_so(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    bad = "--- a/lib/demo_lib.c\n+++ b/lib/demo_lib.c\n@@ -1,3 +1,3 @@\n garbage\n"
    uri = open_document(client, tmp_path / "bad.patch", "diff", text=bad)
    diagnostics = await wait_for_diagnostics(client, uri)
    assert diagnostics and all(d.code == "input-problem" for d in diagnostics)
    assert all(d.severity == types.DiagnosticSeverity.Error for d in diagnostics)


async def test_edits_are_rechecked_and_close_clears(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_PATCH, "diff")
    first = await wait_for_diagnostics(client, uri)
    assert "register-dependents" in codes(first)
    # Drop the lib/demo_lib.c part of the patch: its finding must go away.
    text = DEMO_PATCH.read_text()
    cut = text[: text.index("diff --git a/lib/demo_lib.c")]
    del client.diagnostics[uri]
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=cut)],
        )
    )
    second = await wait_for_diagnostics(client, uri)
    assert "register-dependents" not in codes(second) and "inlined" in codes(second)
    del client.diagnostics[uri]
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert await wait_for_diagnostics(client, uri) == []


async def test_edited_c_file_diagnostics(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    text = DEMO_CORE.read_text()
    edited = text.replace("\tif (!req)\n\t\treturn 0;\n", "\tif (!req)\n\t\treturn -1;\n", 1)
    assert edited != text
    uri = open_document(client, DEMO_CORE, "c", text=edited)
    diagnostics = await wait_for_diagnostics(client, uri)
    lookup = [d for d in diagnostics if (d.data or {}).get("function") == "demo_lookup"]
    assert {"inlined", "has-clones"} <= codes(lookup)
    name = position_of(DEMO_CORE, "int demo_lookup(", 4)
    assert all(d.range.start == name for d in lookup)


async def test_unchanged_c_file_has_no_diagnostics(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_CORE, "c")
    assert await wait_for_diagnostics(client, uri) == []


async def test_severity_overrides(client: LanguageClient, tmp_path: Path) -> None:
    overrides = {"has-clones": "off", "inlined": "hint"}
    await start(client, options(tmp_path, severityOverrides=overrides))
    uri = open_document(client, DEMO_PATCH, "diff")
    diagnostics = await wait_for_diagnostics(client, uri)
    assert "has-clones" not in codes(diagnostics)
    inlined = [d for d in diagnostics if d.code == "inlined"]
    assert inlined and all(d.severity == types.DiagnosticSeverity.Hint for d in inlined)


async def test_did_change_configuration(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_PATCH, "diff")
    assert "has-clones" in codes(await wait_for_diagnostics(client, uri))
    changed = options(tmp_path, severityOverrides={"has-clones": "off"})
    client.set_configuration(changed, section="klp-lsp")
    del client.diagnostics[uri]
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"klp-lsp": changed})
    )
    assert "has-clones" not in codes(await wait_for_diagnostics(client, uri))


async def test_code_actions_and_their_commands(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    uri = open_document(client, DEMO_PATCH, "diff")
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(0, 0), types.Position(0, 0)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions is not None
    # CodeAction literals for VS Code, plain commands for Neovim 0.7 (no literal support).
    # pytest-lsp's client structures both as `Command`; for a literal, its `command` field then
    # holds the repr of the nested command object.
    commands = []
    for a in actions:
        assert isinstance(a, types.Command)
        if a.command.startswith("{"):
            nested = ast.literal_eval(a.command)
            a = types.Command(
                title=nested["title"], command=nested["command"], arguments=nested["arguments"]
            )
        commands.append(a)
    by_title = {c.title: c for c in commands}
    assert set(by_title) == {
        "Generate livepatch module",
        "Generate livepatch module skeleton",
        "Show replace set",
    }
    skeleton_cmd = by_title["Generate livepatch module skeleton"]
    assert skeleton_cmd is not None
    skeleton = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=skeleton_cmd.command, arguments=list(skeleton_cmd.arguments or ())
        )
    )
    content = skeleton["content"]
    assert "struct klp_func" in content and "demo_lookup" in content
    assert "demo.patch" in content
    replace = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="klp-lsp.showReplaceSet", arguments=[{"uri": uri}])
    )
    assert "| vmlinux | `demo_submit` |" in replace


async def test_wrong_setting_gives_one_message(client: LanguageClient, tmp_path: Path) -> None:
    bad = options(tmp_path, severityOverrides={"inlined": "loud"}, colour="blue")
    await start(client, bad)
    wrong = [m for m in client.messages if "wrong settings" in m.message]
    assert len(wrong) == 1
    assert "severityOverrides.inlined" in wrong[0].message and "colour" in wrong[0].message
    # The rest of the settings still apply: the fixture kernel is indexed and answers.
    report = await show_report(client, {"name": "demo_lookup"})
    assert report.startswith("# demo_lookup")


async def test_indexing_reports_progress(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    states = client.index_states.seen  # type: ignore[attr-defined]
    assert states[-1]["state"] == "ready"
    assert any(s["state"] == "building" and s["object"] == "vmlinux" for s in states)
    kinds = [type(v).__name__ for reports in client.progress_reports.values() for v in reports]
    assert "WorkDoneProgressBegin" in kinds and "WorkDoneProgressEnd" in kinds
    begin = next(
        v
        for reports in client.progress_reports.values()
        for v in reports
        if isinstance(v, types.WorkDoneProgressBegin)
    )
    assert begin.cancellable and begin.title.startswith("klp-lsp: indexing")
    # Every progress the client was shown has ended.
    for token, reports in client.progress_reports.items():
        assert isinstance(reports[-1], types.WorkDoneProgressEnd), token


async def test_a_restarted_build_ends_its_progress(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path), wait="building")
    # Rebuild while the first build runs: the first is cancelled (or has just finished).
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="klp-lsp.reindex", arguments=[])
    )
    # The new build joins the cancelled one first: its "ready" comes after all the old one said.
    states = client.index_states  # type: ignore[attr-defined]
    await states.wait_for_new("ready", len(states.seen))
    assert states.seen[-1]["state"] == "ready"
    assert client.progress_reports
    for token, reports in client.progress_reports.items():
        assert isinstance(reports[-1], types.WorkDoneProgressEnd), token


async def test_no_index_hover_says_why(client: LanguageClient, tmp_path: Path) -> None:
    not_elf = tmp_path / "vmlinux"
    not_elf.write_text("not an ELF file")
    await start(client, options(tmp_path, binaries=[str(not_elf)]), wait="error")
    assert any("vmlinux" in m.message for m in client.messages), client.messages
    uri = open_document(client, DEMO_CORE, "c")
    hover = await hover_text(client, uri, DEMO_CORE, "int demo_lookup(", 6)
    assert hover is not None
    assert hover.startswith("klp-lsp: no index")


async def test_bad_command_arguments_do_not_kill_the_server(
    client: LanguageClient, tmp_path: Path
) -> None:
    await start(client, options(tmp_path))
    result = await show_report(client, "a", "b")
    assert result == ""
    assert any("arguments must be one object" in m.message for m in client.messages)
    again = await show_report(client, {"name": "demo_lookup"})
    assert again.startswith("# demo_lookup")


async def test_large_patch_stays_responsive(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    # The demo patch 400 times as one mbox series: 1,200 hunks.
    series = "\n".join([DEMO_PATCH.read_text()] * 400)
    uri = open_document(client, tmp_path / "big.patch", "diff", text=series)
    core = open_document(client, DEMO_CORE, "c")
    await asyncio.sleep(0.05)
    started = time.monotonic()
    hover = await hover_text(client, core, DEMO_CORE, "int demo_lookup(", 6)
    assert hover is not None and time.monotonic() - started < 1.0
    diagnostics = await wait_for_diagnostics(client, uri, timeout=120)
    assert "register-dependents" in codes(diagnostics)


async def test_generate_module_writes_only_after_confirmation(
    client: LanguageClient, tmp_path: Path
) -> None:
    """ "Generate livepatch module" asks with window/showMessageRequest; Cancel writes nothing."""
    answers: list[str] = []
    asked: list[types.ShowMessageRequestParams] = []

    def on_request(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
        asked.append(params)
        return types.MessageActionItem(title=answers.pop(0)) if answers else None

    client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(on_request)
    await start(client, options(tmp_path / "index"))
    uri = open_document(client, PATCHES / "generate.patch", "diff")
    outdir = tmp_path / "lp"
    args = [{"uri": uri, "outdir": str(outdir)}]
    for answer in ("Cancel", None):
        if answer is not None:
            answers.append(answer)
        done = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="klp-lsp.generateModule", arguments=args)
        )
        assert done["written"] is False and not outdir.exists()
    assert len(asked) == 2 and str(outdir) in asked[0].message
    assert [a.title for a in asked[0].actions or ()] == ["Generate", "Cancel"]
    answers.append("Generate")
    done = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="klp-lsp.generateModule", arguments=args)
    )
    assert done["written"] is True and done["outdir"] == str(outdir)
    main = (outdir / "livepatch.c").read_text()
    assert '.old_name = "demo_submit",' in main and "klp_enable_patch(&patch)" in main
    assert "livepatch_demo_lookup" in (outdir / "vmlinux__kernel_demo_core.c").read_text()
    assert (outdir / "Kbuild").is_file() and "demo_submit" in done["content"]


async def test_verify_module_command(client: LanguageClient, tmp_path: Path) -> None:
    await start(client, options(tmp_path))
    await show_report(client, {"name": "demo_lookup"})  # the indexes are open
    build = KERNEL_SRC.parent / "build" / "x86_64" / "livepatch"
    text = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="klp-lsp.verifyModule",
            arguments=[{"uri": (build / "lp_abi.ko").as_uri()}],
        )
    )
    assert text.startswith("# verify lp_abi")
    assert "| vmlinux | `demo_fill` | 0 | `livepatch_demo_fill` |" in text
    assert "[abi-mismatch]" in text and "findings/abi-mismatch.md" in text
    with_patch = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="klp-lsp.verifyModule",
            arguments=[{"uri": (build / "lp_coverage.ko").as_uri(),
                        "patches": [DEMO_PATCH.as_uri()]}],
        )
    )  # fmt: skip
    assert "[coverage]" in with_patch and "demo_complete" in with_patch
    # A module that is not a live patch: one message, an empty answer, the server lives on.
    bad = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="klp-lsp.verifyModule",
            arguments=[{"uri": (build.parent / "demo.ko").as_uri()}],
        )
    )
    assert bad == ""
    assert any("not a livepatch module" in m.message for m in client.messages)
    report = await show_report(client, {"name": "demo_lookup"})
    assert report.startswith("# demo_lookup")


async def _wait_for_code(
    client: LanguageClient, uri: str, code: str, timeout: float = 90
) -> list[types.Diagnostic]:
    async def loop() -> list[types.Diagnostic]:
        while code not in codes(client.diagnostics.get(uri, [])):
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        return list(client.diagnostics[uri])

    return await asyncio.wait_for(loop(), timeout)


def _fixture_build_tree(tmp_path: Path) -> Path | None:
    """A build tree of the fixture kernel's build.sh (None without GCC 12.2.0 as gcc)."""
    import shutil
    import subprocess

    from klp_lsp.analysis.producer import compiler_identity
    from klp_lsp.cli import main

    gcc = shutil.which("gcc")
    first = subprocess.run([gcc or "gcc", "--version"], capture_output=True, text=True).stdout
    if gcc is None or compiler_identity(first.splitlines()[0]) != ("GCC", "12.2.0"):
        return None
    tree = tmp_path / "tree"
    code = main(
        [
            "prepare-build", "--source", str(KERNEL_SRC), "--script",
            str(KERNEL_SRC.parent / "build.sh"), "-o", str(tree), "--binary",
            str(KERNEL_SRC.parent / "build" / "x86_64" / "vmlinux"), "--index-dir",
            str(tmp_path / "cli-index"),
        ]
    )  # fmt: skip
    assert code == 0
    return tree


async def test_compile_check_republishes_with_the_compilers_findings(
    client: LanguageClient, tmp_path: Path
) -> None:
    """compileCheck: the first diagnostics come from the source mapping; after compiling in
    the background, the same document gets the compiler's findings too."""
    import pytest

    tree = _fixture_build_tree(tmp_path)
    if tree is None:
        pytest.skip("gcc 12.2.0 (the fixtures' compiler) is not installed")
    await start(client, options(tmp_path / "idx", compileCheck=True, buildTree=str(tree)))
    patch = PATCHES / "compile-constant.patch"
    uri = open_document(client, patch, "diff")
    first = await wait_for_diagnostics(client, uri)
    assert "data-change" in codes(first)
    final = await _wait_for_code(client, uri, "compiler-only-change")
    only = next(d for d in final if d.code == "compiler-only-change")
    assert "demo_rt_budget" in only.message and "demo_rt_quota" in only.message
    assert only.severity == types.DiagnosticSeverity.Warning
    assert "kpatch-preview" in codes(final) and "data-change" in codes(final)
    # An edited C buffer: the same constant changed in kernel/demo_rt.c itself.
    rt = KERNEL_SRC / "kernel" / "demo_rt.c"
    edited = rt.read_text().replace("demo_rt_quota = 950;", "demo_rt_quota = 800;")
    c_uri = open_document(client, rt, "c", text=edited)
    diagnostics = await _wait_for_code(client, c_uri, "compiler-only-change")
    assert any("demo_rt_budget" in d.message for d in diagnostics)
