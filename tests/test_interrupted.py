"""`kill -9` of every process that writes an index: the next run never serves a half index, and
resumes or rebuilds it into exactly the index an uninterrupted build makes.

Three writers: `klp-lsp index`, the background process `klp-lsp check` starts to finish a
partial index, and the language server's indexing child. Each is killed with a real SIGKILL at
several moments (the fixture kernel indexes in about a second, so the kills land before, during
and after its writes), then the next run is checked: its answer, the index's `complete` flag,
no CU left unanalysed, no temporary file left, and every table equal to a clean build's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from klp_fixtures import FIXTURES, ROOT, corpus_dir, fixture_binary

from klp_lsp.index.builder import build_index

VMLINUX = fixture_binary("x86_64")
PATCH = FIXTURES / "patches" / "demo.patch"
_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "server")}


def _klp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_ENV,
        cwd=ROOT,
    )


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "klp_lsp", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_ENV,
        cwd=ROOT,
    )


def _dump(index: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, sorted; meta without the fields that name the run."""
    con = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for t in tables:
            rows = con.execute(f"SELECT * FROM {t}").fetchall()
            if t == "meta":
                rows = [r for r in rows if r[0] not in ("binary",)]
            if t == "symbols":
                rows = [r[1:] for r in rows]  # the rowid is insertion order
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[object, ...]]]:
    """The tables of an uninterrupted build of the fixture vmlinux."""
    d = tmp_path_factory.mktemp("reference")
    return _dump(build_index(VMLINUX, d, jobs=1).index_path)


def _index_files(d: Path) -> tuple[list[Path], list[Path]]:
    """(published index files, temporary files) in an index directory."""
    published = sorted(d.glob("*.klpidx"))
    temporary = sorted(p for p in d.glob(".*.tmp"))
    return published, temporary


def _assert_whole(d: Path, reference: dict[str, list[tuple[object, ...]]]) -> None:
    published, temporary = _index_files(d)
    assert len(published) == 1, published
    assert not temporary, temporary
    got = _dump(published[0])
    assert dict(got["meta"])["complete"] == "1"
    assert all(row[10] >= 2 for row in got["cus"]), "a CU left unanalysed"
    assert got == reference


def _assert_never_half(d: Path) -> None:
    """What a reader can see after the kill: nothing, or an index whose CUs are whole."""
    published, _temporary = _index_files(d)
    for index in published:
        got = _dump(index)
        meta = dict(got["meta"])
        assert meta.get("build_id"), "a published index without its header"
        if meta.get("complete") == "1":
            assert all(row[10] >= 2 for row in got["cus"])


def _spawned(pid: int) -> bool:
    """Whether `pid` is a process started by multiprocessing's spawn (not its helpers)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _gone(pids: list[int]) -> bool:
    return not [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _assert_no_process_left(index_dir: Path) -> None:
    """A killed writer's pool workers die with it (they are forks: same command line)."""
    assert _wait_for(lambda: not _background_index_pids(index_dir), timeout=30), (
        f"processes left behind: {_background_index_pids(index_dir)}"
    )


def _show(d: Path) -> dict[str, object]:
    proc = _klp("show", "demo_lookup", "--binary", str(VMLINUX), "--json", "--index-dir", str(d))
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, object] = json.loads(proc.stdout)
    assert answer["matches"]
    return answer


def _wait_for(predicate: object, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.002)
    return False


@pytest.fixture(scope="module")
def index_seconds(tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long an uninterrupted `klp-lsp index --jobs 2` of the fixture writes, from its
    temporary file's appearance to its exit, on this machine now: the kills below land at
    fractions of it, so every one of them interrupts a writer (fixed sleeps did not on a fast
    machine, where the whole build takes 0.2 s)."""
    d = tmp_path_factory.mktemp("timed")
    writer = _start("index", str(VMLINUX), "--index-dir", str(d), "--jobs", "2", "--quiet")
    assert _wait_for(lambda: any(_index_files(d)[1]) or writer.poll() is not None)
    started = time.monotonic()
    assert writer.wait() == 0
    return time.monotonic() - started


# Fractions of `index_seconds` after the temporary file appears: at 0 it is empty, then it lists
# the CUs, holds the symbols, and gains analysed CUs batch by batch.
_FRACTIONS = (0.0, 0.1, 0.25, 0.5)


@pytest.mark.parametrize("fraction", _FRACTIONS)
def test_kill_index(
    tmp_path: Path,
    reference: dict[str, list[tuple[object, ...]]],
    index_seconds: float,
    fraction: float,
) -> None:
    writer = _start("index", str(VMLINUX), "--index-dir", str(tmp_path), "--jobs", "2", "--quiet")
    try:
        assert _wait_for(lambda: any(_index_files(tmp_path)[1]) or writer.poll() is not None)
        time.sleep(fraction * index_seconds)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait()
    assert writer.returncode == -signal.SIGKILL, "the writer had finished: nothing was interrupted"
    _assert_no_process_left(tmp_path)
    _assert_never_half(tmp_path)
    _show(tmp_path)
    _assert_whole(tmp_path, reference)


def _background_index_pids(index_dir: Path) -> list[int]:
    """Processes whose command line is `... klp_lsp index ... --index-dir INDEX_DIR ...`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"index" in argv and str(index_dir).encode() in argv:
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("fraction", _FRACTIONS)
def test_kill_the_background_completion_of_check(
    tmp_path: Path,
    reference: dict[str, list[tuple[object, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    index_seconds: float,
    fraction: float,
) -> None:
    """`check` indexes the CUs a patch touches, answers, and leaves the rest to a detached
    `klp-lsp index`; that process is killed.

    `check` does this for binaries of 200 MB and more (a vmlinux); the threshold is lowered so
    the fixture kernel goes the same way. `check` runs in this process; the background process
    it starts is the real one.
    """
    import io

    from klp_lsp import cli, session

    monkeypatch.setattr(session, "_POOL_OVER_CUS_BYTES", 0)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(
            ["check", str(PATCH), "--binary", str(VMLINUX), "--source", str(FIXTURES / "kernel"),
             "--index-dir", str(tmp_path), "--format", "json", "--jobs", "1"]
        )  # fmt: skip
    assert code == 1, err.getvalue()  # the demo patch has error findings
    assert "indexing the rest of the kernel in the background" in err.getvalue()
    (published,), _ = _index_files(tmp_path)
    assert dict(_dump(published)["meta"])["complete"] == "0", "check left a partial index"
    pids: list[int] = []
    assert _wait_for(
        lambda: bool(pids.extend(_background_index_pids(tmp_path)) or pids), timeout=10
    ), "no background index process"
    time.sleep(fraction * index_seconds)
    assert not _gone(pids), "the background index had finished: nothing was interrupted"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # It runs detached (its own session, not our child): wait until it and its pool are gone.
    _assert_no_process_left(tmp_path)
    _assert_never_half(tmp_path)
    _show(tmp_path)
    _assert_whole(tmp_path, reference)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[object]:
    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    from lsp_wire import Wire

    wires: list[Wire] = []

    def make() -> Wire:
        w = Wire(tmp_path)
        wires.append(w)
        return w

    yield make
    for w in wires:
        w.close()
    sys.path.remove(str(ROOT / "tests" / "fuzz"))


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out.extend(int(c) for c in (task / "children").read_text().split())
    except OSError:
        pass
    return out


def _descendants(pid: int) -> list[int]:
    out = []
    todo = _children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


@pytest.mark.parametrize("fraction", (0.0, 0.1, 0.25))
def test_kill_the_language_servers_indexing_child(
    tmp_path: Path,
    reference: dict[str, list[tuple[object, ...]]],
    server: object,
    index_seconds: float,
    fraction: float,
) -> None:
    from lsp_wire import Wire

    wire: Wire = server()  # type: ignore[operator]
    options = {
        "binaries": [str(VMLINUX)],
        "sourceRoot": str(FIXTURES / "kernel"),
        "indexDir": str(tmp_path),
    }
    params = {"processId": os.getpid(), "capabilities": {}, "initializationOptions": options}
    assert wire.request("initialize", params) is not None
    wire.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    # The indexing child is a spawned process; the server's other child is multiprocessing's
    # resource tracker, started first, whose death stops nothing.
    children: list[int] = []
    assert _wait_for(
        lambda: bool(
            children.extend(p for p in _children(wire.proc.pid) if _spawned(p)) or children
        )
    )
    time.sleep(fraction * index_seconds)
    assert not _gone(children), "the indexing child had finished: nothing was interrupted"
    # The indexing child and, when it has started them, its pool workers.
    family = [*children, *(d for c in children for d in _descendants(c))]
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: _gone(family), timeout=30), "the child's workers outlived it"
    state = wire.wait_for(
        lambda m: (
            m.get("method") == "klp-lsp/indexState" and m["params"]["state"] in ("error", "ready")
        ),
        60,
    )
    assert state is not None
    assert state["params"]["state"] == "error", state
    assert "the indexing process died" in state["params"]["message"]
    # The server answers on, whatever happened to its child.
    assert wire.request("workspace/symbol", {"query": "demo"}) is not None
    _assert_never_half(tmp_path)
    # The next run: a new server finds the index whole, or resumes or rebuilds it.
    wire.close()
    again: Wire = server()  # type: ignore[operator]
    assert again.request("initialize", params) is not None
    again.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    ready = again.wait_for(
        lambda m: m.get("method") == "klp-lsp/indexState" and m["params"]["state"] == "ready", 120
    )
    assert ready is not None
    _assert_whole(tmp_path, reference)


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("seconds", (3, 20))
def test_kill_index_of_the_real_vmlinux(tmp_path: Path, seconds: int) -> None:
    """The Debian amd64 vmlinux, killed 3 and 20 s into `klp-lsp index --jobs 2`."""
    corpus = corpus_dir()
    if corpus is None:
        pytest.skip("KLP_CORPUS_DIR is not set")
    vmlinux = corpus / "amd64" / "vmlinux"
    writer = _start("index", str(vmlinux), "--index-dir", str(tmp_path), "--jobs", "2", "--quiet")
    time.sleep(seconds)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    _assert_never_half(tmp_path)
    proc = _klp(
        "show", "getname_flags", "--binary", str(vmlinux), "--json",
        "--index-dir", str(tmp_path), "--jobs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    published, temporary = _index_files(tmp_path)
    assert len(published) == 1 and not temporary
    assert dict(_dump(published[0])["meta"])["complete"] == "1"
