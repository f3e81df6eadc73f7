"""The long fuzzing run: many mutated ELF files, patches and LSP messages, with outcome counts.

    python tests/fuzz/harness.py --elf 10000 --patch 10000 --lsp 10000 --workers 2 --seed 1

Each case runs in one of a few long-lived worker processes, through the same code the command
line runs (`klp_lsp.cli.main`; for LSP messages, a real `klp-lsp serve` per worker). A case
over its time budget is a hang: its worker is killed and replaced. Crashes, hangs and unclean
errors are saved with their inputs under `--out` (default /tmp/klp-fuzz) for a regression
input; `--e2e N` also runs N ELF cases through the real `klp-lsp show` command and compares.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_cases import (
    BUILD,
    ELF_TARGET_KEYS,
    ElfCase,
    FileAudit,
    Outcome,
    default_allowed,
    elf_case_bytes,
    load_elf_targets,
    patch_bases,
    prebuilt_index,
    random_container,
    random_elf_case,
    random_patch,
    run_elf_case,
    run_patch_case,
)

# A worker may use this much address space: a reader that tries to hold gigabytes fails with
# MemoryError (a crash) instead of taking the shared machine down.
_MEMORY_LIMIT = 3 << 30


def _case_rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{index}")


def make_elf_case(seed: int, index: int) -> ElfCase:
    rng = _case_rng(seed, "elf", index)
    key = ELF_TARGET_KEYS[index % len(ELF_TARGET_KEYS)]
    target = _TARGETS[key]
    # One case in eight goes through the builder's process pool, as `--jobs 0` would.
    jobs = 2 if index % 8 == 7 else 1
    return ElfCase(key, random_container(rng, target), tuple(random_elf_case(rng, target)), jobs)


def make_patch_case(seed: int, index: int) -> str:
    return random_patch(_case_rng(seed, "patch", index), _BASES)


_TARGETS = load_elf_targets()
_BASES = patch_bases()


# --- worker side ----------------------------------------------------------------------------


def _worker(kind: str, seed: int, conn: Connection, workdir: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    work = Path(workdir)
    runner = _runner(kind, seed, work)
    try:
        while True:
            index = conn.recv()
            if index is None:
                break
            outcome, payload = runner(index)
            conn.send((index, outcome.kind, outcome.detail, payload))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        closer = getattr(runner, "close", None)
        if closer is not None:
            closer()


def _runner(kind: str, seed: int, work: Path) -> Callable[[int], tuple[Outcome, Any]]:
    if kind == "elf":

        def run_elf(index: int) -> tuple[Outcome, Any]:
            case = make_elf_case(seed, index)
            return run_elf_case(case, _TARGETS[case.target], work), case.to_json()

        return run_elf
    if kind == "patch":
        index_dir = prebuilt_index(work / "index", [BUILD / "x86_64" / "vmlinux"])
        audit = FileAudit(default_allowed([work]))

        def run_patch(index: int) -> tuple[Outcome, Any]:
            text = make_patch_case(seed, index)
            return run_patch_case(text, index_dir, work, audit), text

        return run_patch
    return _LspRunner(seed, work)


class _LspRunner:
    """One `klp-lsp serve` for the worker's cases; restarted when it dies or hangs."""

    def __init__(self, seed: int, work: Path) -> None:
        from lsp_wire import Wire

        self.seed = seed
        self.work = work
        self.index_dir = prebuilt_index(
            work / "index", [BUILD / "x86_64" / "vmlinux", BUILD / "x86_64" / "demo.ko"]
        )
        self._wire_cls = Wire
        self.wire: Any = None
        self.restarts = 0

    def _fresh(self) -> Any:
        if self.wire is not None:
            self.wire.close()
        self.wire = self._wire_cls(self.index_dir, self.work / f"server-{self.restarts}.log")
        self.restarts += 1
        self.wire.start()
        return self.wire

    def __call__(self, index: int) -> tuple[Outcome, Any]:
        from lsp_wire import random_lsp_case, run_lsp_case

        wire = self.wire if self.wire is not None and self.wire.alive() else self._fresh()
        case = random_lsp_case(_case_rng(self.seed, "lsp", index), 10_000 + index)
        kind, detail = run_lsp_case(wire, case, timeout=_LSP_TIMEOUT)
        if kind != "answer":
            log = self.work / f"server-{self.restarts - 1}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            detail = f"{detail}\n{tail}"
            self.wire.close()
            self.wire = None
        payload = {
            "body": case.body.decode("utf-8", "replace"),
            "expect": case.expect,
            "description": case.description,
        }
        return Outcome(kind, detail), payload

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()


_LSP_TIMEOUT = 20.0


# --- parent side ----------------------------------------------------------------------------


class Pool:
    """Long-lived workers, one case each at a time, killed and replaced past the budget."""

    def __init__(self, kind: str, seed: int, workers: int, budget: float, workdir: Path) -> None:
        self.kind, self.seed, self.budget, self.workdir = kind, seed, budget, workdir
        self.ctx = multiprocessing.get_context("spawn")
        self.slots: list[dict[str, Any]] = [self._spawn(i) for i in range(workers)]

    def _spawn(self, slot: int) -> dict[str, Any]:
        ours, theirs = self.ctx.Pipe()
        work = self.workdir / f"w{slot}-{time.monotonic_ns()}"
        work.mkdir(parents=True)
        proc = self.ctx.Process(target=_worker, args=(self.kind, self.seed, theirs, str(work)))
        proc.start()
        theirs.close()
        return {
            "proc": proc,
            "conn": ours,
            "case": None,
            "deadline": 0.0,
            "work": work,
            "slot": slot,
        }

    def _replace(self, s: dict[str, Any]) -> dict[str, Any]:
        proc = s["proc"]
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        s["conn"].close()
        # Its server, if any, goes with it (the worker's process group is not ours to kill).
        shutil.rmtree(s["work"], ignore_errors=True)
        fresh = self._spawn(s["slot"])
        self.slots[s["slot"]] = fresh
        return fresh

    def run(self, indices: list[int]) -> Iterator[tuple[int, str, str, Any]]:
        todo = collections.deque(indices)
        # The first case of a worker also pays for its start (imports, a prebuilt index).
        start_grace = 120.0
        while todo or any(s["case"] is not None for s in self.slots):
            for s in self.slots:
                if s["case"] is None and todo:
                    s["case"] = todo.popleft()
                    grace = start_grace if not s.get("started") else 0.0
                    s["deadline"] = time.monotonic() + self.budget + grace
                    s["conn"].send(s["case"])
            busy = [s for s in self.slots if s["case"] is not None]
            timeout = max(0.0, min(s["deadline"] for s in busy) - time.monotonic())
            ready = wait([s["conn"] for s in busy], timeout=timeout)
            for s in busy:
                if s["conn"] in ready:
                    try:
                        index, kind, detail, payload = s["conn"].recv()
                    except EOFError:
                        code = s["proc"].exitcode
                        yield s["case"], "crash", f"worker died (exit {code})", None
                        self._replace(s)
                        continue
                    s["case"] = None
                    s["started"] = True
                    yield index, kind, detail, payload
                elif time.monotonic() >= s["deadline"]:
                    case = s["case"]
                    yield case, "hang", f"over the {self.budget:.0f} s budget", None
                    self._replace(s)

    def close(self) -> None:
        for s in self.slots:
            with contextlib.suppress(OSError):
                s["conn"].send(None)
        for s in self.slots:
            s["proc"].join(timeout=30)
            if s["proc"].is_alive():
                os.kill(s["proc"].pid, signal.SIGKILL)
                s["proc"].join()


def _payload_for(kind: str, seed: int, index: int) -> Any:
    if kind == "elf":
        return make_elf_case(seed, index).to_json()
    if kind == "patch":
        return make_patch_case(seed, index)
    return None


def _save(
    out: Path, kind: str, seed: int, index: int, outcome: str, detail: str, payload: Any
) -> None:
    d = out / kind
    d.mkdir(parents=True, exist_ok=True)
    if payload is None:
        payload = _payload_for(kind, seed, index)
    record = {"seed": seed, "index": index, "outcome": outcome, "detail": detail, "case": payload}
    (d / f"{outcome}-{index}.json").write_text(json.dumps(record, indent=1))
    if kind == "elf" and payload is not None:
        case = ElfCase.from_json(payload)
        name, data = elf_case_bytes(case, _TARGETS[case.target])
        (d / f"{outcome}-{index}-{case.target.replace('/', '-')}-{name}").write_bytes(data)


def run_kind(kind: str, count: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    budget = args.budget if kind != "lsp" else _LSP_TIMEOUT + 10
    pool = Pool(kind, args.seed, args.workers, budget, workdir / kind)
    counts: collections.Counter[str] = collections.Counter()
    details: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    try:
        indices = list(args.only) if args.only else list(range(count))
        for n, (index, outcome, detail, payload) in enumerate(pool.run(indices), 1):
            counts[outcome] += 1
            if outcome == "answer" and kind == "lsp":
                details[detail] += 1
            if outcome not in ("error", "answer"):
                _save(args.out, kind, args.seed, index, outcome, detail, payload)
                first = detail.strip().splitlines()[-1] if detail.strip() else ""
                print(f"  {kind} #{index}: {outcome}: {first[:160]}", file=sys.stderr, flush=True)
            if n % 500 == 0:
                rate = n / (time.monotonic() - started)
                print(
                    f"  {kind}: {n}/{count} {dict(counts)} ({rate:.1f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        pool.close()
    result: dict[str, Any] = {"cases": count, **{k: counts[k] for k in sorted(counts)}}
    result["seconds"] = round(time.monotonic() - started, 1)
    if details:
        result["responses"] = dict(sorted(details.items()))
    return result


def run_e2e(count: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The first `count` ELF cases through the real `klp-lsp show` command, one process each."""
    from fuzz_cases import judge, run_cli

    agree = 0
    counts: collections.Counter[str] = collections.Counter()
    for index in range(count):
        case = make_elf_case(args.seed, index)
        target = _TARGETS[case.target]
        name, data = elf_case_bytes(case, target)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            mutant = Path(tmp) / name
            mutant.write_bytes(data)
            cmd = [
                "klp-lsp",
                "show",
                target.function,
                "--binary",
                str(mutant),
                "--json",
                "--index-dir",
                str(Path(tmp) / "idx"),
                "--jobs",
                str(case.jobs),
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
            except subprocess.TimeoutExpired:
                counts["hang"] += 1
                continue
            trace = proc.stderr if "Traceback" in proc.stderr else ""
            real = judge(proc.returncode, proc.stdout, proc.stderr, trace, [str(mutant)])
            inproc = judge(*run_cli(cmd[1:]), names=[str(mutant)])
        counts[real.kind] += 1
        if real.kind == inproc.kind:
            agree += 1
        else:
            print(f"  e2e #{index}: command {real.kind}, in-process {inproc.kind}", file=sys.stderr)
    return {"cases": count, **dict(counts), "same_outcome_in_process": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elf", type=int, default=0, help="mutated fixture ELF files")
    parser.add_argument("--patch", type=int, default=0, help="mutated patches")
    parser.add_argument("--lsp", type=int, default=0, help="malformed LSP messages")
    parser.add_argument("--e2e", type=int, default=0, help="ELF cases through the real command")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--out", type=Path, default=Path("/tmp/klp-fuzz"))
    parser.add_argument("--only", type=int, nargs="*", help="run only these case indices")
    args = parser.parse_args()
    report: dict[str, Any] = {"seed": args.seed, "workers": args.workers, "budget_s": args.budget}
    with tempfile.TemporaryDirectory(prefix="klp-fuzz-") as tmp:
        workdir = Path(tmp)
        for kind in ("elf", "patch", "lsp"):
            count = getattr(args, kind)
            if count:
                print(f"{kind}: {count} cases", file=sys.stderr, flush=True)
                report[kind] = run_kind(kind, count, args, workdir)
        if args.e2e:
            report["e2e"] = run_e2e(args.e2e, args, workdir)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
