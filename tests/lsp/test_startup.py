"""The language server's start-up imports: only what a warm start needs before `initialize`.

Start to first hover counts every import (docs/performance.md, "Language server start"); the
patch engine, tree-sitter, the index builder, capstone, pyelftools and multiprocessing load on
first use, on the indexing or check thread, never while the server is built.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Loaded later: by the check thread (patch engine, tree-sitter, unidiff), the indexing thread
# (session, builder), or only when an index must be built (multiprocessing, capstone, DWARF).
DEFERRED = [
    "capstone",
    "elftools",
    "tree_sitter",
    "tree_sitter_c",
    "unidiff",
    "difflib",
    "multiprocessing",
    "klp_lsp.session",
    "klp_lsp.index.builder",
    "klp_lsp.index.regfacts",
    "klp_lsp.binary.dwarf",
    "klp_lsp.binary.disasm",
    "klp_lsp.patch.check",
    "klp_lsp.patch.changes",
    "klp_lsp.patch.source_map",
]


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import klp_lsp.cli",
        "from klp_lsp.lsp.server import build_server; build_server()",
    ],
)
def test_server_start_defers_heavy_imports(code: str) -> None:
    loaded = modules_after(code)
    assert sorted(loaded.intersection(DEFERRED)) == []


def test_cli_import_does_not_load_the_server() -> None:
    loaded = modules_after("import klp_lsp.cli")
    assert not any(m.startswith(("pygls", "lsprotocol", "klp_lsp.lsp")) for m in loaded)
