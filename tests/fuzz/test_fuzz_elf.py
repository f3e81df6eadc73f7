"""Mutated fixture ELF files through `klp-lsp show --json`: an answer or one clean line, never
a traceback, a hang or an unclean message.

The mutations (bit flips, bytes and integers written into sections, section and ELF header
fields, symbol and relocation fields, truncation; `.ko.xz`/`.ko.zst` containers) come from
`fuzz_cases.random_elf_case`, driven by Hypothesis' own random stream so the fixed seed gives the
same inputs on every run. The DWARF test mutates only `.debug_*` sections, where most reader code
is. Every example indexes from scratch in a fresh directory.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from conftest import count, fuzz_settings, time_limit
from fuzz_cases import (
    DWARF_FAMILIES,
    ELF_FAMILIES,
    ELF_TARGET_KEYS,
    ElfCase,
    random_container,
    random_elf_case,
    run_elf_case,
)
from hypothesis import given
from hypothesis import strategies as st

# Seconds one example may take: an index of a fixture takes about half a second.
_LIMIT = 60


def _run(test: str, targets: Any, key: str, rng: random.Random, families: Any, jobs: int) -> None:
    target = targets[key]
    case = ElfCase(
        key, random_container(rng, target), tuple(random_elf_case(rng, target, families)), jobs
    )
    with tempfile.TemporaryDirectory() as tmp, time_limit(_LIMIT):
        outcome = run_elf_case(case, target, Path(tmp))
    count(test, outcome.kind)
    assert outcome.kind in ("error", "answer"), f"{case.to_json()}\n{outcome.detail}"


@fuzz_settings(examples=100)
@given(
    key=st.sampled_from(ELF_TARGET_KEYS),
    rng=st.randoms(use_true_random=False),
    jobs=st.sampled_from((1, 1, 1, 2)),
)
def test_mutated_elf(fuzz_targets: Any, key: str, rng: random.Random, jobs: int) -> None:
    _run("elf", fuzz_targets, key, rng, ELF_FAMILIES, jobs)


@fuzz_settings(examples=100)
@given(key=st.sampled_from(ELF_TARGET_KEYS), rng=st.randoms(use_true_random=False))
def test_mutated_dwarf(fuzz_targets: Any, key: str, rng: random.Random) -> None:
    _run("dwarf", fuzz_targets, key, rng, DWARF_FAMILIES, 1)
