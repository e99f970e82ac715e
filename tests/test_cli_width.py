"""What the CLI prints fits the terminal: every table at 80 and at 200 columns, no cell cut."""

from __future__ import annotations

import pytest

from sepconv.cli import main
from sepconv.utils.tables import WIDER_HINT, Column, FitTable, render_text

COMMANDS = {
    "compare": ["compare", "--in", "64", "--out", "128", "--size", "56"],
    "profile": ["profile", "mobilenet_v2", "--input-size", "64"],
    "zoo": ["zoo"],
    "demo": ["demo"],
    "bench": [
        "bench", "mobilenet_v1", "--input-size", "64", "--repeats", "2", "--threads", "1",
        "--per-layer", "--twin",
    ],
}  # fmt: skip


_PRINTED: dict[tuple[tuple[str, ...], int], list[str]] = {}


def _printed(args: list[str], width: int, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What ``sepconv ARGS`` prints at ``width`` columns; each command runs once per width
    and process, the tests below reading the same output (a bench run takes seconds)."""
    key = (tuple(args), width)
    if key not in _PRINTED:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("COLUMNS", str(width))
            assert main(args) == 0
        _PRINTED[key] = capsys.readouterr().out.splitlines()
    return list(_PRINTED[key])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_line_fits_80_and_200_columns_and_no_cell_is_cut(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    narrow = _printed(COMMANDS[command], 80, capsys)
    wide = _printed(COMMANDS[command], 200, capsys)
    for width, lines in ((80, narrow), (200, wide)):
        too_long = [line for line in lines if len(line.rstrip()) > width]
        assert not too_long, too_long
        assert not any("…" in line for line in lines), "\n".join(lines)
    # At 200 columns nothing is left out; the narrow layout says what it left out, if anything.
    assert not any(WIDER_HINT in line for line in wide)
    assert sum("┏" in line for line in narrow) == sum("┏" in line for line in wide)


def test_bench_shows_every_column_at_200_and_says_what_80_leaves_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    wide = "\n".join(_printed(COMMANDS["bench"], 200, capsys))
    for header in ("in -> out", "MMACs", "GFLOP/s", "% of bound", "median % of bound"):
        assert header in wide
    narrow = "\n".join(_printed(COMMANDS["bench"], 80, capsys))
    assert "not shown at 80 columns: kind, in -> out" in narrow.replace("\n", " ")
    assert "%: % of bound" in narrow
    # Titles are single lines, whole at both widths.
    for text in (wide, narrow):
        assert "per layer: counted cost next to measured time" in text
        assert "mobilenet_v1 vs its standard-conv twin" in text


def test_bench_shows_the_whole_model_once_however_many_tables_quote_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = "\n".join(_printed(COMMANDS["bench"], 200, capsys))
    first = next(line for line in text.splitlines() if "│ fp32" in line)
    median = first.split("│")[5].strip()
    twin_row = next(line for line in text.splitlines() if "│ separable " in line)
    assert twin_row.split("│")[3].strip() == median
    assert f"whole model {median} ms (the same timing as the first table)" in text


def _table(title: str = "t") -> FitTable:
    columns = [
        Column("name", "left"),
        Column("a long header", short="a", drop=0),
        Column("dropped last", drop=1),
        Column("dropped first", drop=2),
    ]
    return FitTable(title, columns, [["x" * 20, "1", "2" * 20, "3" * 20]])


def test_fit_table_shortens_headers_then_drops_highest_first() -> None:
    table = _table()
    assert table.layout(200) == ([0, 1, 2, 3], False)
    assert table.layout(60) == ([0, 1, 2], True)
    assert table.layout(30) == ([0, 1], True)
    legend = table.legend(30)
    assert legend[0] == "a: a long header"
    assert legend[1].startswith("not shown at 30 columns: dropped last, dropped first")
    assert table.legend(200) == []


@pytest.mark.parametrize("width", [30, 60, 80, 200])
def test_fit_table_renders_within_its_width(width: int) -> None:
    lines = render_text(_table(), width).splitlines()
    assert all(len(line.rstrip()) <= width for line in lines)
    assert not any("…" in line for line in lines)


def test_fit_table_refuses_rows_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"argument `rows`: expected 2 cells per row, received 1"):
        FitTable("t", [Column("a"), Column("b")], [["1"]])
