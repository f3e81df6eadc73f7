"""Resource limits on input, in one place (README "Limits"), and the per-CU work budget.

Every number read from a file or a client is bounded before it sizes an allocation or a loop, so
no input can make klp-lsp hold gigabytes or spin. Each limit is far above what a real kernel
needs: the figures beside them are the largest seen in Debian's 6.1 kernels (KERNEL_FACTS).
"""

from __future__ import annotations

import os
import time

from klp_lsp.errors import BinaryFormatError

# A section klp-lsp decompresses or zero-fills (the largest real one: amd64 .debug_info, 164 MB).
MAX_SECTION_BYTES = 1 << 30
# A compressed module (`.ko.xz`, `.ko.zst`) once decompressed (the largest real module: 61 MB).
MAX_MODULE_BYTES = 1 << 30
# One code range of a function the register analysis decodes (the largest real function: 13 KB).
MAX_FUNCTION_BYTES = 1 << 20
# Nesting of DIEs the DWARF scanner descends into (subprograms, inlined subroutines, lexical
# blocks); GCC's deepest inline nesting in the kernel is a few dozen.
MAX_DIE_DEPTH = 200
# Entries of one range or location list (real lists have a few dozen at most).
MAX_LIST_ENTRIES = 1 << 16
# A patch file, or a patch document in the editor, in UTF-8 (the largest real series: a few MB).
MAX_PATCH_BYTES = 32 << 20
# One line of a patch, in characters (kernel lines are under 100 columns, generated tables
# under a few thousand).
MAX_LINE_CHARS = 64 << 10
# Wall-clock seconds the scan and register analysis of one compile unit may take (the slowest
# real CU takes about 3 s); a CU over it is recorded as unreadable and the rest goes on.
CU_BUDGET_SECONDS = 120.0
CU_BUDGET_ENV = "KLP_LSP_CU_BUDGET"


def cu_budget_seconds() -> float:
    """`CU_BUDGET_SECONDS`, or `$KLP_LSP_CU_BUDGET` when it is set to a number of seconds."""
    value = os.environ.get(CU_BUDGET_ENV)
    if not value:
        return CU_BUDGET_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        return CU_BUDGET_SECONDS
    return seconds if seconds >= 0 else CU_BUDGET_SECONDS


class BudgetExceeded(BinaryFormatError):
    """One compile unit took longer than its budget (corrupt input that makes work explode)."""


class Deadline:
    """The end of one compile unit's budget; `check()` raises `BudgetExceeded` past it.

    Checked between subprograms, list reads and functions, never per DIE: a monotonic clock read
    costs about 50 ns and the scanner visits 16.8 M DIEs on a distro vmlinux.
    """

    __slots__ = ("_end", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise BudgetExceeded(
                f"gave up after {self.seconds:g} s (the per-compile-unit budget, ${CU_BUDGET_ENV})"
            )


# A deadline that never passes, for callers without a budget (tests, `list_units`).
NO_DEADLINE = Deadline(float("inf"))
