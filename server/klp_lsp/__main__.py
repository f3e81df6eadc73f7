"""Allows `python -m klp_lsp`."""

from __future__ import annotations

import sys

from klp_lsp.cli import main

sys.exit(main())
