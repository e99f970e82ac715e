"""Per-layer latency that does not perturb what it measures.

Each leaf module's real input is captured once (:func:`sepconv.utils.capture.capture`), then the
leaf is replayed on that input in isolation by the timing harness, with no hooks installed. Each
row carries the analyzer's counted cost of that layer next to its measured time, the achieved
GMAC/s and GB/s, and, given measured :class:`~sepconv.bench.roofline.Ceilings`, its place on the
roofline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sepconv.analysis import HEADLINE_KINDS, CostReport, analyze
from sepconv.bench.roofline import Ceilings, RooflinePoint, place
from sepconv.bench.timing import Timing, measure
from sepconv.utils.capture import ModuleCall, capture


@dataclass(frozen=True)
class ModuleCost:
    """Counted cost of one module's call: the analyzer's op rows of that module, summed.

    Attributes:
        kind: The analyzer's kind of the module's heaviest op (``"depthwise_conv"``, ``"norm"``…).
        macs: Multiply-adds (1 MAC = one multiply-add; FLOPs = 2 x MACs).
        bytes_moved: Weights read + activations read + activations written, in bytes.
    """

    kind: str
    macs: int
    bytes_moved: int


@dataclass(frozen=True)
class LayerTiming:
    """One leaf layer: what it received, what it cost on paper and what it took.

    Attributes:
        name: Qualified module name.
        module_type: The module's class name.
        input_shape: Shape of its first tensor input.
        output_shape: Shape of its output.
        timing: The isolated replay's timing.
        cost: The counted cost, when the analyzer saw this layer.
        roofline: Its place on the roofline, when ceilings were given and its kind is a
            headline kind (convolution or linear: real multiply-adds, not MAC-equivalents).
    """

    name: str
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    timing: Timing
    cost: ModuleCost | None = None
    roofline: RooflinePoint | None = None

    @property
    def gmacs_per_s(self) -> float | None:
        """Achieved GMAC/s (counted MACs / median time), or ``None`` without a count."""
        if self.cost is None or self.cost.macs == 0:
            return None
        return self.cost.macs / self.timing.median_s / 1e9

    @property
    def gbytes_per_s(self) -> float | None:
        """Achieved GB/s (counted bytes / median time), or ``None`` without a count."""
        if self.cost is None or self.cost.bytes_moved == 0:
            return None
        return self.cost.bytes_moved / self.timing.median_s / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "module_type": self.module_type,
            "input_shape": list(self.input_shape),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "median_ms": self.timing.median_ms,
            "iqr_ms": self.timing.iqr_ms,
            "kind": None if self.cost is None else self.cost.kind,
            "macs": None if self.cost is None else self.cost.macs,
            "bytes_moved": None if self.cost is None else self.cost.bytes_moved,
            "gmacs_per_s": self.gmacs_per_s,
            "gbytes_per_s": self.gbytes_per_s,
            "roofline": None if self.roofline is None else asdict(self.roofline),
        }


@dataclass(frozen=True)
class PerLayerReport:
    """Every leaf layer of a model timed in isolation, next to the whole model's time.

    Attributes:
        rows: One :class:`LayerTiming` per leaf, in execution order.
        model_timing: The whole model's timing on the same input and thread count.
        ceilings: The roofline ceilings the rows were placed against, if any.
    """

    rows: tuple[LayerTiming, ...]
    model_timing: Timing
    ceilings: Ceilings | None

    @property
    def layers_total_s(self) -> float:
        """Sum of the layers' median times, seconds."""
        return sum(row.timing.median_s for row in self.rows)

    @property
    def coverage(self) -> float:
        """Sum of layer medians / model median.

        Below 1: time spent outside leaf modules (residual adds, reshapes, framework overhead);
        above 1: the whole model gains from cache reuse between consecutive layers, which
        isolated replays lose.
        """
        return self.layers_total_s / self.model_timing.median_s

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "model_median_ms": self.model_timing.median_ms,
            "model_iqr_ms": self.model_timing.iqr_ms,
            "layers_total_ms": self.layers_total_s * 1e3,
            "coverage": self.coverage,
            "threads": self.model_timing.threads,
            "ceilings": None if self.ceilings is None else self.ceilings.to_dict(),
            "rows": [row.to_dict() for row in self.rows],
        }


def costs_from_analysis(report: CostReport) -> dict[str, ModuleCost]:
    """Sum the analyzer's per-op rows into one :class:`ModuleCost` per module name.

    Args:
        report: The result of :func:`sepconv.analyze` on the same model and input size.

    Example:
        >>> from sepconv.analysis import analyze
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
        >>> costs_from_analysis(analyze(net, (1, 3, 10, 10)))["0"].macs  # 8*8*8 outputs x 27
        13824
    """
    grouped: dict[str, list[Any]] = {}
    for row in report.rows:
        grouped.setdefault(row.name, []).append(row)
    return {
        name: ModuleCost(
            kind=max(rows, key=lambda r: r.macs).kind,
            macs=sum(r.macs for r in rows),
            bytes_moved=sum(r.bytes_moved for r in rows),
        )
        for name, rows in grouped.items()
    }


def _replayable(call: ModuleCall) -> Callable[[], object]:
    module = call.module
    if getattr(module, "inplace", False):
        # An in-place activation replayed on one tensor would keep rewriting it (SiLU drifts into
        # denormals); time the out-of-place twin of the same op instead.
        module = copy.copy(module)
        setattr(module, "inplace", False)  # noqa: B010 (mypy types Module attributes as tensors)
    args, kwargs = call.args, dict(call.kwargs)
    return lambda: module(*args, **kwargs)


def per_layer_latency(
    model: nn.Module,
    example: torch.Tensor,
    *,
    costs: Mapping[str, ModuleCost] | None = None,
    ceilings: Ceilings | None = None,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 15,
    progress: bool = False,
    model_timing: Timing | None = None,
) -> PerLayerReport:
    """Time every leaf layer of ``model`` on the input it really receives from ``example``.

    Args:
        model: The model, in the mode to measure (call ``.eval()`` for inference).
        example: One input batch, e.g. ``torch.randn(1, 3, 224, 224)``; its memory format,
            dtype and device are those the layers see (``model`` must be on the same device).
            On CUDA every layer and the whole model are timed with CUDA events.
        costs: Counted cost per module name; default: :func:`sepconv.analyze` of ``model`` at
            ``example``'s shape and dtype, summed by :func:`costs_from_analysis`.
        ceilings: Measured ceilings; when given, layers with a cost are placed on the roofline.
        threads: Intra-op threads pinned for every timing.
        warmup: Warm-up calls per layer.
        repeats: Timed blocks per layer.
        progress: Show a tqdm bar over the layers.
        model_timing: The whole model's timing on ``example`` when the caller has measured it
            already (same threads and device): reused, so that one model run gets one
            whole-model figure. Default: measured here after the layers.

    Returns:
        A :class:`PerLayerReport`, with the whole model timed under the same settings.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
        >>> report = per_layer_latency(net, torch.randn(1, 3, 16, 16), repeats=3)
        >>> [row.input_shape for row in report.rows]
        [(1, 3, 16, 16), (1, 8, 14, 14)]
    """
    device = example.device
    leaves = [call for call in capture(model, example) if call.is_leaf]
    if costs is None:
        costs = costs_from_analysis(analyze(model, tuple(example.shape), dtype=example.dtype))
    rows = []
    for call in tqdm(leaves, desc="layers", disable=not progress, leave=False):
        timing = measure(
            _replayable(call), warmup=warmup, repeats=repeats, threads=threads, device=device
        )
        cost = costs.get(call.name)
        point = None
        if (
            ceilings is not None
            and cost is not None
            and cost.kind in HEADLINE_KINDS
            and cost.macs > 0
            and cost.bytes_moved > 0
        ):
            point = place(2 * cost.macs, cost.bytes_moved, timing.median_s, ceilings)
        rows.append(
            LayerTiming(
                name=call.name,
                module_type=type(call.module).__name__,
                input_shape=call.input_shapes[0] if call.input_shapes else (),
                output_shape=call.output_shape,
                timing=timing,
                cost=cost,
                roofline=point,
            )
        )
    if model_timing is None:
        model_timing = measure(
            lambda: model(example), warmup=warmup, repeats=repeats, threads=threads, device=device
        )
    return PerLayerReport(tuple(rows), model_timing, ceilings)
