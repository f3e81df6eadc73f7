"""A fleet checked in this process over indexes already built: the language server's view.

The server never starts a cluster or indexes a fleet: `klp-lsp fleet` (or `klp-lsp index`)
builds the indexes, and `FleetCheckers` checks an open patch against every kernel whose indexes
are all there, with one `Checker` per kernel kept between checks. Made and used on one thread
(SQLite connections stay on the thread that opened them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from klp_lsp.fleet.plan import KernelPlan, plan_fleet
from klp_lsp.fleet.spec import FleetSpec
from klp_lsp.index.query import IndexSet
from klp_lsp.index.store import complete_index
from klp_lsp.model import CheckResult
from klp_lsp.patch.check import Checker


@dataclass(frozen=True, slots=True)
class FleetCheck:
    """Each checked kernel's result, and the kernels that could not be checked, with why."""

    results: tuple[tuple[str, CheckResult], ...]
    unavailable: tuple[tuple[str, str], ...]


class FleetCheckers:
    """One Checker per kernel of a fleet whose indexes exist in `index_dir`."""

    def __init__(self, fleet: FleetSpec, index_dir: Path) -> None:
        self.fleet = fleet
        self.index_dir = index_dir
        self._checkers: list[tuple[KernelPlan, Checker, IndexSet]] | None = None
        self._unavailable: list[tuple[str, str]] = []

    def _open(self) -> list[tuple[KernelPlan, Checker, IndexSet]]:
        if self._checkers is not None:
            return self._checkers
        self._checkers = []
        for plan in plan_fleet(self.fleet):
            if plan.error is not None:
                self._unavailable.append((plan.spec.name, plan.error))
                continue
            paths = [complete_index(self.index_dir, b.build_id) for b in plan.binaries]
            if any(p is None for p in paths):
                self._unavailable.append((plan.spec.name, "not indexed yet"))
                continue
            indexes = IndexSet.open([p for p in paths if p is not None])
            self._checkers.append((plan, Checker(indexes), indexes))
        return self._checkers

    def check_patches(self, patches: Sequence[tuple[str, str]]) -> FleetCheck:
        """Check the patches against every available kernel, in fleet order."""
        results = tuple(
            (plan.spec.name, checker.check_patches(patches, plan.spec.source))
            for plan, checker, _ in self._open()
        )
        return FleetCheck(results, tuple(self._unavailable))

    def close(self) -> None:
        for _, _, indexes in self._checkers or ():
            indexes.close()
        self._checkers = None
        self._unavailable = []
