"""Mutated patches through `klp-lsp check --format json`: findings, problems or one clean line;
never a traceback, a hang, or a read outside the source tree.

`fuzz_cases.random_patch` mutates the fixture patches line by line (hunk headers with broken
numbers, file names that climb out of the tree or point at devices, long lines, junk bytes, CRLF,
truncation, mbox and git extended headers). An audit hook records every file opened while a case
runs; one outside the source tree, the index and Python itself is an escape.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from conftest import count, fuzz_settings, time_limit
from fuzz_cases import FileAudit, default_allowed, patch_bases, run_patch_case
from hypothesis import given
from hypothesis import strategies as st

_LIMIT = 60
_BASES = patch_bases()


@pytest.fixture(scope="module")
def audit(fixture_index_dir: Path) -> FileAudit:
    return FileAudit(default_allowed([fixture_index_dir, Path(tempfile.gettempdir())]))


@fuzz_settings(examples=150)
@given(rng=st.randoms(use_true_random=False))
def test_mutated_patch(fixture_index_dir: Path, audit: FileAudit, rng: random.Random) -> None:
    from fuzz_cases import random_patch

    text = random_patch(rng, _BASES)
    with tempfile.TemporaryDirectory() as tmp, time_limit(_LIMIT):
        outcome = run_patch_case(text, fixture_index_dir, Path(tmp), audit)
    count("patch", outcome.kind)
    assert outcome.kind in ("error", "answer"), f"{text[:2000]!r}\n{outcome.detail}"


def test_the_audit_sees_a_read_outside_the_tree(audit: FileAudit) -> None:
    """The escape check itself: opening a file elsewhere is recorded."""
    with audit.watch() as outside:
        Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else None
        Path("/etc/passwd").read_bytes()
    assert "/etc/passwd" in outside
