"""Opt-in: `verify` and `try` of real live patches on Debian's 6.1 amd64 kernel, and whether they
agree. The modules (tests/corpus/livepatch/) are built here against
linux-headers-6.1.0-56-cloud-amd64; one boot of the kernel's own image loads them all.

Needs KLP_CORPUS_DIR (the corpus), the headers package, qemu-system-x86 and busybox-static. The
whole vmlinux is indexed unless KLP_CORPUS_INDEX_DIR names a directory holding its index.
For every case the kernel can see (it refuses the module), verify reports an error carrying the
kernel's own message, and the kernel's log in the VM shows that message; for the cases the
kernel cannot see (a clone's ABI, a missing inline host), verify reports the error and the
kernel loads the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from klp_fixtures import ROOT, corpus_dir

from klp_lsp.livepatch.verify import VerifyResult, verify_module
from klp_lsp.session import Session

CORPUS = corpus_dir()
HEADERS = Path(os.environ.get("KLP_KERNEL_HEADERS", "/usr/src/linux-headers-6.1.0-56-cloud-amd64"))
SOURCES = ROOT / "tests" / "corpus" / "livepatch"
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(CORPUS is None, reason="set KLP_CORPUS_DIR to the Debian kernel corpus"),
    pytest.mark.skipif(not (HEADERS / "Makefile").exists(), reason=f"no {HEADERS}"),
]

# module -> (finding kind verify reports as an error, the kernel's message or None when the
# kernel cannot see the problem and loads the module)
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "lp_cmdline": (None, None),
    "lp_sympos": (
        "unresolved-symbol",
        "unresolvable ambiguity for symbol 'active_show' in object '(null)'",
    ),
    "lp_inlined": ("unresolved-symbol", "symbol 'find_process_by_pid' not found in symbol table"),
    "lp_cold": ("unpatchable-target", "failed to find location for function 'x86_pmu_add.cold'"),
    "lp_init": ("unpatchable-target", "failed to find location for function 'quiet_kernel'"),
    "lp_clone_abi": ("abi-mismatch", None),
    "lp_inline_host": ("coverage", None),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus-livepatch")
    for f in SOURCES.iterdir():
        shutil.copy(f, out / f.name)
    done = subprocess.run(
        ["make", "-C", str(HEADERS), f"M={out}", "modules"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    assert CORPUS is not None
    index_dir = os.environ.get("KLP_CORPUS_INDEX_DIR")
    d = Path(index_dir) if index_dir else tmp_path_factory.mktemp("corpus-index")
    return Session([CORPUS / "amd64" / "vmlinux"], None, d, jobs=2)


def _verify(session: Session, built: Path, name: str) -> VerifyResult:
    patches = []
    if name == "lp_inline_host":
        patches = [("inline-host.patch", (SOURCES / "inline-host.patch").read_text())]
    assert CORPUS is not None
    return verify_module(built / f"{name}.ko", session, patches=patches, source_root=CORPUS / "src")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verify(session: Session, built: Path, name: str) -> None:
    kind, message = EXPECTED[name]
    result = _verify(session, built, name)
    errors = [f for f in result.all_findings if f.severity == "error"]
    if kind is None:
        assert errors == [], [f.message for f in errors]
        return
    assert {f.kind for f in errors} == {kind}, [f.message for f in errors]
    if message is not None:
        assert any(message in f.message for f in errors)
    if name == "lp_inline_host":
        # The nine other functions find_process_by_pid is inlined into (readelf
        # --debug-dump=info), and the two syscall stubs of __do_sys_sched_setattr, which has no
        # ftrace record.
        missing = {f.function for f in errors}
        assert "sched_setaffinity" in missing and "sched_getaffinity" not in missing
        assert len(missing) == 11


@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("busybox") is None,
    reason="needs qemu-system-x86 and busybox-static",
)
def test_try_agrees_with_verify(session: Session, built: Path) -> None:
    from klp_lsp.vm.kernel import try_in_session

    names = sorted(EXPECTED)
    result = try_in_session(
        session,
        [built / f"{n}.ko" for n in names],
        run="cat /proc/cmdline",
        timeout=240,
    )
    assert result.booted and result.release == "6.1.0-56-cloud-amd64"
    for name, load in zip(names, result.modules, strict=True):
        _kind, message = EXPECTED[name]
        if message is None:
            # Nothing the kernel checks is wrong: it loads and patches.
            assert load.loaded and load.transition == "complete", (name, load)
        else:
            assert not load.loaded and load.transition == "failed", (name, load)
            assert any(message in line for line in load.kernel_log), (name, load.kernel_log)
    assert result.run is not None and result.run.output == "this has been live patched"


def _filled(skeleton: str) -> str:
    """The skeleton with each TODO body replaced by the simplest body that compiles."""
    out, declaration = [], ""
    for line in skeleton.splitlines():
        if line.startswith("static ") and "(" in line:
            declaration = line
        if line.strip().startswith("/* TODO: copy the patched body"):
            line = "" if declaration.startswith("static void ") else "\treturn 0;"
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("busybox") is None,
    reason="needs qemu-system-x86 and busybox-static",
)
def test_skeleton_builds_verifies_and_loads(session: Session, tmp_path: Path) -> None:
    """The skeleton of inline-host.patch (find_process_by_pid, inlined into ten functions, two of
    two more reached through syscall stubs), bodies filled, builds against the headers, verifies
    clean with the patch, and the kernel loads it."""
    from klp_lsp.livepatch.skeleton import build_skeleton, render_kbuild
    from klp_lsp.patch.check import Checker
    from klp_lsp.vm.kernel import try_in_session

    assert CORPUS is not None
    patch = ("inline-host.patch", (SOURCES / "inline-host.patch").read_text())
    session.ensure_indexes()
    with session.open() as indexes:
        result = Checker(indexes).check_patches([patch], CORPUS / "src")
        text = build_skeleton(result, indexes, CORPUS / "src", ["inline-host.patch"])
    assert "static long livepatch_sched_getaffinity(pid_t pid, struct cpumask *mask)" in text
    assert "static long livepatch___x64_sys_sched_setattr(const struct pt_regs *regs)" in text
    (tmp_path / "lp_skeleton.c").write_text(_filled(text))
    (tmp_path / "Kbuild").write_text(render_kbuild("lp_skeleton"))
    done = subprocess.run(["make", "-C", str(HEADERS), f"M={tmp_path}", "modules"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    verified = verify_module(
        tmp_path / "lp_skeleton.ko", session, patches=[patch], source_root=CORPUS / "src"
    )
    assert [f.message for f in verified.all_findings if f.severity == "error"] == []
    assert len(verified.functions) == 12  # the 10 hosts and the 2 syscall stubs
    loaded = try_in_session(session, [tmp_path / "lp_skeleton.ko"], timeout=240)
    (load,) = loaded.modules
    assert load.loaded and load.transition == "complete", load
