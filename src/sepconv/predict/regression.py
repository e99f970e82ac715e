"""The per-kernel predictor: nearest measured neighbours and a local linear fit in log space.

Kernels are grouped by what changes their code path: a conv by its type (standard, grouped,
depthwise, pointwise), kernel size, stride and dilation; an activation by its function; an SE
by its two activations; the others by kind. Within a group a kernel is described by the logs
(base 2) of its sizes: output positions ``N * H' * W'``, input and output channels (and
groups, or an SE's reduced channels). A conv's fused activation and residual add are
categories: a neighbour that differs in one is counted as farther away.

A prediction takes the :data:`NEIGHBOURS` measured kernels of its group nearest to the query
and fits ``log t = a + b . features`` to them by weighted least squares (weights falling with
distance, a small ridge on the slopes), then evaluates it at the query: interpolation where the
samples surround the query, a power law continued from the nearest ones where they do not;
never further than :data:`SIZE_SPREAD` from the median of the neighbours' times scaled by size.
Log time makes the fit relative: a 5% error costs the same on a 10 us kernel and a 10 ms one.

For a backend in :data:`SIZE_SCALED_BACKENDS` no slopes are fitted: each neighbour's time is
scaled by the query's size over its own (MACs plus bytes), and the faster
:data:`FASTER_SHARE` of the scaled times (by weight, nearer ones weighing more) is averaged in
log space. ONNX Runtime's kernels, timed by their nodes' durations, cost close to their size,
and ten of them timed on a noisy machine give slopes that follow the noise: on two runs of
100 models (the same profiles and measured times) the scaled neighbours put 82% and 77%
within ±10% against 72% and 62% for the fit, and on a fresh profile and 100 fresh models 67%
against 51%. Why the faster half: a moment when the host is busy only ever makes a timing
slower, so the mean of all ten follows their slowest (their held-out kernels came out 4-6%
too slow at the median on three profiles of four); the faster half estimates the undisturbed
time, and the whole networks' fit (:mod:`sepconv.predict.whole_networks`, its networks read
undisturbed too) sets the level a model runs at. Re-predicted offline on the same measured
models (``benchmarks/predict_offline.py``, the networks read by their median as before), it
put 87% within ±10% against 70% in a quiet hour, and 49% against 52% in a noisy one (the
runtime timed against itself: 80% of twins within ±10%), where at the speed the reference
network read it gave 62% against 55%. Eager PyTorch keeps the fit: its small kernels cost mostly a
fixed dispatch, which no size scaling follows (within each group of ten models of one run,
69% against 88%), and the faster half of its fit's neighbours did no better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sepconv.predict.kernels import Kernel, UnpredictableKernelError
from sepconv.utils.validation import invalid

__all__ = [
    "FASTER_SHARE",
    "NEIGHBOURS",
    "SIZE_SCALED_BACKENDS",
    "GroupModel",
    "KernelRegressor",
    "faster_share_mean",
    "features",
    "fits_slopes",
    "group_key",
]

#: Measured kernels a prediction is fitted to.
NEIGHBOURS = 10
# Distance added for each category (fused activation, fused add) a neighbour differs in: as far
# as a kernel with 8x the channels.
CATEGORY_DISTANCE = 3.0
# Ridge penalty on the slopes of the local fit (relative to the neighbours' total weight),
# against collinear features (a depthwise conv's equal input and output channels).
RIDGE = 1e-4
# How far (log2) a prediction may stray from the median of its neighbours' times scaled by
# size (MACs + bytes): a factor of 2.
SIZE_SPREAD = 1.0
#: The backends whose kernels are predicted from their neighbours scaled by size, no slopes
#: fitted (see the module doc).
SIZE_SCALED_BACKENDS = frozenset({"onnxruntime"})
#: The share of the neighbours' weight, fastest scaled times first, that such a prediction
#: averages: a disturbed timing is only ever slower (see the module doc).
FASTER_SHARE = 0.5
# Measured times are floored here before taking logs: a kernel the runtime folds into its
# neighbour costs nothing, and its measurement may come out at or below zero.
FLOOR_S = 2e-7


def faster_share_mean(
    values: np.ndarray, weights: np.ndarray, share: float = FASTER_SHARE
) -> float:
    """The weighted mean of the smallest ``values`` that carry ``share`` of the ``weights``
    (the value that crosses the share included; ``share=1``: the weighted mean of all).

    Example:
        >>> float(faster_share_mean(np.array([3.0, 1.0, 2.0, 9.0]), np.ones(4)))
        1.5
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    last = min(int(np.searchsorted(cumulative, share * cumulative[-1])), len(order) - 1)
    kept = order[: last + 1]
    return float(np.sum(weights[kept] * values[kept]) / weights[kept].sum())


def fits_slopes(backend: str) -> bool:
    """Whether ``backend``'s kernels are predicted by a local fit (not in
    :data:`SIZE_SCALED_BACKENDS`)."""
    return backend not in SIZE_SCALED_BACKENDS


def group_key(kernel: Kernel) -> tuple[object, ...]:
    """The group a kernel is predicted within (see the module doc)."""
    if kernel.kind == "conv":
        return ("conv", kernel.conv_type, kernel.kernel_size, kernel.stride, kernel.dilation)
    if kernel.kind == "act":
        return ("act", kernel.act)
    if kernel.kind == "se":
        return ("se", kernel.act, kernel.gate)
    if kernel.kind == "mul":
        return ("mul", kernel.inputs[0] != kernel.inputs[1])
    if kernel.kind == "layernorm":
        return ("layernorm", kernel.transposed)
    return (kernel.kind,)


def features(kernel: Kernel) -> tuple[np.ndarray, tuple[object, ...]]:
    """The continuous features (log2 sizes) and the categories of ``kernel``."""
    out = kernel.output
    n = kernel.inputs[0][0]
    cin = kernel.inputs[0][1]
    if kernel.kind == "conv":
        positions = n * out[2] * out[3]
        values = [positions, cin, out[1]]
        if kernel.conv_type == "grouped":
            values.append(kernel.groups)
        return np.log2(np.array(values, float)), (kernel.act, kernel.add)
    if kernel.kind == "linear":
        return np.log2(np.array([n, cin, out[-1]], float)), ()
    shape = kernel.inputs[0]
    positions = n * (shape[2] * shape[3] if len(shape) == 4 else 1)
    values = [positions, cin]
    if kernel.kind == "se":
        values.append(kernel.hidden)
    return np.log2(np.array(values, float)), ()


def _log_work(kernel: Kernel) -> float:
    """log2 of the kernel's MACs plus bytes (at least 1): its size, for scaling a time."""
    return math.log2(max(1, kernel.macs + kernel.bytes))


@dataclass
class GroupModel:
    """The measured kernels of one group: features, categories and log2 seconds."""

    x: np.ndarray
    categories: list[tuple[object, ...]]
    log_t: np.ndarray
    kernels: list[Kernel]
    slopes: bool = True  # a local fit; else the neighbours' scaled times averaged
    faster_share: float = FASTER_SHARE  # of those scaled times (by weight), the share averaged
    log_work: np.ndarray = field(init=False)  # log2 of each kernel's MACs + bytes

    def __post_init__(self) -> None:
        self.log_work = np.array([_log_work(k) for k in self.kernels])

    def distances(self, query: np.ndarray, categories: tuple[object, ...]) -> np.ndarray:
        d = np.sqrt(((self.x - query) ** 2).sum(axis=1))
        if categories:
            mismatch = np.array(
                [sum(a != b for a, b in zip(c, categories, strict=True)) for c in self.categories]
            )
            d = d + CATEGORY_DISTANCE * mismatch
        return d

    def predict(self, kernel: Kernel) -> tuple[float, float]:
        """Seconds for ``kernel``, and the distance to its nearest measured neighbour."""
        query, categories = features(kernel)
        d = self.distances(query, categories)
        count = min(NEIGHBOURS, len(d))
        near = np.argpartition(d, count - 1)[:count]
        nearest = float(d[near].min())
        # Each neighbour's time scaled by size to the query's; their median bounds both ways
        # (one sample timed in a slow spell cannot drag the prediction, which once put a
        # 1.6-MMAC pointwise conv at 1.8 ms from such a neighbour).
        scaled = self.log_t[near] + _log_work(kernel) - self.log_work[near]
        centre = float(np.median(scaled))
        if not self.slopes:
            mean = faster_share_mean(scaled, 1.0 / (d[near] ** 2 + 0.25), self.faster_share)
            return float(2.0 ** min(max(mean, centre - SIZE_SPREAD), centre + SIZE_SPREAD)), nearest
        dims = query.size
        if count < dims + 2:  # too few to fit slopes: scale the nearest by its size
            j = int(near[np.argmin(d[near])])
            return float(2.0 ** (self.log_t[j] + _log_work(kernel) - self.log_work[j])), nearest
        weights = 1.0 / (d[near] ** 2 + 0.25)
        design = np.hstack([np.ones((count, 1)), self.x[near] - query])
        sw = np.sqrt(weights)[:, None]
        a = design * sw
        penalty = RIDGE * float(weights.sum()) * np.eye(dims + 1)
        penalty[0, 0] = 0.0
        coef = np.linalg.solve(a.T @ a + penalty, a.T @ (self.log_t[near] * sw[:, 0]))
        # The intercept is the fit at the query (features were centred on it).
        log_t = float(coef[0])
        log_t = min(max(log_t, centre - SIZE_SPREAD), centre + SIZE_SPREAD)
        low, high = self.log_t[near].min(), self.log_t[near].max()
        # Within the group's measured range stretched by 8x each way: a fit continued far past
        # its neighbours is not trusted further than that.
        log_t = min(max(log_t, self.log_t.min() - 3.0), self.log_t.max() + 3.0)
        if nearest < 1.0:  # among measured kernels: stay within what they measured, +-25%
            log_t = min(max(log_t, low - 0.32), high + 0.32)
        return float(2.0**log_t), nearest


class KernelRegressor:
    """Predicts a kernel's seconds from measured ``(kernel, seconds)`` pairs.

    Example:
        >>> ks = [Kernel("act", ((1, c, 8, 8),), (1, c, 8, 8), act="relu") for c in (8, 16, 32)]
        >>> reg = KernelRegressor(ks, [1e-6 * c for c in (8, 16, 32)])
        >>> round(reg.predict(Kernel("act", ((1, 24, 8, 8),), (1, 24, 8, 8), act="relu")) * 1e6, 1)
        24.0
    """

    def __init__(
        self,
        kernels: Sequence[Kernel],
        seconds: Sequence[float],
        slopes: bool = True,
        faster_share: float = FASTER_SHARE,
    ) -> None:
        """``slopes``: fit a local power law (else average the neighbours scaled by size;
        :func:`fits_slopes` says which for a backend). ``faster_share``: without slopes, the
        share of the neighbours' weight averaged, fastest scaled times first (1: all of them,
        as before 2026-12-08)."""
        if not 0.0 < faster_share <= 1.0:
            raise invalid("faster_share", "a share in (0, 1]", faster_share)
        grouped: dict[tuple[object, ...], list[tuple[Kernel, float]]] = {}
        for kernel, t in zip(kernels, seconds, strict=True):
            grouped.setdefault(group_key(kernel), []).append((kernel, t))
        self.groups: dict[tuple[object, ...], GroupModel] = {}
        for key, pairs in grouped.items():
            feats = [features(k) for k, _ in pairs]
            self.groups[key] = GroupModel(
                x=np.array([f[0] for f in feats]),
                categories=[f[1] for f in feats],
                log_t=np.log2(np.maximum([t for _, t in pairs], FLOOR_S)),
                kernels=[k for k, _ in pairs],
                slopes=slopes,
                faster_share=faster_share,
            )

    def predict(self, kernel: Kernel) -> float:
        """Seconds for ``kernel``; :class:`UnpredictableKernelError` when its group has no
        measured kernel."""
        return self.predict_with_distance(kernel)[0]

    def predict_with_distance(self, kernel: Kernel) -> tuple[float, float]:
        """Seconds for ``kernel`` and the distance (log2 units) to its nearest measured one."""
        model = self.groups.get(group_key(kernel))
        if model is None:
            raise UnpredictableKernelError(
                f"Cannot predict kernel {describe(kernel)} in layer `{kernel.layer or '?'}`: "
                f"the profile measured no kernel of its group {_group_text(group_key(kernel))}; "
                "calibrate with models that contain it."
            )
        return model.predict(kernel)


def _group_text(key: tuple[object, ...]) -> str:
    return "/".join(str(part) for part in key if part not in ("", None))


def describe(kernel: Kernel) -> str:
    """A short description: ``"conv depthwise 3x3/2 relu6 1x96x56x56 -> 1x96x28x28"``."""
    shape = "x".join(map(str, kernel.inputs[0]))
    out = "x".join(map(str, kernel.output))
    what: str = kernel.kind
    if kernel.kind == "conv":
        k = kernel.kernel_size
        what = f"conv {kernel.conv_type} {k}x{k}/{kernel.stride}"
        what += (f" {kernel.act}" if kernel.act else "") + (" +add" if kernel.add else "")
    elif kernel.kind in ("act", "se"):
        what += f" {kernel.act}" + (f"/{kernel.gate}" if kernel.gate else "")
    return f"{what} {shape} -> {out}"


def rmspe(errors: Sequence[float] | np.ndarray) -> float:
    """Root mean square of relative errors (0.05: 5%)."""
    e = np.asarray(errors, float)
    return float(math.sqrt(float(np.mean(e**2)))) if e.size else math.nan
