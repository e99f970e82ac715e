"""The results of a sweep: accuracy over seeds next to counted and measured cost.

:func:`summarize` aggregates the finished runs of every row (mean, sample standard deviation,
min-max of test accuracy over seeds) with params, MACs and CPU latency, and pairs each standard
twin with its separable row; :func:`write_results` writes the Markdown and JSON tables, the three
plots (accuracy against params, MACs and latency, log-x) and the record of how they were made.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sepconv.bench.output import markdown_environment, markdown_table
from sepconv.bench.plots import new_figure, save_figure
from sepconv.bench.timing import Timing
from sepconv.models import get_model_info
from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.sweep import RowCost
from sepconv.utils.files import write_json, write_text

# Howard et al., "MobileNets" (arXiv:1704.04861), Table 4: the same network with standard
# convolutions ("Conv MobileNet") against depthwise separable ones, ImageNet top-1.
HOWARD_TABLE_4 = (
    "Howard et al. 2017, Table 4 (ImageNet): Conv MobileNet 71.7% top-1, 4866M mult-adds, "
    "29.3M params; MobileNet 70.6%, 569M, 4.2M."
)
# The benchmark table of https://github.com/zalandoresearch/fashion-mnist (README, "Benchmark";
# submitted results, marked there as not yet tested by the maintainers).
FASHION_MNIST_BENCHMARK = (
    "Fashion-MNIST benchmark table (github.com/zalandoresearch/fashion-mnist README, submitted "
    "results not verified by its maintainers): MobileNet (horizontal flips) 0.950, ResNet18 "
    "0.949, VGG16 (26M params) 0.935 test accuracy."
)
TWIN_ACCURACY_TOLERANCE = 0.5  # points of test accuracy
TWIN_MIN_RATIO = 7.0  # standard / separable params and MACs


@dataclass(frozen=True)
class RowSummary:
    """One row of the table.

    Attributes:
        name: Row name.
        model: Registered model.
        twin: ``None`` or ``"standard"``.
        changes: How the row departs from the sweep recipe.
        note: The row's note.
        cost: Params, MACs, whether it has depthwise convs.
        seeds: Seeds of the finished runs.
        accuracies: Their final test accuracies (fractions, seed order).
        train_time_s: Their training times (evaluation excluded).
        latency: Median-based CPU latency per batch size (empty when not measured).
        latency_trained: Whether ``latency`` was timed on a run's trained weights, rather than
            on initial weights with measured BatchNorm statistics (``latency_model``).
    """

    name: str
    model: str
    twin: str | None
    changes: Mapping[str, Any]
    note: str
    cost: RowCost
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]
    train_time_s: tuple[float, ...]
    latency: Mapping[int, Timing]
    latency_trained: bool = True

    @property
    def acc_mean(self) -> float | None:
        """Mean test accuracy in percent (``None`` without runs)."""
        return 100 * statistics.fmean(self.accuracies) if self.accuracies else None

    @property
    def acc_std(self) -> float | None:
        """Sample standard deviation (n - 1) of test accuracy in points; ``None`` below 2 runs."""
        return 100 * statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else None

    @property
    def acc_range(self) -> tuple[float, float] | None:
        """``(min, max)`` test accuracy in percent."""
        if not self.accuracies:
            return None
        return 100 * min(self.accuracies), 100 * max(self.accuracies)

    @property
    def kind(self) -> str:
        """``"separable"`` when the model has depthwise convs, else ``"standard"``."""
        return "separable" if self.cost.separable else "standard"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        info = get_model_info(self.model)
        return {
            "name": self.name,
            "model": self.model,
            "twin": self.twin,
            "kind": self.kind,
            "changes": dict(self.changes),
            "note": self.note,
            "params": self.cost.params,
            "macs": self.cost.macs,
            "seeds": list(self.seeds),
            "test_acc": list(self.accuracies),
            "test_acc_mean_pct": self.acc_mean,
            "test_acc_std_pct": self.acc_std,
            "test_acc_min_max_pct": list(self.acc_range) if self.acc_range else None,
            "train_time_s": list(self.train_time_s),
            "latency": {str(b): t.to_dict() for b, t in self.latency.items()},
            "latency_trained_weights": self.latency_trained,
            "imagenet_top1_published": info.top1,
            "imagenet_top1_source": info.source,
        }


@dataclass(frozen=True)
class TwinSummary:
    """A separable row against its standard twin (same model, arguments, recipe and data)."""

    separable: RowSummary
    standard: RowSummary

    @property
    def param_ratio(self) -> float:
        """Standard params / separable params."""
        return self.standard.cost.params / self.separable.cost.params

    @property
    def mac_ratio(self) -> float:
        """Standard MACs / separable MACs."""
        return self.standard.cost.macs / self.separable.cost.macs

    def latency_ratio(self, batch: int) -> float | None:
        """Standard median latency / separable median latency at ``batch``."""
        if batch not in self.separable.latency or batch not in self.standard.latency:
            return None
        return self.standard.latency[batch].median_s / self.separable.latency[batch].median_s

    @property
    def acc_gap(self) -> float | None:
        """Separable mean minus standard mean test accuracy, in points."""
        a, b = self.separable.acc_mean, self.standard.acc_mean
        return None if a is None or b is None else a - b

    @property
    def cost_verdict(self) -> str:
        """Whether the separable twin has at least 7x fewer params and MACs."""
        ok = min(self.param_ratio, self.mac_ratio) >= TWIN_MIN_RATIO
        return (
            f"{self.param_ratio:.1f}x fewer params, {self.mac_ratio:.1f}x fewer MACs "
            f"({'at least' if ok else 'below'} {TWIN_MIN_RATIO:g}x)"
        )

    @property
    def accuracy_verdict(self) -> str:
        """How the mean accuracies compare against the 0.5-point tolerance, in words."""
        gap = self.acc_gap
        if gap is None:
            return "not run"
        if abs(gap) <= TWIN_ACCURACY_TOLERANCE:
            return f"within {TWIN_ACCURACY_TOLERANCE} points ({gap:+.2f})"
        side = "lower" if gap < 0 else "higher"
        return (
            f"not within {TWIN_ACCURACY_TOLERANCE} points: the separable twin is "
            f"{abs(gap):.2f} points {side}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "separable": self.separable.name,
            "standard": self.standard.name,
            "param_ratio": self.param_ratio,
            "mac_ratio": self.mac_ratio,
            "latency_ratio": {
                str(b): self.latency_ratio(b) for b in sorted(self.separable.latency)
            },
            "acc_gap_points": self.acc_gap,
            "cost_verdict": self.cost_verdict,
            "accuracy_verdict": self.accuracy_verdict,
        }


@dataclass(frozen=True)
class ResultsTable:
    """Every row and twin pair of a sweep, plus what the numbers mean."""

    name: str
    data: str
    input_shape: tuple[int, ...]
    recipe: Mapping[str, Any]
    augment: bool
    test_images: int | None
    rows: tuple[RowSummary, ...]
    twins: tuple[TwinSummary, ...]
    random_erasing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "data": self.data,
            "input_shape": list(self.input_shape),
            "recipe": dict(self.recipe),
            "augment": self.augment,
            "random_erasing": self.random_erasing,
            "test_images": self.test_images,
            "rows": [row.to_dict() for row in self.rows],
            "twins": [twin.to_dict() for twin in self.twins],
            "references": [HOWARD_TABLE_4, FASHION_MNIST_BENCHMARK],
        }

    def _augmentation(self) -> str:
        if not self.augment:
            return "none"
        erasing = (
            f" + random erasing (p={self.random_erasing}, Zhong et al. 2020)"
            if self.random_erasing
            else ""
        )
        return "random crop + horizontal flip" + erasing

    def _latency_weights(self) -> str:
        timed = [row for row in self.rows if row.latency]
        untrained = [f"`{row.name}`" for row in timed if not row.latency_trained]
        stand_in = (
            "initial weights with BatchNorm statistics measured on training images "
            "(`sepconv.reproduce.latency_model`), the same shapes and operations"
        )
        if not untrained:
            return "on the trained weights of one run per row."
        if len(untrained) == len(timed):
            return (
                f"on {stand_in}: the run folders keep no weights (a results folder keeps "
                "results and logs)."
            )
        return (
            f"on the trained weights of one run per row, except {', '.join(untrained)}, whose "
            f"run folders keep no weights (a results folder keeps results and logs): on {stand_in}."
        )

    def to_markdown(self, header: str) -> str:
        """The table as Markdown under ``header`` (command, machine, versions)."""
        batches = sorted({b for row in self.rows for b in row.latency})
        threads = {t.threads for row in self.rows for t in row.latency.values()}
        shape = "x".join(str(s) for s in self.input_shape)
        recipe = ", ".join(f"{k}={v}" for k, v in self.recipe.items() if k != "seed")
        lines = [
            f"# {self.name}: accuracy against cost on {self.data}",
            "",
            header,
            "",
            f"Recipe of every row (a row's `changes` column says where it departs): `{recipe}`; "
            f"augmentation: {self._augmentation()}. "
            "Test accuracy is the last epoch's (no selection on the test set), on "
            f"{'all' if self.test_images is None else f'the first {self.test_images}'} test "
            "images; mean, sample standard deviation and min-max over seeds. Params and MACs: "
            f"`sepconv.analyze` at 1x{shape} (1 MAC = one multiply-add; conv + linear). "
            "Latency: median per call of `sepconv.bench.timing.measure`, eval mode, fp32, CPU, "
            f"{'/'.join(map(str, sorted(threads))) or '-'} thread(s), measured for all rows in "
            f"one process after training, {self._latency_weights()}",
            "",
        ]
        headers = [
            "row",
            "convs",
            "params",
            "MACs",
            *(f"latency b{b} (ms)" for b in batches),
            "test acc % (mean ± std)",
            "min-max",
            "seeds",
            "train min/run",
            "changes",
            "ImageNet top-1 (published)",
        ]
        body = []
        for row in self.rows:
            mean, std, rng = row.acc_mean, row.acc_std, row.acc_range
            changes = ", ".join(f"{k}={v}" for k, v in row.changes.items()) or "-"
            if row.twin:
                changes = f"{row.twin} twin" + ("" if changes == "-" else f"; {changes}")
            top1 = get_model_info(row.model).top1
            body.append(
                [
                    row.name,
                    row.kind,
                    f"{row.cost.params:,}",
                    f"{row.cost.macs / 1e6:,.1f}M",
                    *(
                        f"{row.latency[b].median_ms:.2f}" if b in row.latency else "-"
                        for b in batches
                    ),
                    "not run"
                    if mean is None
                    else f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}"),
                    "-" if rng is None else f"{rng[0]:.2f}-{rng[1]:.2f}",
                    str(len(row.seeds)),
                    f"{statistics.fmean(row.train_time_s) / 60:.1f}" if row.train_time_s else "-",
                    changes,
                    "-" if row.twin else f"{top1:.1f}",
                ]
            )
        lines.append(markdown_table(headers, body))
        if self.twins:
            lines += ["", "## Standard convolutions against depthwise separable ones", ""]
            lines.append(
                "The same network built twice: every depthwise + pointwise pair replaced by one "
                "standard conv of the same kernel, stride and channels (`standard_twin`), "
                "everything else equal. " + HOWARD_TABLE_4
            )
            lines.append("")
            twin_headers = [
                "separable",
                "standard",
                "params ratio",
                "MACs ratio",
                *(f"latency ratio b{b}" for b in batches),
                "acc gap (points)",
                "cost",
                "accuracy",
            ]
            twin_body = []
            for twin in self.twins:
                gap = twin.acc_gap
                twin_body.append(
                    [
                        twin.separable.name,
                        twin.standard.name,
                        f"{twin.param_ratio:.2f}x",
                        f"{twin.mac_ratio:.2f}x",
                        *(
                            "-" if (r := twin.latency_ratio(b)) is None else f"{r:.2f}x"
                            for b in batches
                        ),
                        "-" if gap is None else f"{gap:+.2f}",
                        twin.cost_verdict,
                        twin.accuracy_verdict,
                    ]
                )
            lines.append(markdown_table(twin_headers, twin_body))
        notes = [f"- `{row.name}`: {row.note}" for row in self.rows if row.note]
        if notes:
            lines += ["", "## Notes", "", *notes]
        lines += [
            "",
            "## References",
            "",
            f"- {FASHION_MNIST_BENCHMARK}",
            "- ImageNet top-1 column: the published figure of each architecture "
            "(`sepconv zoo` lists the source of each).",
        ]
        return "\n".join(lines) + "\n"


def summarize(
    config: ReproduceConfig,
    results: Mapping[str, list[dict[str, Any]]],
    costs: Mapping[str, RowCost],
    latency: Mapping[str, Mapping[int, Timing]],
    *,
    input_shape: tuple[int, int, int],
    latency_trained: Mapping[str, bool] | None = None,
) -> ResultsTable:
    """Aggregate finished runs into a :class:`ResultsTable`.

    Args:
        config: The sweep.
        results: Per row name, the ``result.json`` contents of its finished runs.
        costs: Per row name, params and MACs.
        latency: Per row name, timing per batch size.
        input_shape: ``(C, H, W)`` the models were trained at.
        latency_trained: Per row name, whether its latency was timed on trained weights
            (default: all were).
    """
    rows = []
    for row in config.rows:
        done = results.get(row.name, [])
        rows.append(
            RowSummary(
                name=row.name,
                model=row.model,
                twin=row.twin,
                changes=row.changes,
                note=row.note,
                cost=costs[row.name],
                seeds=tuple(r["seed"] for r in done),
                accuracies=tuple(r["test_acc"] for r in done),
                train_time_s=tuple(r["train_time_s"] for r in done),
                latency=dict(latency.get(row.name, {})),
                latency_trained=(latency_trained or {}).get(row.name, True),
            )
        )
    by_name = {row.name: row for row in rows}
    twins = []
    for row in config.rows:
        partner = config.twin_partner(row)
        if partner is not None:
            twins.append(TwinSummary(by_name[partner.name], by_name[row.name]))
    return ResultsTable(
        name=config.name,
        data=config.data,
        input_shape=input_shape,
        recipe=config.recipe.to_dict(),
        augment=config.augment,
        test_images=config.test_images,
        rows=tuple(rows),
        twins=tuple(twins),
        random_erasing=config.random_erasing,
    )


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
    CPU latency, or the smallest batch measured) into ``out_dir``; return their paths."""
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


def _versions() -> dict[str, str]:
    import matplotlib
    import numpy
    import torch
    import tqdm

    from sepconv.utils.version import __version__

    return {
        "sepconv": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "tqdm": tqdm.__version__,
    }


def write_results(
    table: ResultsTable,
    out_dir: str | Path,
    *,
    config: ReproduceConfig,
    command: str,
    context: Mapping[str, Any],
    run_files: Mapping[str, Mapping[str, Path]],
) -> list[Path]:
    """Write everything a committed sweep result holds, each file atomically.

    Files in ``out_dir``: ``results.json`` and ``results.md`` (the table), the three plots of
    :func:`plot_results`, ``config.toml`` (the config as run), ``command.txt``,
    ``environment.json`` (machine, versions, threads, load average at start and end) and
    ``runs/<row>/seed<k>/`` with each run's ``result.json`` and training log.

    Args:
        table: The summarized results.
        out_dir: Destination folder (created).
        config: The sweep config.
        command: The command line that produced the results.
        context: Machine and run facts: ``environment`` (:func:`sepconv.bench.environment`),
            threads, device, load averages.
        run_files: Per run key (``<row>/seed<k>``), the files to copy under their names.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(context)
    env["versions"] = _versions()
    written = [
        write_json(out / "results.json", {**table.to_dict(), "command": command, "context": env}),
        write_text(
            out / "results.md",
            table.to_markdown(markdown_environment(context["environment"], command)),
        ),
        *plot_results(table, out),
        write_text(out / "config.toml", config.text),
        write_text(out / "command.txt", command + "\n"),
        write_json(out / "environment.json", env),
    ]
    for key, files in run_files.items():
        folder = out / "runs" / key
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            if source.is_file():
                written.append(write_text(folder / name, source.read_text(encoding="utf-8")))
    return written
