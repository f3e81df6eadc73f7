"""What a fleet worker runs: index one binary, read a vmlinux's helpers, check one kernel.

Plain functions over picklable records, so they run the same in a Dask worker, a process pool
or a test. Indexing is `index.builder.build_index` and checking is `patch.check.Checker`; these
functions only decide where index files go and move them when the client's index directory is
not shared with the worker.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from klp_lsp.fleet.plan import BinaryJob
from klp_lsp.index.builder import build_index
from klp_lsp.index.locate import index_path
from klp_lsp.index.query import IndexSet
from klp_lsp.model import CheckResult
from klp_lsp.session import known_callees_of

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from klp_lsp.index.regfacts import KnownCallee


@dataclass(frozen=True, slots=True)
class IndexArtifact:
    """An index built (or found) for one build-id, and where a reader gets it."""

    build_id: str
    object: str
    binary: str
    path: str  # the index file where it was written: the shared index dir or a worker's scratch
    data: bytes | None  # the file itself, when the client's index dir is not shared
    reused: bool
    seconds: float
    host: str


@dataclass(frozen=True, slots=True)
class KernelCheck:
    """One kernel's check result and what it took."""

    result: CheckResult
    seconds: float
    host: str


def scratch_dir() -> Path:
    """A worker's own index directory, for fleets whose index dir it cannot reach."""
    path = Path(tempfile.gettempdir()) / f"klp-lsp-fleet-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def index_binary(
    job: BinaryJob,
    index_dir: Path | None,
    known: Mapping[str, KnownCallee] | None = None,
    *,
    jobs: int = 1,
    executor: Executor | None = None,
) -> IndexArtifact:
    """Index `job` into `index_dir` (shared with the client), or into the scratch dir and return
    the file's bytes when `index_dir` is None. An index already complete there is reused.

    With an `executor` (the cluster) and `jobs` > 1 the CU batches run as tasks of their own.
    """
    dest = index_dir if index_dir is not None else scratch_dir()
    result = build_index(job.path, dest, jobs=jobs, executor=executor, known_callees=known)
    data = result.index_path.read_bytes() if index_dir is None else None
    return IndexArtifact(
        job.build_id,
        result.object,
        str(job.path),
        str(result.index_path),
        data,
        result.reused,
        result.seconds,
        socket.gethostname(),
    )


def materialize(artifact: IndexArtifact) -> Path:
    """A readable path of the artifact's index here: its own, or a scratch copy of its bytes."""
    if artifact.data is None:
        return Path(artifact.path)
    target = index_path(scratch_dir(), artifact.build_id)
    if not target.exists() or target.stat().st_size != len(artifact.data):
        store_index(target, artifact.data)
    return target


def store_index(target: Path, data: bytes) -> None:
    """Write an index file whole, under a temporary name first (never a half index)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def vmlinux_helpers(vmlinux: IndexArtifact) -> dict[str, KnownCallee] | None:
    """The asm helpers of a vmlinux with their clobber sets, for its modules' indexes."""
    return known_callees_of(materialize(vmlinux))


def check_kernel(
    patches: Sequence[tuple[str, str]],
    source: Path | None,
    artifacts: Sequence[IndexArtifact],
) -> KernelCheck:
    """Check the patches against one kernel's indexes."""
    from klp_lsp.patch.check import Checker

    started = time.monotonic()
    indexes = IndexSet.open([materialize(a) for a in artifacts])
    try:
        result = Checker(indexes).check_patches(patches, source)
    finally:
        indexes.close()
    return KernelCheck(result, time.monotonic() - started, socket.gethostname())
