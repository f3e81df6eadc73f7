"""User settings of klp-lsp and their defaults: the one place both the server and the clients read.

The VS Code extension's `package.json` mirrors these under `klp-lsp.<name>`; a test checks that the
defaults agree. Validation lives in `lsp/config.py`; this module holds only plain values.
"""

from __future__ import annotations

from typing import Any, Final

# Section name under which clients send settings (`workspace/configuration`).
SECTION: Final = "klp-lsp"

# name -> (default, one-line description). Empty strings mean "not set": the server then uses the
# running kernel (`uname -r`), looks for the source tree from DWARF `DW_AT_comp_dir`, and keeps
# indexes in `$KLP_LSP_INDEX_DIR` or `$XDG_CACHE_HOME/klp-lsp`.
SETTINGS: Final[dict[str, tuple[Any, str]]] = {
    "binaries": (
        [],
        "vmlinux and .ko files, or directories searched for .ko files; empty: the running kernel",
    ),
    "kernelRelease": ("", "Kernel release whose debug info to use; empty: the running kernel"),
    "sourceRoot": ("", "Kernel source tree the binaries were built from; empty: from DWARF"),
    "indexDir": ("", "Where indexes are kept; empty: $KLP_LSP_INDEX_DIR or ~/.cache/klp-lsp"),
    "compileCheck": (
        False,
        "After the first diagnostics, compile the touched objects before and after the change"
        " in buildTree and add what the compiler shows (check --compile)",
    ),
    "buildTree": ("", "Build tree made by `klp-lsp prepare-build`, used by compileCheck"),
    "severityOverrides": (
        {},
        'Finding kind -> "error" | "warning" | "information" | "hint" | "off"',
    ),
    "inlayHints": (
        True,
        "Show ABI facts after function names in C files (inlined ×N, .isra, not patchable,"
        " sympos N) as inlay hints",
    ),
    "fleet": (
        "",
        "FLEET.toml (or a directory or glob of corpus kernels) whose indexed kernels diagnostics"
        " on patches cover; empty: only the configured kernel",
    ),
}


def defaults() -> dict[str, Any]:
    """Return a fresh copy of every setting's default value."""
    import copy

    return {name: copy.deepcopy(value) for name, (value, _doc) in SETTINGS.items()}
