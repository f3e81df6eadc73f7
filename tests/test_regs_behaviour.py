"""Behavioural check of the register analysis: poison registers at a callee's returns, run.

Each fixture program links tests/fixtures/regs/poison.c: for each line of a KLP_POISON_PLAN
file it forks a run that puts a trap on the given return instructions of F, and its SIGTRAP
handler performs the return with a poison value in the register (one process, and one qemu
start, per plan). The program's output may change only
for (F, register) pairs that the analysis reports as register dependents, and must change for
every reported pair (each value the fixture keeps across a call reaches the output). x86-64
programs run natively, arm64 ones under qemu-aarch64.

Two analyses are held to it: the analysis of the whole program as one group
(`test_registers.program`), and what `klp-lsp index` stores for it (regs.c has DWARF), which
analyses each CU apart and reaches asm code (`sw_weight`, the trampoline `sw_weight_sct`) on
demand, as on a kernel.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_registers import IN_MEMORY, PARAMS, VOID, Program, program

from klp_lsp.binary.abi import get_abi
from klp_lsp.index.builder import build_index
from klp_lsp.index.store import from_db, open_readonly

# Functions poisoned at their returns: every function of regs.c that returns (not main, whose
# return only ends the program) plus the asm helper.
POISONED = tuple(n for n in PARAMS if n not in ("main", "die"))


def _runner(arch: str) -> list[str]:
    if arch == "x86_64":
        if platform.machine() != "x86_64":
            pytest.skip("x86-64 fixtures run natively only on x86-64")
        return []
    if platform.machine() == "aarch64":
        return []
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        pytest.skip("qemu-aarch64 is not installed (Debian package qemu-user)")
    return [qemu]


def _run_plan(cmd: list[str], plan: Path, jobs: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """Exit status and output of one run per (register, return addresses) job."""
    plan.write_text(
        "".join(
            f"{reg} {','.join(f'{a:x}' for a in at)}\n" if at else f"{reg}\n" for reg, at in jobs
        )
    )
    env = dict(os.environ, KLP_POISON_PLAN=str(plan))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [
        Path(f"{plan}.{n}.status").read_text() + Path(f"{plan}.{n}").read_text()
        for n in range(len(jobs))
    ]


def _indexed_pairs(prog: Program, tmp_path: Path) -> set[tuple[str, str]]:
    """(callee, register) of every dependent `klp-lsp index` stores for the program."""
    index = open_readonly(build_index(prog.path, tmp_path / "index", jobs=1).index_path)
    try:
        rows = index.query("SELECT callee, registers FROM register_dependents")
    finally:
        index.close()
    return {
        (prog.names.get(from_db(r[0]), f"{from_db(r[0]):#x}"), reg)
        for r in rows
        for reg in r[1].split()
    }


def _returns(prog: Program, name: str) -> tuple[int, ...]:
    code = prog.functions[prog.addr(name)]
    return tuple(i.address for i in code.insns if i.flow == "return")


@pytest.mark.parametrize(
    "binary",
    [
        "regs-x86_64-O2",
        "regs-x86_64-noipara",
        "regs-x86_64-pg",
        "regs-aarch64-O2",
        "regs-aarch64-noipara",
        "regs-aarch64-patchable",
    ],
)
def test_poisoning_changes_output_exactly_for_reported_pairs(binary: str, tmp_path: Path) -> None:
    prog = program(binary)
    cmd = [*_runner(prog.arch), str(prog.path)]
    abi = get_abi(prog.arch)
    reported = {(prog.names[d.callee], reg) for d in prog.report.dependents for reg in d.registers}
    jobs: list[tuple[str, str, tuple[int, ...]]] = []
    for name in POISONED:
        returns = _returns(prog, name)
        if not returns:
            continue  # `tail` ends in a tail call: its callee's returns are its returns.
        # No result register: void, or (arm64) a result returned in memory at x8.
        no_result = name in VOID or (name in IN_MEMORY and prog.arch == "aarch64")
        carried = set() if no_result else {abi.return_registers[0]}
        for reg in sorted(abi.call_clobbered - carried):
            jobs.append((name, reg, returns))
    # Two plans side by side, each starting with an unpoisoned run.
    halves = [jobs[0::2], jobs[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda n: _run_plan(
                    cmd,
                    tmp_path / f"plan{n}",
                    [("-", ()), *((reg, at) for _, reg, at in halves[n])],
                ),
                range(2),
            )
        )
    baseline = results[0][0]
    assert baseline.startswith("0\nchain ") and results[1][0] == baseline
    outputs = [""] * len(jobs)
    for n in range(2):
        for k, out in enumerate(results[n][1:]):
            outputs[2 * k + n] = out
    changed = {
        (name, reg) for (name, reg, _), out in zip(jobs, outputs, strict=True) if out != baseline
    }
    tested = {(name, reg) for name, reg, _ in jobs}
    indexed = _indexed_pairs(prog, tmp_path)
    for source, pairs in (("analysis", reported), ("index", indexed)):
        assert changed <= pairs, (
            f"{source}: output changed for unreported pairs {sorted(changed - pairs)}"
        )
        idle = sorted((pairs & tested) - changed)
        assert not idle, f"{source}: reported pairs with no effect on output {idle}"
    assert len(jobs) >= 60
