"""The plots of a sweep's results: accuracy against params, MACs and latency (log-x).

Matplotlib is imported when a plot is drawn, not when this module is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sepconv.bench.plots import new_figure, save_figure
from sepconv.reproduce.table import ResultsTable, RowSummary


def _plot(
    table: ResultsTable,
    x_of: Callable[[RowSummary], float | None],
    xlabel: str,
    path: Path,
) -> Path:
    """One accuracy-against-cost scatter: a point per row at its mean, bars from min to max,
    a dashed line joining each twin pair, log-scaled x."""
    from matplotlib.lines import Line2D

    fig = new_figure()
    ax = fig.add_subplot()
    colours = {"separable": "tab:blue", "standard": "tab:red"}
    points: dict[str, tuple[float, float]] = {}
    for row in table.rows:
        x, mean, rng = x_of(row), row.acc_mean, row.acc_range
        if x is None or mean is None or rng is None:
            continue
        points[row.name] = (x, mean)
        ax.errorbar(
            [x],
            [mean],
            yerr=[[mean - rng[0]], [rng[1] - mean]],
            fmt="o",
            color=colours[row.kind],
            capsize=3,
        )
        ax.annotate(row.name, (x, mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for twin in table.twins:
        if twin.separable.name in points and twin.standard.name in points:
            (x0, y0), (x1, y1) = points[twin.separable.name], points[twin.standard.name]
            ax.plot([x0, x1], [y0, y1], linestyle="--", color="grey", linewidth=1)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.1)  # room for the labels of the outermost points
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%), mean over seeds, bars: min-max")
    ax.set_title(f"{table.name}: {table.data}")
    ax.grid(True, which="both", alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=f"{kind} convs")
        for kind, c in colours.items()
    ]
    if table.twins:
        handles.append(Line2D([], [], linestyle="--", color="grey", label="twin pair"))
    ax.legend(handles=handles, loc="best")
    return save_figure(fig, path)


def plot_results(table: ResultsTable, out_dir: str | Path) -> list[Path]:
    """Write ``acc_vs_params.png``, ``acc_vs_macs.png`` and ``acc_vs_latency.png`` (batch-1
    CPU latency, or the smallest batch measured) into ``out_dir``; return their paths.

    Example:
        >>> plot_results(table, "results/reproduce_compact")  # doctest: +SKIP
    """
    out = Path(out_dir)
    batches = sorted({b for row in table.rows for b in row.latency})
    smallest = batches[0] if batches else None

    def latency_ms(row: RowSummary) -> float | None:
        timing = row.latency.get(smallest) if smallest is not None else None
        return None if timing is None else timing.median_ms

    return [
        _plot(table, lambda r: float(r.cost.params), "parameters", out / "acc_vs_params.png"),
        _plot(
            table,
            lambda r: float(r.cost.macs),
            "multiply-adds per image (MACs)",
            out / "acc_vs_macs.png",
        ),
        _plot(
            table,
            latency_ms,
            f"CPU latency at batch {smallest} (ms, median)",
            out / "acc_vs_latency.png",
        ),
    ]
