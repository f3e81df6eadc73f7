"""From a fleet spec to index jobs: each kernel's binaries, read for their build-ids.

Runs on the client. A kernel whose files are missing or unreadable gets its error here and no
jobs; the others go on. A build-id met twice (a module two kernels share) is one job, and an
index already complete in the index directory is never rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.binary.discovery import iter_module_files
from klp_lsp.binary.elf import ElfBinary
from klp_lsp.errors import KlpError
from klp_lsp.fleet.spec import FleetSpec, KernelSpec
from klp_lsp.session import is_module_file


@dataclass(frozen=True, slots=True)
class BinaryJob:
    """One binary of the fleet, identified by its build-id."""

    path: Path
    build_id: str
    object: str
    is_module: bool
    size: int  # the file's size
    work: int  # the DWARF its index walks (`ElfBinary.dwarf_size`): the estimate of its cost


@dataclass(frozen=True, slots=True)
class KernelPlan:
    """A kernel's binaries (vmlinux first), or the error that keeps it from being checked."""

    spec: KernelSpec
    binaries: tuple[BinaryJob, ...]
    error: str | None
    warnings: tuple[str, ...]

    @property
    def vmlinux(self) -> BinaryJob | None:
        return next((b for b in self.binaries if not b.is_module), None)


def plan_kernel(spec: KernelSpec) -> KernelPlan:
    """Expand module directories and read every binary's build-id."""
    warnings = []
    for label, path in (("image", spec.image), ("headers", spec.headers)):
        if path is not None and not path.exists():
            warnings.append(f"{label} {path}: no such file or directory")
    if spec.source is not None and not spec.source.is_dir():
        return KernelPlan(spec, (), f"source {spec.source}: not a directory", tuple(warnings))
    files: list[Path] = []
    for p in spec.binaries:
        if p.is_dir():
            found = list(iter_module_files(p))
            if not found:
                error = f"{p}: directory holds no .ko, .ko.xz or .ko.zst files"
                return KernelPlan(spec, (), error, tuple(warnings))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            return KernelPlan(spec, (), f"{p}: no such file or directory", tuple(warnings))
    jobs: list[BinaryJob] = []
    for f in files:
        try:
            with ElfBinary.open(f) as binary:
                jobs.append(
                    BinaryJob(
                        f,
                        binary.build_id,
                        binary.object_name,
                        is_module_file(f),
                        f.stat().st_size,
                        binary.dwarf_size,
                    )
                )
        except (KlpError, OSError) as e:
            return KernelPlan(spec, (), str(e), tuple(warnings))
    # vmlinux first: its modules' register analysis needs its asm helpers' clobber sets.
    jobs.sort(key=lambda j: j.is_module)
    if sum(not j.is_module for j in jobs) > 1:
        names = ", ".join(str(j.path) for j in jobs if not j.is_module)
        return KernelPlan(spec, (), f"more than one vmlinux: {names}", tuple(warnings))
    return KernelPlan(spec, tuple(jobs), None, tuple(warnings))


def plan_fleet(fleet: FleetSpec) -> list[KernelPlan]:
    """Plan every kernel of the fleet, in order."""
    return [plan_kernel(k) for k in fleet.kernels]


def distinct_jobs(plans: Sequence[KernelPlan]) -> dict[str, BinaryJob]:
    """The binaries to index, one per build-id, in the order they are first met."""
    out: dict[str, BinaryJob] = {}
    for plan in plans:
        for job in plan.binaries:
            out.setdefault(job.build_id, job)
    return out
