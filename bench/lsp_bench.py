"""Language-server benchmark against a warm index of the real Debian amd64 vmlinux.

Drives `python -m klp_lsp serve` through a real LSP client (pygls) over stdio and measures:
server start to first hover card, hover p50/p99 over 1,000 function names, diagnostics latency
for a 50-hunk patch, then on that patch the code lenses, the outline and the hover at each
diagnostic's start (p50/p99 over `--lens-requests` requests after the first diagnostics), inlay
hints on a large C file, and the server's RSS. Prints a table and writes JSON.

    python bench/lsp_bench.py [--corpus DIR] [--index-dir DIR] [--starts N] [--json FILE]

Start to first hover is the median of `--starts` fresh processes, each from spawning the server
to the first hover card (initialize, initialized, didOpen, hover). The client says what VS Code
1.65 says (pytest-lsp's capability profile), so the server converts an editor's real
InitializeParams and asks for `workspace/configuration`, which the client answers with the same
settings as `initializationOptions`, as the VS Code extension does. Beside it, in the same rounds
so they share the machine's load, the floor any pygls 2 server pays: a bare pygls server that
answers every hover with a constant card, and `python -c "import pygls.lsp.server"`.

The index must exist already (`klp-lsp index <vmlinux> --index-dir DIR`); the benchmark never
builds it, so its figures are those of a warm start. It byte-compiles `server/klp_lsp` first, as
an installed package is: with PYTHONDONTWRITEBYTECODE set, an editable checkout would otherwise
compile every module from source at each start.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest_lsp
from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "server"))

from klp_lsp.index.locate import default_index_dir  # noqa: E402
from klp_lsp.lsp.indexing import existing_indexes  # noqa: E402

GOALS = {
    "start_to_first_hover_s": 0.5,
    "hover_p99_ms": 10.0,
    "diagnostics_50_hunks_s": 1.0,
    "code_lens_50_hunks_p99_ms": 50.0,
    "server_rss_mib": 250.0,
}
# A large C file of the kernel for the inlay hints (hundreds of function definitions).
INLAY_FILE = "kernel/sched/core.c"
DEFAULT_CORPUS = Path.home() / ".cache" / "klp-corpus" / "debian-6.1.192-2"


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "server"), env.get("PYTHONPATH", "")) if p
    )
    return env


# A pygls 2 server with one feature: the floor under any pygls server's start to first hover.
BARE_SERVER = """
from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("bare-pygls", "1")


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(params: types.HoverParams) -> types.Hover:
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="**x**"))


server.start_io()
"""


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def pick_functions(index_files: list[Path], src: Path, count: int, seed: int) -> list[Any]:
    """Function reports with a definition in a .c file of the source tree."""
    from klp_lsp.index.query import IndexSet

    rng = random.Random(seed)
    indexes = IndexSet.open(index_files)
    try:
        names = indexes.objects[0].search_names("", 1_000_000)
        rng.shuffle(names)
        out = []
        for name in names:
            if len(out) >= count:
                break
            reports = indexes.reports(name)
            if len(reports) != 1:
                continue
            r = reports[0]
            if (
                r.decl_file
                and r.decl_file.endswith(".c")
                and r.decl_line
                and r.symbols
                and (src / r.decl_file).is_file()
            ):
                out.append(r)
        return out
    finally:
        indexes.close()


def make_patch(src: Path, functions: list[Any], hunks: int) -> str:
    """A unified diff with one hunk per function: a line added after its opening brace."""
    by_file: dict[str, list[int]] = {}
    for r in functions:
        by_file.setdefault(r.decl_file, []).append(r.decl_line)
    parts: list[str] = []
    made = 0
    for rel, decl_lines in sorted(by_file.items()):
        old = (src / rel).read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        new = list(old)
        inserted = 0
        used: list[int] = []
        for decl in sorted(set(decl_lines)):
            if made >= hunks:
                break
            brace = next(
                (i for i in range(decl - 1, min(decl + 15, len(old))) if old[i].startswith("{")),
                None,
            )
            # Hunks closer than 7 lines would merge into one.
            if brace is None or any(abs(brace - u) < 8 for u in used):
                continue
            used.append(brace)
            new.insert(brace + 1 + inserted, "\tbarrier();\n")
            inserted += 1
            made += 1
        if inserted:
            parts.extend(difflib.unified_diff(old, new, f"a/{rel}", f"b/{rel}", n=3))
        if made >= hunks:
            break
    return "".join(parts)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def initialize_params(settings: dict[str, Any]) -> types.InitializeParams:
    """What VS Code sends, with the settings as `initializationOptions`."""
    return types.InitializeParams(
        capabilities=pytest_lsp.client_capabilities("visual-studio-code"),
        initialization_options=settings,
    )


def bench_client(settings: dict[str, Any]) -> LanguageClient:
    """A client that answers the server's requests as an editor would."""
    client = LanguageClient("klp-lsp-bench", "1")

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def configuration(params: types.ConfigurationParams) -> list[Any]:
        return [settings for _ in params.items]

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def code_lens_refresh(params: None) -> None:
        return None

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def progress_create(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
    def inlay_hint_refresh(params: None) -> None:
        return None

    return client


def hover_params(uri: str, line: int) -> types.HoverParams:
    return types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=1),
    )


async def first_hover_card(client: LanguageClient, uri: str, started: float) -> float | None:
    """Hover on line 0 until the answer is a card; seconds from `started`, None after 60 s."""
    while time.perf_counter() - started < 60:
        h = await client.text_document_hover_async(hover_params(uri, 0))
        text = h.contents.value if h is not None else ""  # type: ignore[union-attr]
        if text.startswith("**"):
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    return None


async def start_to_first_hover(
    cmd: list[str], settings: dict[str, Any], names_file: Path
) -> tuple[float, float]:
    """One fresh server process from spawn to its first hover card, then shut down.

    Returns the wall seconds and the server's CPU seconds up to that card.
    """
    client = bench_client(settings)

    @client.feature("klp-lsp/indexState")
    def on_state(params: Any) -> None:
        return None

    started = time.perf_counter()
    await client.start_io(*cmd, env=server_env())
    server = client._server
    assert server is not None and server.stderr is not None
    drainer = asyncio.create_task(drain(server.stderr))
    await client.initialize_async(initialize_params(settings))
    client.initialized(types.InitializedParams())
    uri = names_file.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="c", version=1, text=names_file.read_text()
            )
        )
    )
    elapsed = await first_hover_card(client, uri, started)
    cpu = cpu_seconds(server.pid)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    drainer.cancel()
    if elapsed is None:
        raise SystemExit(f"{' '.join(cmd)}: no hover card within 60 s")
    return elapsed, cpu


async def drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def process_seconds(code: str) -> float:
    """Wall time of `python -c code`."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=server_env())
    return time.perf_counter() - started


async def start_rounds(
    rounds: int, settings: dict[str, Any], names_file: Path, work: Path
) -> dict[str, list[float]]:
    """Each round: klp-lsp, the bare pygls server, then the two imports, back to back."""
    bare = work / "bare_pygls_server.py"
    bare.write_text(BARE_SERVER)
    keys = ("klp", "klp_cpu", "bare", "bare_cpu", "import_pygls", "python")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(rounds):
        klp = await start_to_first_hover(
            [sys.executable, "-m", "klp_lsp", "serve"], settings, names_file
        )
        floor = await start_to_first_hover([sys.executable, str(bare)], settings, names_file)
        out["klp"].append(klp[0])
        out["klp_cpu"].append(klp[1])
        out["bare"].append(floor[0])
        out["bare_cpu"].append(floor[1])
        out["import_pygls"].append(process_seconds("import pygls.lsp.server"))
        out["python"].append(process_seconds("pass"))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    vmlinux = args.corpus / "amd64" / "vmlinux"
    src = args.corpus / "src"
    ready = existing_indexes([vmlinux], args.index_dir)
    if ready is None:
        raise SystemExit(
            f"no complete index of {vmlinux} in {args.index_dir};"
            f" run: klp-lsp index {vmlinux} --index-dir {args.index_dir}"
        )
    functions = pick_functions([r.index_path for r in ready], src, args.hovers, args.seed)
    patch_text = make_patch(src, functions, args.hunks)
    n_hunks = patch_text.count("\n@@ ")
    work = Path(tempfile.mkdtemp(prefix="klp-lsp-bench-"))
    names_file = work / "names.c"
    names_file.write_text("".join(f"{r.name}\n" for r in functions))
    patch_file = work / "bench.patch"
    patch_file.write_text(patch_text)

    settings = {"binaries": [str(vmlinux)], "indexDir": str(args.index_dir), "sourceRoot": str(src)}
    starts = await start_rounds(args.starts, settings, names_file, work)

    client = bench_client(settings)
    diagnostics_at: dict[str, float] = {}
    diagnostics: dict[str, list[types.Diagnostic]] = {}
    ready_event = asyncio.Event()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        diagnostics_at.setdefault(params.uri, time.perf_counter())
        diagnostics[params.uri] = list(params.diagnostics)

    @client.feature("klp-lsp/indexState")
    def on_state(params: Any) -> None:
        if getattr(params, "state", None) == "ready":
            ready_event.set()

    started = time.perf_counter()
    await client.start_io(sys.executable, "-m", "klp_lsp", "serve", env=server_env())
    server = client._server
    assert server is not None and server.stderr is not None

    drainer = asyncio.create_task(drain(server.stderr))
    await client.initialize_async(initialize_params(settings))
    initialized = time.perf_counter() - started
    client.initialized(types.InitializedParams())
    names_uri = names_file.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=names_uri, language_id="c", version=1, text=names_file.read_text()
            )
        )
    )

    first_hover = await first_hover_card(client, names_uri, started)
    if first_hover is not None:
        starts["klp"].append(first_hover)
    await asyncio.wait_for(ready_event.wait(), 60)

    latencies: list[float] = []
    empty = 0
    for line in range(len(functions)):
        t = time.perf_counter()
        h = await client.text_document_hover_async(hover_params(names_uri, line))
        latencies.append((time.perf_counter() - t) * 1000)
        empty += h is None
    rss_after_hovers = rss_mib(server.pid)

    patch_uri = patch_file.as_uri()
    opened = time.perf_counter()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=patch_uri, language_id="diff", version=1, text=patch_text
            )
        )
    )
    while patch_uri not in diagnostics_at and time.perf_counter() - opened < 120:
        await asyncio.sleep(0.002)
    diag_latency = diagnostics_at.get(patch_uri, float("nan")) - opened
    patch_doc = types.TextDocumentIdentifier(uri=patch_uri)

    # From the first diagnostics on: what the editor asks for next on the same patch.
    lens_ms: list[float] = []
    lenses: list[types.CodeLens] = []
    for _ in range(args.lens_requests):
        t = time.perf_counter()
        lenses = (
            await client.text_document_code_lens_async(
                types.CodeLensParams(text_document=patch_doc)
            )
            or []
        )
        lens_ms.append((time.perf_counter() - t) * 1000)
    symbol_ms: list[float] = []
    for _ in range(args.lens_requests):
        t = time.perf_counter()
        await client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=patch_doc)
        )
        symbol_ms.append((time.perf_counter() - t) * 1000)
    diag_hover_ms: list[float] = []
    for d in diagnostics.get(patch_uri, []):
        t = time.perf_counter()
        await client.text_document_hover_async(
            types.HoverParams(text_document=patch_doc, position=d.range.start)
        )
        diag_hover_ms.append((time.perf_counter() - t) * 1000)

    # Inlay hints on a large C file: the whole file (as Neovim asks) and one screen (VS Code).
    c_file = src / INLAY_FILE
    c_uri = c_file.as_uri()
    c_text = c_file.read_text(encoding="utf-8", errors="replace")
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=c_uri, language_id="c", version=1, text=c_text)
        )
    )
    n_lines = c_text.count("\n")

    async def inlay(first: int, last: int) -> tuple[float, int]:
        t = time.perf_counter()
        hints = await client.text_document_inlay_hint_async(
            types.InlayHintParams(
                text_document=types.TextDocumentIdentifier(uri=c_uri),
                range=types.Range(types.Position(first, 0), types.Position(last, 0)),
            )
        )
        return (time.perf_counter() - t) * 1000, len(hints or ())

    inlay_whole = [await inlay(0, n_lines) for _ in range(3)]
    inlay_screen = [await inlay(s, s + 60) for s in range(0, n_lines, 60)]
    rss, hwm = rss_mib(server.pid)

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    drainer.cancel()

    kinds: dict[str, int] = {}
    for d in diagnostics.get(patch_uri, []):
        kinds[str(d.code)] = kinds.get(str(d.code), 0) + 1
    return {
        "vmlinux": str(vmlinux),
        "index_dir": str(args.index_dir),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "start_to_first_hover_s": statistics.median(starts["klp"]),
        "start_to_first_hover_all_s": starts["klp"],
        "bare_pygls_first_hover_s": statistics.median(starts["bare"]),
        "bare_pygls_first_hover_all_s": starts["bare"],
        "server_cpu_to_first_hover_s": statistics.median(starts["klp_cpu"]),
        "bare_pygls_cpu_to_first_hover_s": statistics.median(starts["bare_cpu"]),
        "import_pygls_server_s": statistics.median(starts["import_pygls"]),
        "python_pass_s": statistics.median(starts["python"]),
        "start_to_initialize_result_s": initialized,
        "hover_count": len(latencies),
        "hover_empty": empty,
        "hover_p50_ms": statistics.median(latencies),
        "hover_p99_ms": percentile(latencies, 99),
        "hover_max_ms": max(latencies),
        "patch_hunks": n_hunks,
        "diagnostics_50_hunks_s": diag_latency,
        "diagnostics": len(diagnostics.get(patch_uri, [])),
        "diagnostic_kinds": kinds,
        "code_lens_requests": len(lens_ms),
        "code_lenses": len(lenses),
        "code_lens_first_ms": lens_ms[0],
        "code_lens_50_hunks_p50_ms": statistics.median(lens_ms),
        "code_lens_50_hunks_p99_ms": percentile(lens_ms, 99),
        "code_lens_max_ms": max(lens_ms),
        "document_symbol_p50_ms": statistics.median(symbol_ms),
        "document_symbol_p99_ms": percentile(symbol_ms, 99),
        "diagnostic_hover_count": len(diag_hover_ms),
        "diagnostic_hover_p50_ms": statistics.median(diag_hover_ms) if diag_hover_ms else None,
        "diagnostic_hover_p99_ms": percentile(diag_hover_ms, 99) if diag_hover_ms else None,
        "inlay_file": INLAY_FILE,
        "inlay_file_lines": n_lines,
        "inlay_whole_file_first_ms": inlay_whole[0][0],
        "inlay_whole_file_ms": statistics.median(ms for ms, _ in inlay_whole[1:]),
        "inlay_whole_file_hints": inlay_whole[0][1],
        "inlay_screen_p50_ms": statistics.median(ms for ms, _ in inlay_screen),
        "inlay_screen_p99_ms": percentile([ms for ms, _ in inlay_screen], 99),
        "server_rss_mib": rss,
        "server_rss_after_hovers_mib": rss_after_hovers[0],
        "server_peak_rss_mib": hwm,
        "goals": GOALS,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("python -c pass", "python_pass_s", "s"),
        ("python -c 'import pygls.lsp.server'", "import_pygls_server_s", "s"),
        ("bare pygls server to first hover", "bare_pygls_first_hover_s", "s"),
        ("  its CPU time", "bare_pygls_cpu_to_first_hover_s", "s"),
        ("server start to initialize result", "start_to_initialize_result_s", "s"),
        ("server start to first hover", "start_to_first_hover_s", "s"),
        ("  its CPU time", "server_cpu_to_first_hover_s", "s"),
        ("hover p50", "hover_p50_ms", "ms"),
        ("hover p99", "hover_p99_ms", "ms"),
        (f"diagnostics, {result['patch_hunks']}-hunk patch", "diagnostics_50_hunks_s", "s"),
        ("  then codeLens p50", "code_lens_50_hunks_p50_ms", "ms"),
        ("  then codeLens p99", "code_lens_50_hunks_p99_ms", "ms"),
        ("  then documentSymbol p99", "document_symbol_p99_ms", "ms"),
        ("  then hover at each diagnostic p99", "diagnostic_hover_p99_ms", "ms"),
        (f"inlay hints, whole {result['inlay_file']}", "inlay_whole_file_first_ms", "ms"),
        ("  asked again (labels kept)", "inlay_whole_file_ms", "ms"),
        ("inlay hints, 60-line screens p99", "inlay_screen_p99_ms", "ms"),
        ("server RSS", "server_rss_mib", "MiB"),
    ]
    print(f"{'measure':36} {'value':>10} {'goal':>10}  ok")
    # Start figures are medians over the rounds; the floor rows are what pygls 2 alone costs.
    for label, key, unit in rows:
        value = result[key]
        goal = GOALS.get(key)
        ok = "" if goal is None or value is None else ("yes" if value <= goal else "NO")
        shown = "-" if value is None else f"{value:.3f}"
        print(
            f"{label:36} {shown:>7} {unit:<3}{'' if goal is None else f'{goal:>7} {unit:<3}'} {ok}"
        )
    print(
        f"({result['code_lens_requests']} codeLens requests after the first diagnostics,"
        f" {result['code_lenses']} lenses, first {result['code_lens_first_ms']:.1f} ms, max"
        f" {result['code_lens_max_ms']:.1f} ms; {result['inlay_whole_file_hints']} inlay hints"
        f" in {result['inlay_file_lines']} lines)"
    )
    print(
        f"({result['hover_count']} hovers, {result['hover_empty']} empty, max"
        f" {result['hover_max_ms']:.1f} ms; {result['diagnostics']} diagnostics"
        f" {result['diagnostic_kinds']}; peak RSS {result['server_peak_rss_mib']:.0f} MiB)"
    )
    ratio = result["start_to_first_hover_s"] / result["bare_pygls_first_hover_s"]
    print(
        f"(start to first hover: median of {len(result['start_to_first_hover_all_s'])} starts,"
        f" {ratio:.2f}x the bare pygls server's median of"
        f" {len(result['bare_pygls_first_hover_all_s'])})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--index-dir", type=Path, default=default_index_dir())
    parser.add_argument("--hovers", type=int, default=1000)
    parser.add_argument("--hunks", type=int, default=50)
    parser.add_argument(
        "--lens-requests", type=int, default=200, help="codeLens/documentSymbol requests"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--starts", type=int, default=5, help="fresh-start rounds (median)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "server" / "klp_lsp")], check=True
    )
    result = asyncio.run(run(args))
    print_table(result)
    out = args.json or REPO / "bench" / "results" / f"lsp-{time.strftime('%Y%m%d-%H%M')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
