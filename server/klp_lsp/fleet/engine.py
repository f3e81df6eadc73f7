"""Runs a fleet on Dask distributed: a LocalCluster sized to the machine, or a given scheduler.

The only module that imports Dask. The client plans (build-ids, indexes already built), then
submits one task graph: an index task per build-id still to index (vmlinux first; a module's
task waits for its vmlinux's asm helpers), and one check task per kernel that waits for that
kernel's indexes. A large binary becomes a writer task that sends its CU batches to the cluster
as tasks of their own when there are fewer large binaries than worker threads, so a single
vmlinux spreads too. A failing task fails only the kernels that need it.

Where indexes go: every worker is asked whether it can read and write the client's index
directory. If all can (one machine, or a shared file system), tasks write there. Otherwise
each worker indexes into its own scratch directory, the index files come back to the client,
which stores them in its index directory, and Dask moves them to the check tasks.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klp_lsp.errors import KlpError, UsageError
from klp_lsp.fleet import tasks
from klp_lsp.fleet.plan import BinaryJob, KernelPlan, distinct_jobs, plan_fleet
from klp_lsp.fleet.results import (
    BinaryOutcome,
    FleetReport,
    KernelOutcome,
    failed,
    kernel_status,
)
from klp_lsp.fleet.spec import FleetSpec
from klp_lsp.index.locate import index_path
from klp_lsp.index.store import complete_index
from klp_lsp.progress import Progress

if TYPE_CHECKING:
    from distributed import Client, Future

    from klp_lsp.index.regfacts import KnownCallee

INSTALL_HINT = "klp-lsp fleet needs Dask: pip install 'klp-lsp[fleet]'"

# Binaries at least this large (a vmlinux) are worth indexing CU batch by CU batch on the
# cluster; the same threshold as `Session` uses for its pool over CUs.
SPREAD_BYTES = 200 << 20


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How and where a fleet runs."""

    index_dir: Path
    scheduler: str | None = None  # an existing cluster's scheduler address
    workers: int = 0  # LocalCluster size (0: one per CPU); with a scheduler, workers to wait for
    spread_bytes: int = SPREAD_BYTES
    dashboard: str | None = ":8787"  # the LocalCluster's dashboard address; None: none
    processes: bool = True  # LocalCluster workers as processes (False: threads of this one)
    # Whether workers write the client's index dir; None: ask every worker (`shares_index_dir`).
    share_index_dir: bool | None = None
    connect_timeout: float = 30.0


def require_dask() -> None:
    """Raise a usage error that says how to install Dask when it is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise UsageError(INSTALL_HINT) from e


@contextmanager
def connect(options: FleetOptions) -> Iterator[tuple[Client, str]]:
    """A Dask client and a description of its cluster; a LocalCluster is closed afterwards."""
    require_dask()
    from distributed import Client, LocalCluster

    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout=options.connect_timeout)
        except (OSError, TimeoutError) as e:
            raise UsageError(f"--scheduler {options.scheduler}: cannot connect: {e}") from e
        try:
            if options.workers:
                client.wait_for_workers(options.workers, timeout=options.connect_timeout)
            elif not client.nthreads():
                client.wait_for_workers(1, timeout=options.connect_timeout)
        except TimeoutError as e:
            have = len(client.nthreads())
            client.close()
            raise UsageError(
                f"--scheduler {options.scheduler}: {have} worker(s) connected after"
                f" {options.connect_timeout:.0f} s, wanted {options.workers or 1}"
            ) from e
        try:
            yield client, f"scheduler {options.scheduler}, {len(client.nthreads())} worker(s)"
        finally:
            client.close()
        return
    n = options.workers or os.cpu_count() or 1
    # One thread per worker: indexing is CPU-bound Python, so threads of one process would
    # share its GIL; memory is split evenly between the workers ("auto").
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=options.processes,
        dashboard_address=options.dashboard if _has_dashboard(options) else None,
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
        try:
            yield client, f"LocalCluster, {n} worker(s)"
        finally:
            client.close()
    finally:
        cluster.close()


def _has_dashboard(options: FleetOptions) -> bool:
    return options.dashboard is not None and importlib.util.find_spec("bokeh") is not None


def dashboard_note(client: Client, options: FleetOptions) -> str:
    """Where the Dask dashboard shows this fleet's tasks, or how to get one."""
    if options.scheduler:
        return f"Dask dashboard: {client.dashboard_link}"
    if options.dashboard is None:
        return ""
    if not _has_dashboard(options):
        return "no Dask dashboard: it needs bokeh (pip install 'klp-lsp[fleet]')"
    return f"Dask dashboard: {client.dashboard_link}"


# --- what workers run ---------------------------------------------------------------------------


def _workers_share(path: str, token: str) -> bool:
    """On a worker: whether it reads the client's probe file and can write beside it."""
    try:
        if Path(path).read_text() != token:
            return False
        own = Path(f"{path}.{os.getpid()}")
        own.write_text(token)
        own.unlink()
        return True
    except OSError:
        return False


def _index_task(
    job: BinaryJob,
    index_dir: str | None,
    known: Mapping[str, KnownCallee] | None,
    spread: int,
) -> tasks.IndexArtifact:
    """Index one binary; with `spread` > 1 its CU batches become tasks on the cluster."""
    dest = Path(index_dir) if index_dir is not None else None
    if spread <= 1:
        return tasks.index_binary(job, dest, known)
    from distributed import worker_client

    # worker_client secedes this task from the worker's thread pool while it writes, so the
    # worker runs batches meanwhile (the builder's worker cache keeps them apart).
    with worker_client() as client:
        executor = client.get_executor(pure=False)
        return tasks.index_binary(job, dest, known, jobs=spread, executor=executor)


# --- the client ---------------------------------------------------------------------------------


def shares_index_dir(client: Client, index_dir: Path) -> bool:
    """Whether every worker can read and write the client's index directory."""
    index_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    probe = index_dir / f".fleet-probe-{token}"
    probe.write_text(token)
    try:
        seen = client.run(_workers_share, str(probe), token)
    finally:
        probe.unlink(missing_ok=True)
    return bool(seen) and all(seen.values())


def run_fleet(
    fleet: FleetSpec,
    patches: Sequence[tuple[str, str]],
    options: FleetOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> FleetReport:
    """Index and check every kernel of the fleet on Dask; one row per kernel, errors included.

    `notify` (a callable taking one line) hears where the dashboard is.
    """
    started = time.monotonic()
    require_dask()
    plans = plan_fleet(fleet)
    with connect(options) as (client, cluster):
        note = dashboard_note(client, options)
        if note and notify is not None:
            notify(note)
        shared = options.share_index_dir
        if shared is None:
            shared = shares_index_dir(client, options.index_dir)
        run = _Run(client, options, shared, plans, list(patches), progress)
        kernels = run.execute()
    return FleetReport(
        origin=fleet.origin,
        patches=tuple(name for name, _ in patches),
        kernels=tuple(kernels),
        cluster=cluster,
        shared_index_dir=shared,
        index_dir=str(options.index_dir),
        wall_seconds=time.monotonic() - started,
    )


class _Run:
    """One fleet run's task graph and its results."""

    def __init__(
        self,
        client: Client,
        options: FleetOptions,
        shared: bool,
        plans: list[KernelPlan],
        patches: list[tuple[str, str]],
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.options = options
        self.shared = shared
        self.plans = plans
        self.patches = patches
        self.progress = progress
        self.token = secrets.token_hex(4)
        # build-id -> an artifact already built (plain or scattered), or the task building it.
        self.ready: dict[str, Any] = {}
        self.building: dict[str, Future] = {}
        self.built: dict[str, tasks.IndexArtifact] = {}
        self.index_errors: dict[str, str] = {}
        self.checks: dict[int, Future] = {}

    def execute(self) -> list[KernelOutcome]:
        jobs = distinct_jobs([p for p in self.plans if p.error is None])
        for build_id, job in jobs.items():
            found = complete_index(self.options.index_dir, build_id)
            if found is not None:
                self.ready[build_id] = self._existing(job, found)
        self._submit_indexes(jobs)
        self._submit_checks()
        self._collect(jobs)
        return [self._outcome(i, p) for i, p in enumerate(self.plans)]

    def _existing(self, job: BinaryJob, found: Path) -> Any:
        artifact = tasks.IndexArtifact(
            job.build_id, job.object, str(job.path), str(found), None, True, 0.0, "client"
        )
        if self.shared:
            return artifact
        # Workers cannot read it where it is: send it once, Dask copies it where it is needed.
        data = replace(artifact, data=found.read_bytes())
        self.built[job.build_id] = artifact
        return self.client.scatter(data, hash=False)

    def _submit_indexes(self, jobs: Mapping[str, BinaryJob]) -> None:
        dest = str(self.options.index_dir) if self.shared else None
        todo = [j for b, j in jobs.items() if b not in self.ready]
        large = [j for j in todo if j.size >= self.options.spread_bytes]
        threads = sum(self.client.nthreads().values())
        spread = threads if 0 < len(large) < threads else 1
        # vmlinux files most work first (longest-processing-time order: the last tasks to start
        # are the short ones, so no worker finishes long after the others). Tasks of one
        # priority start in the order they are submitted; modules follow, below.
        for job in sorted((j for j in todo if not j.is_module), key=lambda j: -j.work):
            self.building[job.build_id] = self.client.submit(
                _index_task,
                job,
                dest,
                None,
                spread if job.size >= self.options.spread_bytes else 1,
                key=f"klp-index-{job.object}-{job.build_id[:16]}-{self.token}",
                priority=2,
                pure=False,
            )
        helpers: dict[str, Future] = {}
        for plan in self.plans:
            vmlinux = plan.vmlinux
            known: Future | None = None
            for job in plan.binaries:
                if not job.is_module or job.build_id in self.ready or job.build_id in self.building:
                    continue
                if vmlinux is not None and known is None:
                    known = helpers.get(vmlinux.build_id)
                    if known is None:
                        known = self.client.submit(
                            tasks.vmlinux_helpers,
                            self._artifact(vmlinux.build_id),
                            key=f"klp-helpers-{vmlinux.build_id[:16]}-{self.token}",
                            priority=2,
                            pure=False,
                        )
                        helpers[vmlinux.build_id] = known
                self.building[job.build_id] = self.client.submit(
                    _index_task,
                    job,
                    dest,
                    known,
                    1,
                    key=f"klp-index-{job.object}-{job.build_id[:16]}-{self.token}",
                    priority=1,
                    pure=False,
                )

    def _artifact(self, build_id: str) -> Any:
        future = self.building.get(build_id)
        return future if future is not None else self.ready[build_id]

    def _submit_checks(self) -> None:
        for i, plan in enumerate(self.plans):
            if plan.error is not None:
                continue
            self.checks[i] = self.client.submit(
                tasks.check_kernel,
                self.patches,
                plan.spec.source,
                [self._artifact(b.build_id) for b in plan.binaries],
                key=f"klp-check-{i}-{self.token}",
                priority=3,
                pure=False,
            )

    def _collect(self, jobs: Mapping[str, BinaryJob]) -> None:
        from distributed import as_completed

        by_future = {f.key: b for b, f in self.building.items()}
        futures = [*self.building.values(), *self.checks.values()]
        progress = self.progress
        n_kernels = sum(p.error is None for p in self.plans)
        if progress is not None:
            progress.begin(
                f"fleet: {len(self.building)} index(es), {n_kernels} check(s)", len(futures)
            )
        for done, future in enumerate(as_completed(futures), 1):
            build_id = by_future.get(future.key)
            label = "check"
            if build_id is not None:
                label = f"indexed {jobs[build_id].object} {build_id[:8]}"
                if future.status == "finished":
                    artifact: tasks.IndexArtifact = future.result()
                    if artifact.data is not None:
                        # Returned to the client: stored in its index directory.
                        target = index_path(self.options.index_dir, build_id)
                        tasks.store_index(target, artifact.data)
                        artifact = replace(artifact, data=None, path=str(target))
                    self.built[build_id] = artifact
                else:
                    self.index_errors[build_id] = _describe(future.exception(), jobs[build_id])
            if progress is not None:
                progress.advance(done, label)
        if progress is not None:
            progress.end(f"{n_kernels} kernel(s) checked")

    def _outcome(self, i: int, plan: KernelPlan) -> KernelOutcome:
        if plan.error is not None:
            return failed(plan.spec, plan.error, plan.warnings)
        binaries = tuple(self._binary_outcome(b) for b in plan.binaries)
        errors = [
            self.index_errors[b.build_id] for b in plan.binaries if b.build_id in self.index_errors
        ]
        future = self.checks[i]
        if errors or future.status != "finished":
            error = errors[0] if errors else _describe(future.exception(), None)
            return replace(failed(plan.spec, error, plan.warnings), binaries=binaries)
        check: tasks.KernelCheck = future.result()
        status, problem = kernel_status(check.result)
        return KernelOutcome(
            plan.spec,
            status,
            problem,
            check.result,
            binaries,
            plan.warnings,
            check.seconds,
            check.host,
        )

    def _binary_outcome(self, job: BinaryJob) -> BinaryOutcome:
        a = self.built.get(job.build_id)
        if a is None and not isinstance(self.ready.get(job.build_id), tasks.IndexArtifact):
            return BinaryOutcome(str(job.path), job.object, job.build_id, None, False, 0.0, "")
        if a is None:
            a = self.ready[job.build_id]
            assert isinstance(a, tasks.IndexArtifact)
        return BinaryOutcome(
            str(job.path), a.object, job.build_id, a.path, a.reused, a.seconds, a.host
        )


def _describe(error: BaseException | None, job: BinaryJob | None) -> str:
    """A one-line message for a failed task, naming the binary when the error does not."""
    if error is None:
        return "cancelled"
    text = str(error) if isinstance(error, KlpError) else f"{type(error).__name__}: {error}"
    text = text.splitlines()[0] if text else type(error).__name__
    if job is not None and str(job.path) not in text:
        text = f"{job.path}: {text}"
    return text
