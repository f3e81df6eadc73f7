"""Paths of the committed fixture kernels, shared by the tests (import as `klp_fixtures`)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = FIXTURES / "build"
ARCHES = ("x86_64", "arm64")


def fixture_binary(arch: str, name: str = "vmlinux") -> Path:
    return BUILD / arch / name


def corpus_dir() -> Path | None:
    """The Debian kernel corpus, when `KLP_CORPUS_DIR` points at it."""
    value = os.environ.get("KLP_CORPUS_DIR")
    return Path(value) if value else None
