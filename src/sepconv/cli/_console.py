"""The console every sub-command prints through."""

from __future__ import annotations

from rich.console import Console

#: The width ``--wide`` prints at (at least): every column of every table shows.
WIDE_COLUMNS = 240
_wide = False


def set_wide(wide: bool) -> None:
    """Print every table in full from now on (``--wide``), whatever the terminal's width."""
    global _wide
    _wide = wide


def console() -> Console:
    """A rich console as wide as the terminal, or ``COLUMNS`` when the output is not a terminal
    (80 when that is unset); with ``--wide``, at least :data:`WIDE_COLUMNS`. Tables lay
    themselves out for the width they get (:class:`sepconv.utils.tables.FitTable`)."""
    plain = Console()
    return Console(width=max(plain.width, WIDE_COLUMNS)) if _wide else plain
