"""Where index files live and which files make up a kernel build's index set."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

INDEX_SUFFIX = ".klpidx"


def default_index_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$KLP_LSP_INDEX_DIR`, else `$XDG_CACHE_HOME/klp-lsp`, else `~/.cache/klp-lsp`."""
    env = os.environ if env is None else env
    if env.get("KLP_LSP_INDEX_DIR"):
        return Path(env["KLP_LSP_INDEX_DIR"])
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "klp-lsp"


def index_path(index_dir: Path, build_id: str) -> Path:
    """One index file per build-id."""
    return index_dir / f"{build_id}{INDEX_SUFFIX}"
