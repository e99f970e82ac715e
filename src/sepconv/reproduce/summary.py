"""One row of a sweep's results table: a row's finished runs, their accuracy statistics over
seeds and the row's counted and measured cost.

:func:`sepconv.reproduce.table.summarize` builds one :class:`RowSummary` per row of the config;
:mod:`sepconv.reproduce.twins` pairs them, :mod:`sepconv.reproduce.render` renders them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sepconv.bench.timing import Timing
from sepconv.models import ModelInfo, published_model_info
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
        model_kwargs: The row's builder arguments (``width_mult``), which decide the published
            variant it is compared with.
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
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def published(self) -> ModelInfo | None:
        """The registered variant whose published ImageNet top-1 belongs to this row's
        architecture: ``mobilenet_v1`` at ``width_mult=0.25`` is ``mobilenet_v1_025``.
        ``None`` for a twin and for a variant nobody published."""
        if self.twin:
            return None
        return published_model_info(self.model, self.model_kwargs)

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
        info = self.published
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
            "model_kwargs": dict(self.model_kwargs),
            "imagenet_top1_published": None if info is None else info.top1,
            "imagenet_top1_variant": None if info is None else info.name,
            "imagenet_top1_source": None if info is None else info.source,
        }
