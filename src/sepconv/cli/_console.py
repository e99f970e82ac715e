"""The console every sub-command prints through."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    """A rich console: the terminal's width on a TTY, wide enough for tables when piped."""
    return Console() if sys.stdout.isatty() else Console(width=160)
