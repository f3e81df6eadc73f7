"""Indexing from a process started with `spawn`, as the language server's indexing child is.

In such a process multiprocessing's default start method is spawn as well; the builder's pool
must still fork, because its workers work on the binary the parent opened (builder._WORKER).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path

from klp_fixtures import fixture_binary

from klp_lsp.index.builder import build_index
from klp_lsp.index.store import Index


def _build(path: str, index_dir: str, conn: Connection) -> None:
    try:
        conn.send(str(build_index(Path(path), Path(index_dir), jobs=2).index_path))
    except Exception as e:
        conn.send(f"error: {e}")


def test_build_index_with_a_pool_inside_a_spawned_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_build, args=(str(fixture_binary("x86_64")), str(tmp_path), child))
    proc.start()
    built = parent.recv()
    proc.join(60)
    assert not built.startswith("error"), built
    idx = Index(Path(built))
    try:
        assert idx.complete
        assert idx.query("SELECT count(*) FROM register_use")[0][0] > 0
    finally:
        idx.close()
