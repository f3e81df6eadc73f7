"""The VM of the indexed kernel: `try_modules` boots its image with modules (`klp-lsp try`)."""

from klp_lsp.vm.runner import (
    ModuleLoad,
    RunResult,
    TryResult,
    try_modules,
    try_to_json,
    try_to_text,
)

__all__ = ["ModuleLoad", "RunResult", "TryResult", "try_modules", "try_to_json", "try_to_text"]
