"""Shared pytest fixtures: indexes of the committed fixture kernels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from klp_fixtures import ARCHES, fixture_binary

from klp_lsp.index.builder import build_index
from klp_lsp.index.query import IndexSet


@pytest.fixture(scope="session")
def fixture_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Indexes of every fixture vmlinux and demo.ko, built once per test session."""
    d = tmp_path_factory.mktemp("klp-index")
    for arch in ARCHES:
        for name in ("vmlinux", "demo.ko"):
            build_index(fixture_binary(arch, name), d, jobs=1)
    return d


@pytest.fixture(params=ARCHES)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def indexes(arch: str, fixture_index_dir: Path) -> Iterator[IndexSet]:
    """The vmlinux and demo.ko indexes of one fixture architecture."""
    paths = [
        build_index(fixture_binary(arch, n), fixture_index_dir, jobs=1).index_path
        for n in ("vmlinux", "demo.ko")
    ]
    s = IndexSet.open(paths)
    yield s
    s.close()
