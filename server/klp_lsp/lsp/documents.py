"""What the server needs to know about a document: its kind, the word under the cursor, its
path under the source tree, and the text it is compared with (the file on disk or `git HEAD`).

Reading the pre-image never writes anything: `git show` only reads the object store.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

DocumentKind = Literal["patch", "c", "other"]

# A C identifier, with GCC's clone suffixes (`foo.isra.0`, `foo.part.0.cold`) when present.
_WORD = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:isra|constprop|part|cold|lto_priv|localalias)(?:\.\d+)?)*"
)
_PATCH_SUFFIXES = (".patch", ".diff")


def uri_to_path(uri: str) -> Path | None:
    """The local path of a `file:` URI, else None (untitled documents)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def document_kind(uri: str, language_id: str | None) -> DocumentKind:
    """Patches by suffix or the `diff` language; C sources by suffix or the `c` language."""
    path = urlparse(uri).path
    if path.endswith(_PATCH_SUFFIXES) or language_id == "diff":
        return "patch"
    if path.endswith(".c") or (language_id == "c" and not path.endswith(".h")):
        return "c"
    return "other"


def word_at(line: str, character: int) -> str | None:
    """The C identifier (or clone symbol like `foo.isra.0`) at a column, if any."""
    for m in _WORD.finditer(line):
        if m.start() <= character <= m.end():
            return m.group(0)
        if m.start() > character:
            break
    return None


def word_range(line: str, word: str, near: int = 0) -> tuple[int, int]:
    """The columns of whole-word `word` in `line` (the first at or after `near`), else the line."""
    best: tuple[int, int] | None = None
    for m in re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", line):
        if best is None or m.start() >= near:
            best = (m.start(), m.end())
            if m.start() >= near:
                break
    return best if best is not None else (0, len(line))


def relative_to_root(path: Path | None, root: Path | None) -> str | None:
    """`path` as a POSIX path relative to the source tree, when it lies inside it."""
    if path is None or root is None:
        return None
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _git_toplevel(root: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def pre_image(root: Path, rel_path: str) -> str | None:
    """The text a buffer is compared with: `git HEAD:<path>` in a git checkout, else the file."""
    top = _git_toplevel(root)
    if top is not None:
        try:
            in_repo = (root.resolve() / rel_path).relative_to(top.resolve()).as_posix()
            out = subprocess.run(
                ["git", "-C", str(top), "show", f"HEAD:{in_repo}"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, ValueError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0:
            return out.stdout.decode("utf-8", errors="replace")
    try:
        return (root / rel_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
