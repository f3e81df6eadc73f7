"""Settings of the Hypothesis fuzz tests: a fast fixed-seed set by default, a long mode on demand.

By default every fuzz test runs a small, fixed number of examples from a fixed seed
(`derandomize`), so CI sees the same inputs on every commit. With `KLP_FUZZ_EXAMPLES=N` each
test runs N examples from a fresh random seed (Hypothesis prints it on failure; replay with
`--hypothesis-seed`), and the outcome counts (clean errors, answers...) are printed at the end of
the session. `tests/fuzz/harness.py` is the long run over a pool of processes.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

LONG_ENV = "KLP_FUZZ_EXAMPLES"
_COUNTS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def long_examples() -> int | None:
    value = os.environ.get(LONG_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def fuzz_settings(examples: int) -> Any:
    """`examples` fixed-seed examples, or the long mode's count from a random seed."""
    long = long_examples()
    return settings(
        max_examples=long or examples,
        derandomize=long is None,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def count(test: str, outcome: str) -> None:
    _COUNTS[test][outcome] += 1


class Hang(Exception):
    """A fuzz case ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` in this (main) thread when the block takes longer than `seconds`."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"over the {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _COUNTS or long_examples() is None:
        return
    terminalreporter.section("klp-lsp fuzz outcome counts")
    for test, counts in sorted(_COUNTS.items()):
        terminalreporter.write_line(f"{test}: {dict(sorted(counts.items()))}")


@pytest.fixture(scope="module")
def wire(fixture_index_dir: Path) -> Iterator[Any]:
    """A real `klp-lsp serve` on the fixture kernel, ready and with two documents open."""
    from lsp_wire import Wire

    w = Wire(fixture_index_dir)
    try:
        w.start()
        yield w
    finally:
        w.close()


@pytest.fixture(scope="session")
def fuzz_targets() -> Any:
    from fuzz_cases import load_elf_targets

    return load_elf_targets()
