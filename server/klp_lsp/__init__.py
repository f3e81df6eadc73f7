"""klp-lsp: the compiled ABI facts of a built Linux kernel, for live-patch authors."""

from __future__ import annotations

__version__ = "0.1.0"
