"""One row of a sweep's results table: a row's finished runs, their accuracy statistics over
seeds and the row's counted and measured cost.

:func:`sepconv.reproduce.table.summarize` builds one :class:`RowSummary` per row of the config;
:mod:`sepconv.reproduce.twins` pairs them, :mod:`sepconv.reproduce.render` renders them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sepconv.bench.timing import Timing
from sepconv.models import get_model_info
from sepconv.reproduce.cost import RowCost

__all__ = ["RowSummary"]


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
        gpu_images_per_s: Inference images/s at batch 256 on the GPU the sweep trained on
            (:func:`sepconv.reproduce.speed.gpu_throughput`); ``None`` off a GPU.
        time_to_target_s: Per run, training seconds to the sweep's ``target_accuracy``
            (:func:`sepconv.reproduce.speed.time_to_accuracy`; ``None``: not reached); empty
            when the sweep sets no target.
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
    gpu_images_per_s: float | None = None
    time_to_target_s: tuple[float | None, ...] = ()

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
            "gpu_images_per_s_b256": self.gpu_images_per_s,
            "time_to_target_s": list(self.time_to_target_s),
            "imagenet_top1_published": info.top1,
            "imagenet_top1_source": info.source,
        }
