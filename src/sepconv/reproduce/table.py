"""The results table of a sweep: accuracy over seeds next to counted and measured cost.

:func:`summarize` aggregates the finished runs of every row into a
:class:`~sepconv.reproduce.summary.RowSummary` (mean, sample standard deviation, min-max of test
accuracy over seeds, with params, MACs and CPU latency) and pairs each standard twin with its
separable row in a :class:`~sepconv.reproduce.twins.TwinSummary`;
:func:`~sepconv.reproduce.render.render_markdown` renders a :class:`ResultsTable` and
:func:`sepconv.reproduce.results.write_results` writes it, with the plots of
:mod:`sepconv.reproduce.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sepconv.bench.timing import Timing
from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.cost import RowCost
from sepconv.reproduce.speed import time_to_accuracy
from sepconv.reproduce.summary import RowSummary
from sepconv.reproduce.twins import HOWARD_TABLE_4, TwinSummary

__all__ = ["FASHION_MNIST_BENCHMARK", "ResultsTable", "RowSummary", "TwinSummary", "summarize"]

# The benchmark table of https://github.com/zalandoresearch/fashion-mnist (README, "Benchmark";
# submitted results, marked there as not yet tested by the maintainers).
FASHION_MNIST_BENCHMARK = (
    "Fashion-MNIST benchmark table (github.com/zalandoresearch/fashion-mnist README, submitted "
    "results not verified by its maintainers): MobileNet (horizontal flips) 0.950, ResNet18 "
    "0.949, VGG16 (26M params) 0.935 test accuracy."
)


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
    target_accuracy: float | None = None
    gpu: str | None = None  # the GPU of the throughput column, when measured

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
            "target_accuracy": self.target_accuracy,
            "gpu": self.gpu,
            "rows": [row.to_dict() for row in self.rows],
            "twins": [twin.to_dict() for twin in self.twins],
            "references": [HOWARD_TABLE_4, FASHION_MNIST_BENCHMARK],
        }


def summarize(
    config: ReproduceConfig,
    results: Mapping[str, list[dict[str, Any]]],
    costs: Mapping[str, RowCost],
    latency: Mapping[str, Mapping[int, Timing]],
    *,
    input_shape: tuple[int, int, int],
    latency_trained: Mapping[str, bool] | None = None,
    gpu_throughput: Mapping[str, float] | None = None,
    gpu: str | None = None,
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
        gpu_throughput: Per row name, GPU inference images/s at batch 256 (default: none).
        gpu: The name of the GPU that throughput was measured on.
    """
    target = config.target_accuracy
    rows = []
    for row in config.rows:
        done = results.get(row.name, [])
        rows.append(
            RowSummary(
                name=row.name,
                model=row.model,
                model_kwargs=row.model_kwargs,
                twin=row.twin,
                changes=row.changes,
                note=row.note,
                cost=costs[row.name],
                seeds=tuple(r["seed"] for r in done),
                accuracies=tuple(r["test_acc"] for r in done),
                train_time_s=tuple(r["train_time_s"] for r in done),
                latency=dict(latency.get(row.name, {})),
                latency_trained=(latency_trained or {}).get(row.name, True),
                gpu_images_per_s=(gpu_throughput or {}).get(row.name),
                time_to_target_s=(
                    ()
                    if target is None
                    else tuple(time_to_accuracy(r.get("history", []), target) for r in done)
                ),
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
        target_accuracy=target,
        gpu=gpu,
    )
