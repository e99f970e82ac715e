"""Terminal tables that fit the width they are printed at.

A :class:`FitTable` is a rich renderable: when a console prints it, it reads the width it has
(the terminal's, ``COLUMNS`` when output is not a terminal) and lays itself out to fit. Too
narrow for everything, it first swaps long headers for their short forms, then leaves out the
columns marked as droppable, least important first; a legend under the table says what each
short header means and which columns are not shown, and how to see them. Cells are never cut
with an ellipsis.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

#: What the legend suggests when columns are left out.
WIDER_HINT = "a wider terminal, COLUMNS=200 or --wide shows them"


@dataclass(frozen=True)
class Column:
    """One column of a :class:`FitTable`.

    Attributes:
        header: The header in a wide layout.
        justify: ``"left"`` for text, ``"right"`` for numbers.
        short: The header in a narrow layout (explained by the legend); empty: no short form.
        drop: 0 for a column that is always shown; otherwise the column may be left out when
            the table is too wide, those with the highest ``drop`` first.
    """

    header: str
    justify: Literal["left", "right"] = "right"
    short: str = ""
    drop: int = 0


class FitTable:
    """A table that chooses its columns by the width it is printed at.

    Args:
        title: One short line (keep it under 76 characters so that it never wraps).
        columns: The columns, in order.
        rows: One sequence of already formatted cells per row.
        caption: Lines printed under the table, before the legend, wrapped at the console's
            width.

    Example:
        >>> from rich.console import Console
        >>> table = FitTable("t", [Column("name", "left"), Column("value", short="v", drop=1)],
        ...                  [["a", "1"]])
        >>> table.layout(80)
        ([0, 1], False)
    """

    def __init__(
        self,
        title: str,
        columns: Sequence[Column],
        rows: Sequence[Sequence[str]],
        *,
        caption: str | None = None,
    ) -> None:
        self.title = title
        self.columns = tuple(columns)
        self.rows = [tuple(row) for row in rows]
        self.caption = caption
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"Invalid value for argument `rows`: expected {len(self.columns)} cells per "
                    f"row, received {len(row)}: {row!r}"
                )

    def _width(self, columns: Sequence[tuple[int, str]]) -> int:
        """Width of the table showing ``columns`` (index, header): each column its widest
        cell + 2 spaces of padding + 1 rule, plus the outer rule."""
        total = 1
        for index, header in columns:
            widest = max([cell_len(header), *(cell_len(row[index]) for row in self.rows)])
            total += widest + 3
        return total

    def layout(self, width: int | None) -> tuple[list[int], bool]:
        """The indices of the columns shown at ``width`` (``None``: everything) and whether
        their short headers are used.

        Short headers are used only when the long ones do not fit; then droppable columns are
        left out, highest ``drop`` first, until the table fits or nothing is left to drop.

        Example:
            >>> table = FitTable("t", [Column("a"), Column("b" * 90, short="b", drop=1)],
            ...                  [["1", "2"]])
            >>> table.layout(80)
            ([0, 1], True)
        """
        shown = list(range(len(self.columns)))
        if width is None or self._width([(i, self.columns[i].header) for i in shown]) <= width:
            return shown, False
        order = sorted(
            (i for i, c in enumerate(self.columns) if c.drop > 0),
            key=lambda i: (-self.columns[i].drop, -i),
        )
        while self._width([(i, self._header(i, True)) for i in shown]) > width and order:
            shown.remove(order.pop(0))
        return shown, True

    def _header(self, index: int, short: bool) -> str:
        column = self.columns[index]
        return column.short if short and column.short else column.header

    def legend(self, width: int | None) -> list[str]:
        """The lines under the table at ``width``: short headers explained, columns left out."""
        shown, short = self.layout(width)
        lines = []
        if short:
            meanings = [
                f"{self.columns[i].short}: {self.columns[i].header}"
                for i in shown
                if self.columns[i].short
            ]
            if meanings:
                lines.append("; ".join(meanings))
        dropped = [c.header for i, c in enumerate(self.columns) if i not in shown]
        if dropped:
            lines.append(f"not shown at {width} columns: {', '.join(dropped)} ({WIDER_HINT})")
        return lines

    def build(self, width: int | None) -> Table:
        """The rich table laid out for ``width``, without the caption and legend lines."""
        shown, short = self.layout(width)
        table = Table(title=self.title)
        for i in shown:
            table.add_column(self._header(i, short), justify=self.columns[i].justify, no_wrap=True)
        for row in self.rows:
            table.add_row(*(row[i] for i in shown))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # The caption and legend wrap at the console's width, not at the table's.
        yield self.build(options.max_width)
        for line in [
            *(self.caption.splitlines() if self.caption else []),
            *self.legend(options.max_width),
        ]:
            yield Text(line)


def render_text(renderable: object, width: int) -> str:
    """What ``renderable`` prints on a console ``width`` columns wide, without styles."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text(styles=False)
