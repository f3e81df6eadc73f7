"""`klp-lsp fleet` on the committed fixture kernels, on a real Dask cluster.

A fleet of the x86-64 and arm64 fixture kernels (vmlinux and demo.ko), plus kernels that must
fail alone: a missing file, a corrupt binary and a source tree the patch does not apply to.
Each kernel's result must be exactly what `klp-lsp check --format json` says for it alone.
The cluster tests start a two-process `LocalCluster` once for the module, the path a user's
`dask scheduler` + `dask worker` set-up takes (`--scheduler`), and one LocalCluster of the
CLI's own; the spec, plan, matrix and merging tests need no Dask.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from klp_fixtures import FIXTURES, fixture_binary
from test_differential import check_same

from klp_lsp import cli
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import UsageError
from klp_lsp.fleet import tasks
from klp_lsp.fleet.plan import plan_kernel
from klp_lsp.fleet.render import report_to_html, report_to_json, report_to_text
from klp_lsp.fleet.results import (
    KernelOutcome,
    build_matrix,
    differences,
    function_cell,
    kernel_status,
    merge_findings,
)
from klp_lsp.fleet.spec import KernelSpec, load_fleet, parse_fleet_file
from klp_lsp.index.builder import build_index
from klp_lsp.index.store import Index
from klp_lsp.model import CheckResult, Finding, Problem, ReplaceEntry
from klp_lsp.patch.check import Checker
from klp_lsp.patch.render import result_to_json
from klp_lsp.session import Session

PATCH = FIXTURES / "patches" / "demo.patch"
SOURCE = FIXTURES / "kernel"


def _patches() -> list[tuple[str, str]]:
    return [(str(PATCH), PATCH.read_text())]


def _direct_check(binaries: list[Path], index_dir: Path, source: Path) -> CheckResult:
    """What `klp-lsp check` computes for one kernel alone."""
    session = Session(binaries, None, index_dir, jobs=1)
    session.ensure_indexes()
    with session.open() as indexes:
        return Checker(indexes).check_patches(_patches(), source)


def _corrupt_module(tmp_path: Path) -> Path:
    """demo.ko with another build-id and its .debug_info overwritten: it opens, indexing fails."""
    original = fixture_binary("x86_64", "demo.ko")
    data = bytearray(original.read_bytes())
    with ElfBinary.open(original) as b:
        build_id = bytes.fromhex(b.build_id)
        info = b.get_section(".debug_info")
        assert info is not None
    at = data.find(build_id)
    data[at : at + len(build_id)] = bytes(x ^ 0xFF for x in build_id)
    data[info.offset : info.offset + info.size] = b"\xff" * info.size
    out = tmp_path / "corrupt" / "demo.ko"
    out.parent.mkdir()
    out.write_bytes(bytes(data))
    return out


def _old_tree(tmp_path: Path) -> Path:
    """A copy of the fixture source where the patch's first hunk no longer applies."""
    tree = tmp_path / "old-tree"
    shutil.copytree(SOURCE, tree)
    core = tree / "kernel" / "demo_core.c"
    text = core.read_text()
    assert "\tif (bytes > 4096)\n" in text
    core.write_text(text.replace("\tif (bytes > 4096)\n", "\tif (bytes >= 4096)\n"))
    return tree


def _fleet_file(tmp_path: Path) -> Path:
    x86 = [fixture_binary("x86_64", "vmlinux"), fixture_binary("x86_64", "demo.ko")]
    arm = [fixture_binary("arm64", "vmlinux"), fixture_binary("arm64", "demo.ko")]
    corrupt = _corrupt_module(tmp_path)
    old = _old_tree(tmp_path)

    def q(paths: list[Path]) -> str:
        return json.dumps([str(p) for p in paths])

    text = f"""
source = {json.dumps(str(SOURCE))}

[[kernel]]
name = "x86_64"
binaries = {q(x86)}
image = "no/such/vmlinuz"

[[kernel]]
name = "arm64"
binaries = {q(arm)}

[[kernel]]
name = "x86_64 again"
binaries = {q(x86)}

[[kernel]]
name = "missing"
binaries = ["does/not/exist/vmlinux"]

[[kernel]]
name = "corrupt module"
binaries = {q([x86[0], corrupt])}

[[kernel]]
name = "old tree"
binaries = {q(x86[:1])}
source = {json.dumps(str(old))}
"""
    path = tmp_path / "FLEET.toml"
    path.write_text(text)
    return path


# --- the fleet file -----------------------------------------------------------------------------


def test_fleet_file_paths_and_default_source(tmp_path: Path) -> None:
    path = _fleet_file(tmp_path)
    fleet = parse_fleet_file(path)
    names = [k.name for k in fleet.kernels]
    assert names == ["x86_64", "arm64", "x86_64 again", "missing", "corrupt module", "old tree"]
    x86 = fleet.kernels[0]
    assert x86.source == SOURCE
    assert x86.image == tmp_path / "no/such/vmlinuz"  # relative to the fleet file
    assert fleet.kernels[3].binaries == (tmp_path / "does/not/exist/vmlinux",)
    assert fleet.kernels[5].source == tmp_path / "old-tree"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[kernel]]\nbinaries = ['v']\n", "kernel 1: needs a name"),
        ("[[kernel]]\nname = 'a'\n", "kernel 'a': binaries must be a non-empty list"),
        ("[[kernel]]\nname = 'a'\nbinaries = []\n", "binaries must be a non-empty list"),
        (
            "[[kernel]]\nname = 'a'\nbinaries = ['v']\n[[kernel]]\nname = 'a'\nbinaries = ['v']\n",
            "kernel 'a': the name is used twice",
        ),
        ("[[kernel]]\nname = 'a'\nbinary = ['v']\n", "unknown key(s) binary"),
        ("sources = '/x'\n[[kernel]]\nname = 'a'\nbinaries = ['v']\n", "unknown key(s) sources"),
        ("source = '/x'\n", "no [[kernel]] tables"),
        ("[[kernel]]\nname = 'a'\nbinaries = [1]\n", "binaries must be a path"),
        ("[[kernel\n", "not valid TOML"),
    ],
)
def test_bad_fleet_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "FLEET.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as e:
        load_fleet(str(path))
    assert str(path) in str(e.value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def _corpus(tmp_path: Path) -> Path:
    """The layout of get-debian-kernel, with the fixture vmlinux standing in."""
    root = tmp_path / "klp-corpus"
    for version, kdir, release in (
        ("debian-6.1.192-2", "amd64", "6.1.0-56-cloud-amd64"),
        ("debian-6.1.192-2", "generic-amd64", "6.1.0-56-amd64"),
        ("debian-6.1.192-2", "rt-arm64", "6.1.0-56-rt-arm64"),
        ("debian-6.1.192-1", "amd64", "6.1.0-55-cloud-amd64"),
    ):
        d = root / version / kdir
        boot = d / "dbg" / "usr" / "lib" / "debug" / "boot"
        boot.mkdir(parents=True)
        (boot / f"vmlinux-{release}").symlink_to(fixture_binary("x86_64"))
        (d / "vmlinux").symlink_to(f"dbg/usr/lib/debug/boot/vmlinux-{release}")
        (d / "image" / "boot").mkdir(parents=True)
        (d / "image" / "boot" / f"vmlinuz-{release}").write_bytes(b"")
    (root / "debian-6.1.192-2" / "src").mkdir()
    return root


def test_corpus_directory_and_glob(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    whole = load_fleet(str(root))
    assert [k.name for k in whole.kernels] == [
        "cloud-amd64 6.1.0-55",
        "cloud-amd64 6.1.0-56",
        "generic-amd64 6.1.0-56",
        "rt-arm64 6.1.0-56",
    ]
    by_name = {k.name: k for k in whole.kernels}
    assert by_name["cloud-amd64 6.1.0-56"].source == root / "debian-6.1.192-2" / "src"
    assert by_name["cloud-amd64 6.1.0-55"].source is None  # fetched without its source
    image = by_name["rt-arm64 6.1.0-56"].image
    assert image is not None and image.name == "vmlinuz-6.1.0-56-rt-arm64"
    one_version = load_fleet(str(root / "debian-6.1.192-2"))
    assert len(one_version.kernels) == 3
    globbed = load_fleet(str(root / "debian-*" / "*amd64"))
    assert len(globbed.kernels) == 3
    with pytest.raises(UsageError, match="no such file, directory or glob match"):
        load_fleet(str(root / "nothing-*"))
    with pytest.raises(UsageError, match="no such fleet file"):
        load_fleet(str(tmp_path / "FLEET.toml"))


def readelf_build_id(path: Path) -> str:
    """The GNU build-id as binutils' `readelf -n` prints it: the independent reading."""
    notes = subprocess.run(
        ["readelf", "-n", str(path)], check=True, capture_output=True, text=True
    ).stdout
    found = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert found is not None, notes
    return found.group(1)


# --- planning -----------------------------------------------------------------------------------


def test_plan_reads_build_ids_and_reports_bad_files(tmp_path: Path) -> None:
    vmlinux, ko = fixture_binary("x86_64"), fixture_binary("x86_64", "demo.ko")
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copy(ko, modules / "demo.ko")
    plan = plan_kernel(KernelSpec("k", (modules, vmlinux), SOURCE))
    assert plan.error is None
    # vmlinux first, whatever the order given; build-ids as readelf -n prints them.
    assert [(j.object, j.build_id) for j in plan.binaries] == [
        ("vmlinux", readelf_build_id(vmlinux)),
        ("demo", readelf_build_id(ko)),
    ]
    truncated = tmp_path / "vmlinux"
    truncated.write_bytes(vmlinux.read_bytes()[:100])
    bad = plan_kernel(KernelSpec("k", (truncated,), SOURCE))
    assert bad.error is not None and bad.error.startswith(str(truncated))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no .ko" in (plan_kernel(KernelSpec("k", (empty,), SOURCE)).error or "")
    two = plan_kernel(KernelSpec("k", (vmlinux, fixture_binary("arm64")), SOURCE))
    assert "more than one vmlinux" in (two.error or "")
    no_src = plan_kernel(KernelSpec("k", (vmlinux,), tmp_path / "nope"))
    assert no_src.error == f"source {tmp_path / 'nope'}: not a directory"


def readelf_dwarf_size(path: Path) -> int:
    """.debug_info and the location lists as `readelf -S` sizes them (uncompressed files)."""
    table = subprocess.run(
        ["readelf", "-SW", str(path)], check=True, capture_output=True, text=True
    ).stdout
    sizes = re.findall(
        r"\] \.debug_(?:info|loclists|loc) +\w+ +[0-9a-f]+ [0-9a-f]+ ([0-9a-f]+)", table
    )
    assert sizes, table
    return sum(int(size, 16) for size in sizes)


def test_plan_estimates_work_from_the_dwarf(tmp_path: Path) -> None:
    x86, arm64 = fixture_binary("x86_64"), fixture_binary("arm64")
    plans = {
        p.spec.name: p
        for p in map(
            plan_kernel,
            (KernelSpec("x86_64", (x86,), SOURCE), KernelSpec("arm64", (arm64,), SOURCE)),
        )
    }
    work = {name: plan.binaries[0].work for name, plan in plans.items()}
    assert work == {"x86_64": readelf_dwarf_size(x86), "arm64": readelf_dwarf_size(arm64)}
    # The arm64 file is the larger, yet it has less DWARF to walk: the file size is no estimate
    # (on Debian an amd64 vmlinux file is twice an arm64 one, for .rela.debug_*, and indexes
    # faster).
    assert x86.stat().st_size < arm64.stat().st_size and work["x86_64"] > work["arm64"]
    # Compressed debug sections count as what they inflate to.
    packed = tmp_path / "vmlinux"
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", str(x86), str(packed)], check=True)
    assert packed.stat().st_size < x86.stat().st_size
    (job,) = plan_kernel(KernelSpec("packed", (packed,), SOURCE)).binaries
    assert job.work == work["x86_64"]


# --- tasks without a cluster --------------------------------------------------------------------


def test_tasks_return_the_index_when_the_dir_is_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "scratch_dir", lambda: tmp_path / "worker")
    (tmp_path / "worker").mkdir()
    job = plan_kernel(KernelSpec("k", (fixture_binary("x86_64"),), SOURCE)).binaries[0]
    artifact = tasks.index_binary(job, None)
    assert artifact.data is not None and not artifact.reused
    assert Path(artifact.path).parent == tmp_path / "worker"
    plain = build_index(job.path, tmp_path / "plain", jobs=1)
    copy = tmp_path / "client" / "copy.klpidx"
    tasks.store_index(copy, artifact.data)
    check_same(copy, plain.index_path)
    again = tasks.index_binary(job, None)
    assert again.reused and again.data == artifact.data
    check = tasks.check_kernel(_patches(), SOURCE, [artifact])
    direct = _direct_check([job.path], tmp_path / "plain", SOURCE)
    assert result_to_json(check.result) == result_to_json(direct)


# --- the matrix and merging (plain values) ------------------------------------------------------


def _finding(kind: str, function: str, severity: str = "warning", line: int = 3) -> Finding:
    return Finding(kind, severity, function, "vmlinux", f"{function}: {kind}", "p.patch", line)  # type: ignore[arg-type]


def _result(findings: list[Finding], replace: list[str]) -> CheckResult:
    from klp_lsp.model import ChangedFunction

    changed = tuple(
        ChangedFunction(n, "a.c", "vmlinux", "p.patch", 3)
        for n in dict.fromkeys(f.function for f in findings if f.function)
    )
    entries = tuple(ReplaceEntry("vmlinux", s, 0, "changed") for s in replace)
    return CheckResult(changed, tuple(findings), entries, ())


def test_matrix_marks_cells_off_the_majority() -> None:
    common = [_finding("inlined", "f"), _finding("not-patchable", "g", "error")]
    rows = [
        KernelOutcome(KernelSpec("a", (), None), "needs-care", None, _result(common, ["f", "h"])),
        KernelOutcome(KernelSpec("b", (), None), "needs-care", None, _result(common, ["f", "h"])),
        KernelOutcome(
            KernelSpec("c", (), None),
            "needs-care",
            None,
            _result([*common, _finding("has-clones", "f")], ["f", "h", "f.isra.0"]),
        ),
        KernelOutcome(KernelSpec("d", (), None), "failed", "d/vmlinux: no such file", None),
    ]
    m = build_matrix(rows)
    assert m.columns == ("status", "f (a.c)", "g (a.c)", "replace", "errors", "warnings")
    assert m.cells["f (a.c)"] == {"a": "ok inlined", "b": "ok inlined", "c": "ok clones,inlined"}
    assert m.cells["g (a.c)"]["a"] == "CARE not-patchable"
    assert [n for n in m.kernels if m.differs("f (a.c)", n)] == ["c"]
    assert [n for n in m.kernels if m.differs("replace", n)] == ["c"]
    assert [n for n in m.kernels if m.differs("status", n)] == ["d"]
    diffs = differences(rows)
    assert {"what": "replace", "object": "vmlinux", "symbol": "f.isra.0", "sympos": 0,
            "patchable": True, "on": ["c"], "not_on": ["a", "b"]} in diffs  # fmt: skip
    found = [d for d in diffs if d["what"] == "finding"]
    assert found == [
        {"what": "finding", "kind": "has-clones", "function": "f", "object": "vmlinux",
         "on": ["c"], "not_on": ["a", "b"]}
    ]  # fmt: skip
    assert function_cell(_result(common, []), ("zz", "a.c")) == "absent"


def test_status_from_problems() -> None:
    ok = _result([_finding("inlined", "f")], ["f"])
    assert kernel_status(ok) == ("ok", None)
    offset = CheckResult((), (), (), (Problem("p", 9, "hunk applies to a.c at offset +2"),))
    assert kernel_status(offset) == ("ok", None)
    broken = CheckResult((), (), (), (Problem("p", 9, "hunk does not apply to a.c in the tree"),))
    assert kernel_status(broken) == (
        "does-not-apply",
        "p:9: hunk does not apply to a.c in the tree",
    )


def test_merged_findings_name_their_kernels() -> None:
    everywhere = _finding("inlined", "f")
    some = _finding("not-patchable", "g", "error", line=7)
    merged = merge_findings(
        [
            ("cloud-amd64 6.1.0-56", _result([everywhere], [])),
            ("rt-amd64 6.1.0-56", _result([everywhere, some], [])),
            ("rt-arm64 6.1.0-56", _result([everywhere, some], [])),
        ]
    )
    assert [f.message for f in merged] == [
        "on all 3 kernels: f: inlined",
        "not-patchable on 2 of 3 kernels: rt-amd64 6.1.0-56, rt-arm64 6.1.0-56. g: not-patchable",
    ]
    assert merged[1].severity == "error" and merged[1].patch_line == 7


# --- on a Dask cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """Two worker processes, one thread each, as `dask worker --nworkers 2 --nthreads 1` gives."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _run(fleet: Path, index_dir: Path, scheduler: str, *extra: str) -> dict[str, object]:
    out = index_dir.parent / f"{index_dir.name}.json"
    rc = cli.main(
        [
            "fleet",
            str(PATCH),
            "--kernels",
            str(fleet),
            "--scheduler",
            scheduler,
            "--index-dir",
            str(index_dir),
            "--format",
            "json",
            "-o",
            str(out),
            "--quiet",
            *extra,
        ]
    )
    assert rc == 1  # error findings, and failed kernels
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_fleet_on_a_cluster(scheduler: str, tmp_path: Path) -> None:
    fleet = _fleet_file(tmp_path)
    index_dir = tmp_path / "idx"
    report = _run(fleet, index_dir, scheduler)
    assert report["shared_index_dir"] is True
    kernels = {k["name"]: k for k in report["kernels"]}  # type: ignore[attr-defined]
    assert {n: k["status"] for n, k in kernels.items()} == {
        "x86_64": "needs-care",
        "arm64": "needs-care",
        "x86_64 again": "needs-care",
        "missing": "failed",
        "corrupt module": "failed",
        "old tree": "does-not-apply",
    }
    # Each kernel's result is what `klp-lsp check --format json` prints for it alone.
    for name, arch in (("x86_64", "x86_64"), ("arm64", "arm64")):
        binaries = [fixture_binary(arch), fixture_binary(arch, "demo.ko")]
        direct = _direct_check(binaries, tmp_path / "direct", SOURCE)
        assert kernels[name]["result"] == result_to_json(direct)
    assert kernels["x86_64 again"]["result"] == kernels["x86_64"]["result"]
    # The facts a kernel engineer checks by hand (objdump -d: demo_lib_sum keeps rcx, rdx,
    # r8-r10 live across `call demo_lib_step`; on arm64 x2-x7 across `bl demo_lib_step`).
    x86_replace = kernels["x86_64"]["result"]["replace"]
    assert {(e["symbol"], e["patchable"]) for e in x86_replace} == {
        ("demo_submit", True),
        ("demo_complete", True),
        ("demo_reset", True),
        ("demo_lookup", True),
        ("demo_lookup.part.0", True),
        ("demo_lib_step", False),
        ("demo_lib_sum", False),
    }
    regs = [f for f in kernels["arm64"]["result"]["findings"] if f["kind"] == "register-dependents"]
    assert "x2, x3, x4, x5, x6, x7" in regs[0]["message"]
    # One index per build-id: the two x86_64 kernels share theirs, and nothing was reused.
    built = {b["build_id"]: b for k in kernels.values() for b in k["binaries"] if b["index"]}
    assert set(built) == {
        readelf_build_id(fixture_binary(arch, name))
        for arch in ("x86_64", "arm64")
        for name in ("vmlinux", "demo.ko")
    }
    assert all(not b["reused"] for b in built.values())
    # The corrupt module left no temporary file behind (SQLite's -wal/-shm files aside).
    files = sorted(p.name for p in index_dir.iterdir() if not p.name.endswith(("-wal", "-shm")))
    assert files == sorted(f"{b}.klpidx" for b in built), files
    # Failing kernels fail alone, with one line naming the file.
    assert (
        kernels["missing"]["error"]
        == f"{tmp_path / 'does/not/exist/vmlinux'}: no such file or directory"
    )
    corrupt = kernels["corrupt module"]["error"]
    assert corrupt.startswith(str(tmp_path / "corrupt" / "demo.ko")) and "\n" not in corrupt
    assert (
        kernels["old tree"]["error"]
        == f"{PATCH}:16: hunk does not apply to kernel/demo_core.c in the tree"
    )
    assert kernels["x86_64"]["warnings"] == [
        f"image {tmp_path / 'no/such/vmlinuz'}: no such file or directory"
    ]
    statuses = [d for d in report["differences"] if d.get("column") == "status"]  # type: ignore[attr-defined]
    assert statuses == [
        {
            "what": "cell",
            "column": "status",
            "majority": "needs-care",
            "kernels": {
                "missing": "failed",
                "corrupt module": "failed",
                "old tree": "does-not-apply",
            },
        }
    ]
    # A second run reuses every index: none is rebuilt, the files stay as they were.
    stamps = {p.name: p.stat().st_mtime_ns for p in index_dir.glob("*.klpidx")}
    again = _run(fleet, index_dir, scheduler)
    reused = [b["reused"] for k in again["kernels"] for b in k["binaries"] if b["index"]]  # type: ignore[attr-defined]
    assert reused and all(reused)
    assert {p.name: p.stat().st_mtime_ns for p in index_dir.glob("*.klpidx")} == stamps


def test_indexes_come_back_to_the_client(scheduler: str, tmp_path: Path) -> None:
    from klp_lsp.fleet.engine import FleetOptions, run_fleet

    fleet = load_fleet(str(_fleet_file(tmp_path)))
    kernels = tuple(k for k in fleet.kernels if k.name in ("x86_64", "arm64"))
    options = FleetOptions(tmp_path / "client-idx", scheduler=scheduler, share_index_dir=False)
    report = run_fleet(type(fleet)(fleet.origin, kernels), _patches(), options)
    assert report.shared_index_dir is False
    for k in report.kernels:
        assert k.status == "needs-care"
        for b in k.binaries:
            # Stored in the client's index dir, identical to an index built here.
            assert b.index == str(tmp_path / "client-idx" / f"{b.build_id}.klpidx")
            plain = build_index(Path(b.path), tmp_path / "plain", jobs=1)
            check_same(Path(b.index), plain.index_path)


@contextmanager
def traced_cluster(workers: int) -> Iterator[tuple[str, Any]]:
    """A cluster of one-thread workers in this process, and the task stream it records."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as stream,
    ):
        yield cluster.scheduler_address, stream


def test_one_vmlinux_spreads_over_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster of threads in this process, so that one CU per batch (monkeypatched) holds in
    # the writer task too; the batches share the workers' process with the writer.
    from klp_lsp.fleet.engine import FleetOptions, run_fleet
    from klp_lsp.index import builder

    monkeypatch.setattr(builder, "_BATCH_BYTES", 1)
    spec = KernelSpec("x86_64", (fixture_binary("x86_64"),), SOURCE)
    with traced_cluster(2) as (address, stream):
        options = FleetOptions(tmp_path / "idx", scheduler=address, spread_bytes=0)
        report = run_fleet(load_fleet_of([spec]), _patches(), options)
    plain = build_index(fixture_binary("x86_64"), tmp_path / "plain", jobs=1)
    index = Index(plain.index_path)
    n_cus = index.query("SELECT count(*) FROM cus")[0][0]
    index.close()
    # One task per CU of the fixture vmlinux (C and asm), beside the writer task.
    batches = [t for t in stream.data if str(t["key"]).startswith("_index_batch")]
    assert len(batches) == n_cus >= 7
    (k,) = report.kernels
    assert k.status == "needs-care"
    assert k.binaries[0].index is not None
    check_same(Path(k.binaries[0].index), plain.index_path)


def test_the_most_work_starts_first(tmp_path: Path) -> None:
    # One worker thread: the index tasks run one after another, in the order the client asks.
    from klp_lsp.fleet.engine import FleetOptions, run_fleet

    specs = [
        KernelSpec("arm64", (fixture_binary("arm64"),), SOURCE),
        KernelSpec("x86_64", (fixture_binary("x86_64"),), SOURCE),
    ]
    with traced_cluster(1) as (address, stream):
        options = FleetOptions(tmp_path / "idx", scheduler=address)
        report = run_fleet(load_fleet_of(specs), _patches(), options)
    assert [k.status for k in report.kernels] == ["needs-care", "needs-care"]
    started = sorted(
        (min(s["start"] for s in t["startstops"] if s["action"] == "compute"), t["key"])
        for t in stream.data
        if str(t["key"]).startswith("klp-index-")
    )
    # The x86_64 vmlinux has more DWARF (readelf -S), though its file is the smaller.
    by_arch = {readelf_build_id(fixture_binary(arch))[:16]: arch for arch in ("x86_64", "arm64")}
    order = [next(a for b, a in by_arch.items() if b in str(key)) for _, key in started]
    assert order == ["x86_64", "arm64"]


def load_fleet_of(kernels: list[KernelSpec]) -> object:
    from klp_lsp.fleet.spec import FleetSpec

    return FleetSpec("test", tuple(kernels))


def test_local_cluster_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    fleet = tmp_path / "FLEET.toml"
    fleet.write_text(
        f"source = {json.dumps(str(SOURCE))}\n"
        f"[[kernel]]\nname = 'x86_64'\nbinaries = [{json.dumps(str(fixture_binary('x86_64')))}]\n"
        f"[[kernel]]\nname = 'arm64'\nbinaries = [{json.dumps(str(fixture_binary('arm64')))}]\n"
    )
    html_out = tmp_path / "report.html"
    args = ["fleet", str(PATCH), "--kernels", str(fleet), "--index-dir", str(tmp_path / "idx")]
    assert cli.main([*args, "--workers", "1", "--format", "html", "-o", str(html_out)]) == 1
    page = html_out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'href="#kernel-1"' in page and 'id="kernel-1"' in page
    assert "demo_lib_sum sympos 0: relies on x2, x3, x4, x5, x6, x7" in page
    # Offline: nothing loaded from elsewhere.
    assert "http" not in page and "<script" not in page
    assert cli.main([*args, "--workers", "1"]) == 1
    text = capsys.readouterr().out
    assert "LocalCluster, 1 worker(s)" in text
    assert "no differences between the kernels checked" in text


def test_without_dask_fleet_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc = cli.main(["fleet", str(PATCH), "--kernels", str(tmp_path / "FLEET.toml")])
    assert rc == 2
    assert (
        capsys.readouterr().err
        == "klp-lsp: klp-lsp fleet needs Dask: pip install 'klp-lsp[fleet]'\n"
    )


def test_reports_render_every_kernel(tmp_path: Path) -> None:
    from klp_lsp.fleet.results import FleetReport

    rows = (
        KernelOutcome(
            KernelSpec("a", (), None),
            "needs-care",
            None,
            _result([_finding("inlined", "f")], ["f"]),
        ),
        KernelOutcome(KernelSpec("b <rt>", (), None), "failed", "b/vmlinux: no such file", None),
    )
    report = FleetReport(
        "FLEET.toml", ("p.patch",), rows, "LocalCluster, 2 worker(s)", True, "/idx", 1.0
    )
    text = report_to_text(report)
    assert "b <rt>  failed*" in text and "b <rt>: b/vmlinux: no such file" in text
    assert "\x1b[" not in text and "\x1b[1;7m" in report_to_text(report, color=True)
    doc = report_to_json(report)
    assert [k["status"] for k in doc["kernels"]] == ["needs-care", "failed"]
    assert doc["kernels"][0]["result"]["replace"][0]["symbol"] == "f"
    assert "b &lt;rt&gt;" in report_to_html(report)


@pytest.mark.parametrize(
    ("name", "comp_dir", "tree_name"),
    [
        # Debian's rt flavour: a patched copy of the tree beside the build directory.
        (
            "debian/build/source_rt/kernel/sched/core.c",
            "debian/build/build_amd64_rt_amd64",
            "kernel/sched/core.c",
        ),
        # Its cloud and generic flavours: the package's own tree.
        ("kernel/sched/core.c", "debian/build/build_amd64_none_cloud-amd64", "kernel/sched/core.c"),
        ("./kernel/fork.c", "/usr/src/linux", "kernel/fork.c"),
        ("/usr/src/linux/arch/x86/lib/hweight.S", "/usr/src/linux/build", "arch/x86/lib/hweight.S"),
        ("kernel/demo_core.c", "", "kernel/demo_core.c"),
    ],
)
def test_tree_names_of_flavour_builds(name: str, comp_dir: str, tree_name: str) -> None:
    # Found by the real fleet: rt's CUs were "not built into this kernel" for every patch.
    from klp_lsp.index.store import source_name

    assert source_name(name, comp_dir) == tree_name
