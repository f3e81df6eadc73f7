"""Shared fixtures: the committed fixture kernels and their indexes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from klp_lsp.index.builder import build_index
from klp_lsp.index.query import IndexSet

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = FIXTURES / "build"
ARCHES = ("x86_64", "arm64")


def fixture_binary(arch: str, name: str = "vmlinux") -> Path:
    return BUILD / arch / name


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


def corpus_dir() -> Path | None:
    """The Debian kernel corpus, when `KLP_CORPUS_DIR` points at it."""
    value = os.environ.get("KLP_CORPUS_DIR")
    return Path(value) if value else None
