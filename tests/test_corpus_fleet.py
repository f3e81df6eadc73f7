"""The fleet on six real Debian 6.1 builds: where their answers really differ, and why.

Opt-in: `KLP_FLEET=bench/fleet-debian-6.1.toml` (fetch the builds as docs/fleet.md says).
`KLP_FLEET_INDEX_DIR` reuses indexes built before (a cold run indexes six vmlinux files and
three ext4.ko, about 20 minutes on two busy cores); without it the run is cold, in a temporary
directory. Each difference the fleet reports is checked against what the files say: the
kernel config, the symbol table (`nm`), the machine code (`objdump -d`) and the source trees.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from klp_lsp.fleet.results import FleetReport, KernelOutcome, differences
from klp_lsp.fleet.spec import load_fleet

FLEET = os.environ.get("KLP_FLEET")
ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "tests" / "patches" / "debian-6.1"
NAMES = ("ext4-buddy_page_lock.patch", "inlined-enqueue_task.patch", "clones-getname_flags.patch")

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.slow,
    pytest.mark.skipif(not FLEET, reason="set KLP_FLEET to a fleet file of real Debian builds"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetReport]:
    pytest.importorskip("distributed")
    from klp_lsp.fleet.engine import FleetOptions, run_fleet

    assert FLEET is not None
    index_dir = os.environ.get("KLP_FLEET_INDEX_DIR")
    options = FleetOptions(
        Path(index_dir) if index_dir else tmp_path_factory.mktemp("fleet-idx"),
        workers=2,
        dashboard=None,
    )
    patches = [(str(PATCHES / n), (PATCHES / n).read_text()) for n in NAMES]
    yield run_fleet(load_fleet(FLEET), patches, options)


def _kernel(report: FleetReport, name: str) -> KernelOutcome:
    return next(k for k in report.kernels if k.spec.name == name)


def _config(k: KernelOutcome, option: str) -> str | None:
    vmlinux = k.spec.binaries[0]
    config = vmlinux.parent / "config"
    m = re.search(rf"^{option}=(\S+)$", config.read_text(), re.M)
    return m.group(1) if m else None


def _nm(binary: Path, name: str) -> list[str]:
    out = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.endswith(f" {name}")]


def _replace(k: KernelOutcome) -> set[tuple[str, str, bool]]:
    assert k.result is not None
    return {(e.object, e.symbol, e.patchable) for e in k.result.replace}


def test_every_kernel_is_checked(report: FleetReport) -> None:
    assert len(report.kernels) >= 6
    statuses = {k.spec.name: k.status for k in report.kernels}
    assert statuses["cloud-amd64 6.1.0-55"] == "does-not-apply"
    assert all(s == "needs-care" for n, s in statuses.items() if n != "cloud-amd64 6.1.0-55")


def test_ext4_fix_does_not_apply_to_the_older_abi(report: FleetReport) -> None:
    old = _kernel(report, "cloud-amd64 6.1.0-55")
    assert old.error is not None
    assert old.error.endswith("hunk does not apply to fs/ext4/mballoc.c in the tree")
    # 6.1.192-2 (ABI -56) fixed the __filemap_get_folio checks the patch's context shows;
    # 6.1.192-1 (ABI -55) still tests IS_ERR() there.
    assert old.spec.source is not None
    context = "\tif (!folio)\n\t\treturn -ENOMEM;\n\tBUG_ON(folio->mapping != inode->i_mapping);"
    assert context not in (old.spec.source / "fs/ext4/mballoc.c").read_text()
    new = _kernel(report, "cloud-amd64 6.1.0-56")
    assert new.spec.source is not None
    assert context in (new.spec.source / "fs/ext4/mballoc.c").read_text()
    # Its other patches still give their answers there.
    assert old.result is not None
    assert {c.name for c in old.result.changed_functions} == {"enqueue_task", "getname_flags"}


def test_ext4_is_vmlinux_on_cloud_and_a_module_elsewhere(report: FleetReport) -> None:
    for k in report.kernels:
        if k.status == "does-not-apply":
            continue
        objects = {o for o, s, _ in _replace(k) if s == "ext4_mb_init_group"}
        built_in = _config(k, "CONFIG_EXT4_FS") == "y"
        assert objects == ({"vmlinux"} if built_in else {"ext4"}), k.spec.name
        # The symbol table agrees: the caller the fix must replace lives where ext4 is built.
        assert bool(_nm(k.spec.binaries[0], "ext4_mb_init_group")) == built_in, k.spec.name


def test_rt_kernels_have_no_numa_balancing_callers(report: FleetReport) -> None:
    for k in report.kernels:
        numa = _config(k, "CONFIG_NUMA_BALANCING") == "y"
        replaced = {s for _, s, _ in _replace(k)}
        assert ("sched_setnuma" in replaced) == numa, k.spec.name
        assert ("__migrate_swap_task.part.0" in replaced) == numa, k.spec.name
        assert bool(_nm(k.spec.binaries[0], "sched_setnuma")) == numa, k.spec.name
    assert not any(
        _config(k, "CONFIG_NUMA_BALANCING") for k in report.kernels if k.spec.name.startswith("rt-")
    )


def _first_instructions(objdump: str, binary: Path, address: int, n: int) -> list[str]:
    out = subprocess.run(
        [
            objdump,
            "-d",
            f"--start-address={address:#x}",
            f"--stop-address={address + 4 * n:#x}",
            str(binary),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("\t")[2].strip() for line in out.splitlines() if line.count("\t") >= 2]


def test_arm64_keeps_an_untraceable_copy_of_enqueue_task(report: FleetReport) -> None:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    for k in report.kernels:
        vmlinux = k.spec.binaries[0]
        copies = _nm(vmlinux, "enqueue_task")
        arm64 = "arm64" in k.spec.name
        # GCC inlined every call on amd64; on arm64 it also emitted a local out-of-line copy.
        assert (("vmlinux", "enqueue_task", False) in _replace(k)) == arm64, k.spec.name
        assert bool(copies) == arm64, k.spec.name
        if not arm64 or objdump is None:
            continue
        address = int(copies[0].split()[0], 16)
        # `static inline` implies notrace: no patchable-function-entry NOPs, so no ftrace
        # record; a traced function of the same file starts with two NOPs.
        assert _first_instructions(objdump, vmlinux, address, 2) != ["nop", "nop"]
        traced = int(_nm(vmlinux, "activate_task")[0].split()[0], 16)
        assert _first_instructions(objdump, vmlinux, traced, 2) == ["nop", "nop"]


def test_differences_name_the_kernels(report: FleetReport) -> None:
    diffs: list[dict[str, Any]] = differences(report.kernels)
    numa = next(d for d in diffs if d["what"] == "replace" and d["symbol"] == "sched_setnuma")
    assert {n for n in numa["not_on"]} == {"rt-amd64 6.1.0-56", "rt-arm64 6.1.0-56"}
    status = next(d for d in diffs if d["what"] == "cell" and d["column"] == "status")
    assert status["kernels"] == {"cloud-amd64 6.1.0-55": "does-not-apply"}
