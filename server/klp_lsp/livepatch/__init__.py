"""Livepatch modules: `verify` (a built module against the indexed kernel)."""
