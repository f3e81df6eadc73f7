"""What goes wrong inside a pool worker reaches the user as one line naming the file, exit 2,
never as the pool's traceback: an exception no reader check anticipated, and a worker that
dies (SIGKILL, as the OOM killer sends it). Both pools are covered: the one over the compile
units of one binary and the one over binaries (several modules).

The faults are injected into the real code path (the workers are forks, so they inherit the
patched function); what is checked is what the command prints.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from klp_fixtures import fixture_binary

from klp_lsp import cli, session  # noqa: F401  (session bound to the real build_index first)
from klp_lsp.binary.dwarf import DwarfData
from klp_lsp.index import builder

MODULES = [fixture_binary("x86_64", "demo.ko"), fixture_binary("arm64", "demo.ko")]


def _show(tmp_path: Path, capsys: pytest.CaptureFixture[str], *binaries: Path) -> str:
    args = ["show", "demo_mod_probe", "--json", "--jobs", "2"]
    for b in binaries:
        args += ["--binary", str(b)]
    code = cli.main([*args, "--index-dir", str(tmp_path / "idx")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


def _kill_self(*_args: Any, **_kwargs: Any) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def _bug(*_args: Any, **_kwargs: Any) -> Any:
    raise AttributeError("'NoneType' object has no attribute 'name'\n  (a second line)")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            _bug,
            "demo.ko: cannot be indexed: internal error"
            " (AttributeError: 'NoneType' object has no attribute 'name' (a second line))",
        ),
        (_kill_self, "demo.ko: a worker process indexing it ended abruptly"),
    ],
    ids=["raises", "dies"],
)
def test_a_worker_of_the_pool_over_binaries(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fault: Any,
    expected: str,
) -> None:
    monkeypatch.setattr(builder, "build_index", fault)
    line = _show(tmp_path, capsys, *MODULES)
    assert line.startswith("klp-lsp: ") and expected in line


def test_a_worker_of_the_pool_over_compile_units_that_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DwarfData, "scan_unit", _kill_self)
    vmlinux = fixture_binary("x86_64")
    line = _show(tmp_path, capsys, vmlinux)
    assert line == (
        f"klp-lsp: {vmlinux}: a worker process indexing it ended abruptly"
        " (killed by a signal or out of memory)"
    )
    assert not list((tmp_path / "idx").glob("*.klpidx")), "no index is published"


def test_a_worker_of_the_pool_over_compile_units_that_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One unit trips an unanticipated exception inside a worker: that unit is lost, not the
    # index (exit 0), and `show` names it with the exception in one line.
    scan = DwarfData.scan_unit

    def scan_but_sched(self: DwarfData, offset: int, *args: Any) -> Any:
        if self.get_unit_header(offset).name == "kernel/demo_sched.c":
            _bug()
        return scan(self, offset, *args)

    monkeypatch.setattr(DwarfData, "scan_unit", scan_but_sched)
    vmlinux = fixture_binary("x86_64")
    code = cli.main(
        ["show", "demo_lookup", "--json", "--jobs", "2", "--binary", str(vmlinux),
         "--index-dir", str(tmp_path / "idx")]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    (unit,) = json.loads(out)["unreadable_units"]
    assert unit["cu"] == "kernel/demo_sched.c"
    assert unit["reason"].endswith(
        "internal error while reading it (AttributeError: 'NoneType' object has no attribute"
        " 'name' (a second line))"
    )
    assert "Traceback" not in err
