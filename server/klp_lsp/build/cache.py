"""Results of `check --compile` per object and patch, so re-checking an unchanged buffer is free.

A result is keyed by the object, the patch (every touched file's text before and after) and
the tree's compiler; it holds the object comparison and the causes found for its
compiler-only changes, or the compiler's message when the patched source did not build. Kept in
memory for the process and as JSON files in the tree (`.klp-lsp/results/`), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from klp_lsp.analysis.reconcile import Cause
from klp_lsp.model import CloneChange, FunctionDiff, InliningFlip, ObjectDiff

# Bump when the comparison changes what it reports, so old results are not served.
RESULT_VERSION = 4
_MEMORY_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """The outcome of compiling one object before and after one patch."""

    diff: ObjectDiff | None  # None when the patched source did not compile
    causes: Mapping[str, Cause]  # symbol -> cause of its compiler-only change
    failure: str | None = None  # the compiler's message


def result_key(obj: str, images: Mapping[str, tuple[str | None, str | None]], salt: str) -> str:
    """The cache key of one object under one patch."""
    h = hashlib.sha256()
    h.update(f"{RESULT_VERSION}\0{salt}\0{obj}\0".encode())
    for path in sorted(images):
        before, after = images[path]
        for text in (path, before, after):
            h.update(b"\x01" if text is None else text.encode("utf-8", "surrogateescape"))
            h.update(b"\0")
    return h.hexdigest()


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def diff_from_json(data: dict[str, Any]) -> ObjectDiff:
    """An `ObjectDiff` back from `dataclasses.asdict` JSON."""
    return ObjectDiff(
        object=data["object"],
        functions=tuple(
            FunctionDiff(**{k: _tuples(v) for k, v in f.items()}) for f in data["functions"]
        ),
        clones=tuple(CloneChange(**{k: _tuples(v) for k, v in c.items()}) for c in data["clones"]),
        inlining=tuple(InliningFlip(**f) for f in data["inlining"]),
        identical=data["identical"],
        symbols=tuple(data.get("symbols", ())),
    )


class ResultCache:
    """Object results by key, in memory and under `directory`."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, ObjectResult] = {}

    def get(self, key: str) -> ObjectResult | None:
        found = self._memory.get(key)
        if found is not None or self.directory is None:
            return found
        try:
            data = json.loads((self.directory / f"{key}.json").read_text())
            found = ObjectResult(
                diff=None if data["diff"] is None else diff_from_json(data["diff"]),
                causes={k: Cause(v[0], v[1]) for k, v in data["causes"].items()},
                failure=data.get("failure"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._remember(key, found)
        return found

    def put(self, key: str, result: ObjectResult) -> None:
        self._remember(key, result)
        # A failed compile is kept for this process only: its cause may be outside the patch
        # (a missing tool, a generated header), and a later run should try again.
        if self.directory is None or result.diff is None:
            return
        data = {
            "diff": None if result.diff is None else asdict(result.diff),
            "causes": {k: [c.kind, c.text] for k, c in result.causes.items()},
            "failure": result.failure,
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.directory / f"{key}.json")
        except OSError:
            pass  # A read-only tree still gets the in-memory cache.

    def _remember(self, key: str, result: ObjectResult) -> None:
        if len(self._memory) >= _MEMORY_ENTRIES:
            del self._memory[next(iter(self._memory))]
        self._memory[key] = result
