"""The fast paths build exactly the index the straightforward ones build (issue 7).

Fast: a process pool over CU batches (forked workers inheriting the parent's open binary, or an
executor started beforehand whose workers open it themselves), a pool over binaries for many
modules, and a subset of CUs first with the rest later. Straightforward: one process, every CU
in one go. On the real kernel (opt-in, `KLP_CORPUS_DIR`) the same on a fixed sample of CUs; the
DWARF scanner itself is compared with a pyelftools walk in tests/test_dwarf.py.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, fixture_binary

from klp_lsp.index import builder
from klp_lsp.index.builder import build_index
from klp_lsp.index.store import Index
from klp_lsp.session import Session

CORPUS = os.environ.get("KLP_CORPUS_DIR")

_TABLES = (
    "cus",
    "cu_ranges",
    "symbols",
    "functions",
    "instances",
    "params",
    "inline_sites",
    "register_use",
    "calls",
    "register_dependents",
)

Dump = dict[str, list[tuple[object, ...]]]


def dump(path: Path, *, ordered: bool = True) -> Dump:
    """Every row of every table; `ordered=False` sorts rows (and drops symbol rowids)."""
    idx = Index(path)
    try:
        out: Dump = {
            "meta": sorted(
                (k, v)
                for k, v in idx.meta.items()
                if k not in ("binary",)  # the path the index was built from
            )
        }
        for t in _TABLES:
            rows = [tuple(r) for r in idx.query(f"SELECT * FROM {t}")]
            if not ordered:
                if t == "symbols":
                    rows = [r[1:] for r in rows]
                rows.sort(key=repr)
            out[t] = rows
        return out
    finally:
        idx.close()


def check_same(fast: Path, plain: Path, *, ordered: bool = True) -> None:
    a, b = dump(fast, ordered=ordered), dump(plain, ordered=ordered)
    assert a.keys() == b.keys()
    for table in a:
        assert a[table] == b[table], table
    assert sum(len(rows) for rows in a.values()) > 0


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """One CU per batch, so even the fixture kernels go through the pool."""
    monkeypatch.setattr(builder, "_BATCH_BYTES", 1)


_BINARIES = [(a, n) for a in ARCHES for n in ("vmlinux", "demo.ko")]


@pytest.mark.parametrize(("arch", "name"), _BINARIES)
def test_pool_equals_one_process(
    arch: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # All CUs in one batch in one process, then one CU per batch in a pool of two.
    plain = build_index(fixture_binary(arch, name), tmp_path / "plain", jobs=1)
    monkeypatch.setattr(builder, "_BATCH_BYTES", 1)
    pooled = build_index(fixture_binary(arch, name), tmp_path / "pool", jobs=2)
    # Batches are written in submission order, so even the row order is the same.
    check_same(pooled.index_path, plain.index_path)


@pytest.mark.parametrize(("arch", "name"), _BINARIES)
def test_external_executor_equals_one_process(
    arch: str, name: str, tmp_path: Path, small_batches: None
) -> None:
    plain = build_index(fixture_binary(arch, name), tmp_path / "plain", jobs=1)
    # Workers started before the build open the binary themselves (the language server's case).
    with ProcessPoolExecutor(max_workers=2) as pool:
        pool.submit(int).result()
        pooled = build_index(fixture_binary(arch, name), tmp_path / "pool", jobs=2, executor=pool)
    check_same(pooled.index_path, plain.index_path)


@pytest.mark.parametrize(("arch", "name"), _BINARIES)
def test_subsets_then_rest_equal_all_at_once(arch: str, name: str, tmp_path: Path) -> None:
    path = fixture_binary(arch, name)
    whole = build_index(path, tmp_path / "whole", jobs=1)
    idx = Index(whole.index_path)
    names = [c.unit.name for c in idx.iter_cus()]
    idx.close()
    # One CU, then one more (an existing partial index gains it), then the rest in a pool.
    first = build_index(path, tmp_path / "steps", cu_names=names[:1], jobs=1)
    assert not first.reused
    assert first.complete == (len(names) == 1)
    if len(names) > 2:
        second = build_index(path, tmp_path / "steps", cu_names=names[-1:], jobs=1)
        assert not second.reused and not second.complete
    rest = build_index(path, tmp_path / "steps", jobs=2)
    assert rest.complete
    check_same(rest.index_path, whole.index_path, ordered=False)


def test_pool_over_binaries_equals_one_by_one(tmp_path: Path) -> None:
    files = [fixture_binary(a, n) for a in ARCHES for n in ("vmlinux", "demo.ko")]
    pooled = Session(files, None, tmp_path / "pool", jobs=2).ensure_indexes()
    plain = [build_index(f, tmp_path / "plain", jobs=1) for f in files]
    assert [r.binary for r in pooled] == files
    for a, b in zip(pooled, plain, strict=True):
        assert a.build_id == b.build_id and a.complete
        check_same(a.index_path, b.index_path)


# --- the real kernel (opt-in) ---------------------------------------------------------------------

corpus = pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus")

# The CU of the first-diagnostic benchmark patch (inlined-enqueue_task) and a few with clones,
# inlining through inlines and IPA-RA; several batches of each, so the pool is used.
_CORPUS_CUS = ["kernel/sched/core.c", "lib/maple_tree.c", "lib/bitmap.c", "fs/namespace.c"]


@corpus
@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_corpus_pool_and_subsets(arch: str, tmp_path: Path, small_batches: None) -> None:
    assert CORPUS is not None
    path = Path(CORPUS) / arch / "vmlinux"
    plain = build_index(path, tmp_path / "plain", cu_names=_CORPUS_CUS, jobs=1)
    pooled = build_index(path, tmp_path / "pool", cu_names=_CORPUS_CUS, jobs=2)
    check_same(pooled.index_path, plain.index_path)
    build_index(path, tmp_path / "steps", cu_names=_CORPUS_CUS[:1], jobs=1)
    steps = build_index(path, tmp_path / "steps", cu_names=_CORPUS_CUS, jobs=2)
    assert not steps.reused and not steps.complete
    check_same(steps.index_path, plain.index_path, ordered=False)
    idx = Index(plain.index_path)
    try:
        analysed = idx.query("SELECT name FROM cus WHERE state = 2")
        assert sorted(r[0] for r in analysed) == sorted(_CORPUS_CUS)
        assert idx.query("SELECT count(*) FROM register_use")[0][0] > 300
    finally:
        idx.close()
