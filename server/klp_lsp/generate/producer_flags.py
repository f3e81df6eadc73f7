"""Per-CU compile flags that matter for a replacement, from `DW_AT_producer`.

kbuild adds and removes flags per file (`CFLAGS_foo.o`, `CFLAGS_REMOVE_foo.o`, `ccflags-y` of a
directory). GCC records the result in each CU's `DW_AT_producer` (but not `-D`/`-I`), so the
flags in which a CU differs from the object's usual CU are the ones its file was given. Those
that change generated code are repeated for the module's copy of that CU: optimisation level
and `-f` code-generation switches. Warnings, debug-prefix maps and the ftrace flags are left out:
the replacement's own tracing and warnings do not change what it computes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

_IGNORED_PREFIXES = (
    "-fdebug-prefix-map",
    "-fmacro-prefix-map",
    "-ffile-prefix-map",
    "-fplugin",
    "-fpatchable-function-entry",
    "-fprofile",
    "-fdiagnostics",
    "-fmessage-length",
)


def producer_flags(producer: str) -> list[str]:
    """The `-O`/`-f` options of a `DW_AT_producer` string, in order."""
    out = []
    for word in producer.split():
        if word.startswith("-O") or (
            word.startswith("-f") and not word.startswith(_IGNORED_PREFIXES)
        ):
            out.append(word)
    return out


def baseline_producer(producers: Iterable[str]) -> str | None:
    """The most common producer of an object's C compile units."""
    counted = Counter(p for p in producers if p.startswith("GNU C"))
    return counted.most_common(1)[0][0] if counted else None


def flag_difference(producer: str, baseline: str | None) -> tuple[list[str], list[str]]:
    """(flags to add, flags to remove) so that the module's copy of a CU is built like it."""
    if baseline is None:
        return [], []
    mine, usual = producer_flags(producer), producer_flags(baseline)
    add = [f for f in mine if f not in usual]
    remove = [f for f in usual if f not in mine]
    return add, remove
