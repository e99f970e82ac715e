"""Pictures of measured speed: the roofline with every layer on it, latency against MACs.

Both functions write PNG or SVG (from the file suffix) atomically and need matplotlib
(``pip install sepconv[plot]``); it is imported on call, with the Agg backend, so no display is
needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sepconv.bench.per_layer import LayerTiming
from sepconv.bench.roofline import Ceilings
from sepconv.utils.files import write_atomic
from sepconv.utils.validation import invalid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUFFIXES = (".png", ".svg")

# One colour per conv kind, so depthwise and standard convs separate at a glance.
KIND_COLOURS = {
    "depthwise_conv": "tab:blue",
    "pointwise_conv": "tab:orange",
    "standard_conv": "tab:red",
    "grouped_conv": "tab:purple",
    "linear": "tab:green",
}


def new_figure() -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(7.5, 5.0), layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> Path:
    if Path(path).suffix.lower() not in SUFFIXES:
        raise invalid("path", f"a file name ending in {' or '.join(SUFFIXES)}", str(path))
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120))


def plot_roofline(
    rows: Sequence[LayerTiming], ceilings: Ceilings, path: str | Path, *, title: str = ""
) -> Path:
    """Draw the measured roofline and each placed layer as a point; write it to ``path``.

    Args:
        rows: Layers from :func:`sepconv.bench.per_layer.per_layer_latency` with ceilings; rows
            without a roofline place are skipped.
        ceilings: The measured ceilings: the DRAM roof, and the cache roof (dashed) when it
            was measured. A layer whose bytes fit in the cache is drawn as a triangle and held
            against the cache roof.
        path: ``.png`` or ``.svg`` destination.
        title: Figure title.

    Example:
        >>> plot_roofline(report.rows, report.ceilings, "roofline.png")  # doctest: +SKIP
    """
    placed = [row for row in rows if row.roofline is not None and row.cost is not None]
    fig = new_figure()
    ax = fig.add_subplot()
    lo = min([p.roofline.intensity for p in placed if p.roofline] + [ceilings.ridge / 20])
    hi = max([p.roofline.intensity for p in placed if p.roofline] + [ceilings.ridge * 20])
    xs = [lo / 1.5, ceilings.ridge, hi * 1.5]
    roof = f"DRAM roof: {ceilings.peak_gflops:.0f} GFLOP/s, {ceilings.bandwidth_gbs:.1f} GB/s"
    ax.plot(xs, [ceilings.attainable_gflops(x) for x in xs], color="black", lw=2, label=roof)
    ax.axvline(ceilings.ridge, color="grey", ls=":", lw=1)
    if ceilings.cache_bandwidth_gbs is not None and ceilings.cache_bytes is not None:
        ridge = ceilings.peak_gflops / ceilings.cache_bandwidth_gbs
        cache_xs = sorted({lo / 1.5, min(max(ridge, lo / 1.5), hi * 1.5), hi * 1.5})
        ax.plot(
            cache_xs,
            [ceilings.attainable_gflops(x, "cache") for x in cache_xs],
            color="black",
            lw=1.2,
            ls="--",
            label=f"cache roof: {ceilings.cache_bandwidth_gbs:.1f} GB/s "
            f"(working set up to {ceilings.cache_bytes / 2**20:.0f} MiB; triangles)",
        )
    for kind, colour in KIND_COLOURS.items():
        for level, marker in (("dram", "o"), ("cache", "^")):
            points = [
                row.roofline
                for row in placed
                if row.cost
                and row.cost.kind == kind
                and row.roofline
                and row.roofline.level == level
            ]
            if points:
                ax.scatter(
                    [p.intensity for p in points],
                    [p.achieved_gflops for p in points],
                    s=22,
                    color=colour,
                    marker=marker,
                    label=f"{kind} ({len(points)}{', in cache' if level == 'cache' else ''})",
                    alpha=0.8,
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte, FLOP = 2 MAC)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(
        title
        or f"peak {ceilings.peak_gflops:.0f} GFLOP/s, {ceilings.bandwidth_gbs:.1f} GB/s, "
        f"{ceilings.threads} thread(s)"
    )
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_latency_vs_macs(
    models: Sequence[tuple[str, float, float]], path: str | Path, *, title: str = ""
) -> Path:
    """Scatter each model's measured latency against its counted MACs; write it to ``path``.

    Args:
        models: ``(name, headline MACs, median latency in ms)`` per model.
        path: ``.png`` or ``.svg`` destination.
        title: Figure title.

    Example:
        >>> plot_latency_vs_macs([("mobilenet_v2", 300e6, 9.1), ("resnet50", 4.1e9, 60.0)],
        ...                      "latency.png")  # doctest: +SKIP
    """
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter([m[1] / 1e9 for m in models], [m[2] for m in models], color="tab:blue")
    for name, macs, ms in models:
        ax.annotate(name, (macs / 1e9, ms), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GMACs (counted, 1 MAC = one multiply-add)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(title or "latency vs MACs")
    return save_figure(fig, path)
