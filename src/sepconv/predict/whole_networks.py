"""What a model pays beyond its kernels timed alone, fitted on whole networks.

Kernels timed alone, each over and over in a small graph, need not add up to the model they
make: the runtime plans a whole model otherwise, and what each kernel finds in the caches
differs. Eager PyTorch also runs Python: every module's ``__call__``, the blocks' own
``forward`` code, and the small ops around the kernels. A calibration
(:func:`sepconv.predict.calibrate.calibrate`) therefore times a few random networks of the
design space whole, as a user runs them (eager PyTorch: the module; a graph runtime: the file
``sepconv.export_onnx`` writes), and fits the profile's ``kernel_scale``, by which
:func:`sepconv.predict.predict_latency` multiplies the kernels' predicted sum, and (eager only)
its ``module_call_s``, which it adds per module call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sepconv.bench.timing import interleaved_order, measure
from sepconv.deploy.fuse import fuse
from sepconv.predict.kernels import Kernel, kernels_of_ops
from sepconv.predict.regression import KernelRegressor
from sepconv.predict.space import MOBILENET_STYLES, sample_network
from sepconv.predict.trace import trace_ops

__all__ = [
    "OVERHEAD_NETWORKS",
    "OVERHEAD_ROUNDS",
    "SCALE_RIDGE",
    "NetworkFit",
    "empty_module_call_seconds",
    "fit_networks",
    "whole_network_fits",
]

#: Random networks a calibration times whole, to fit what a model pays beyond its kernels, and
#: the rounds each is timed in (the median of its rounds is its time).
OVERHEAD_NETWORKS = 9
OVERHEAD_ROUNDS = 3
# Identity modules in the chain that times an empty module call.
MODULE_CHAIN = 64
#: Weight of the pull of the kernel scale towards 1 in the fit (:func:`fit_networks`), against
#: the nine networks' errors squared (relative): with networks that barely differ in their
#: share of module calls, the two costs cannot be told apart, and the scale stays near 1.
SCALE_RIDGE = 0.1


@dataclass(frozen=True)
class NetworkFit:
    """What whole networks say beyond their kernels: ``measured = call + kernel_scale *
    kernels + module_call_s * module calls``."""

    kernel_scale: float
    module_call_s: float


def fit_networks(
    measured_s: Sequence[float],
    kernels_s: Sequence[float],
    calls: Sequence[int],
    call_s: float,
    floor_s: float,
) -> NetworkFit:
    """The kernel scale ``a >= 0`` and cost per module call ``m >= floor_s`` that minimise
    ``sum(((call_s + a * K + m * C) / M - 1) ** 2) + SCALE_RIDGE * (a - 1) ** 2`` over networks
    measured at ``M`` seconds whose kernels' predicted sum is ``K`` and module calls ``C``: a
    least-squares fit of relative errors, the scale pulled towards 1. With no network, the
    kernels as predicted and an empty module's call (``a = 1``, ``m = floor_s``).

    Example:
        >>> fit = fit_networks([3.0, 5.0], [1.0, 1.0], [1, 2], call_s=0.0, floor_s=0.1)
        >>> round(fit.kernel_scale, 3), round(fit.module_call_s, 3)
        (1.0, 2.0)
    """
    if len(measured_s) == 0:
        return NetworkFit(1.0, floor_s)
    m = np.asarray(measured_s, float)
    k = np.asarray(kernels_s, float) / m
    c = np.asarray(calls, float) / m
    # Unknowns (a, m - floor_s), both >= 0; the ridge row pulls a towards 1.
    a_rows = np.vstack([np.column_stack([k, c]), [math.sqrt(SCALE_RIDGE), 0.0]])
    b = np.append(1.0 - (call_s + floor_s * np.asarray(calls, float)) / m, math.sqrt(SCALE_RIDGE))
    candidates = [np.linalg.lstsq(a_rows, b, rcond=None)[0]]
    for keep in (0, 1):  # the best with the other unknown at its bound
        column = a_rows[:, keep]
        if not column.any():  # no module calls (a graph runtime): nothing to fit there
            continue
        solo = np.zeros(2)
        solo[keep] = max(float(column @ b / (column @ column)), 0.0)
        candidates.append(solo)
    feasible = [x for x in candidates if x[0] >= 0 and x[1] >= 0]
    best = min(feasible, key=lambda x: float(np.sum((a_rows @ x - b) ** 2)))
    return NetworkFit(float(best[0]), floor_s + float(best[1]))


@dataclass
class _Network:
    """A drawn network: its kernels' predicted sum per variant it could be predicted in, and
    its whole-network times there, one per round."""

    name: str
    model: torch.nn.Module
    shape: tuple[int, ...]
    calls: int  # module calls per forward
    kernels_s: dict[str, float]
    rounds_s: dict[str, list[float]] = field(init=False)

    def __post_init__(self) -> None:
        self.rounds_s = {variant: [] for variant in self.kernels_s}


def whole_network_fits(
    samples: Mapping[Kernel, Mapping[str, float]],
    timers: Mapping[str, Any],
    fusions: Sequence[str],
    call_s: dict[str, float],
    *,
    eager: bool,
    device: str,
    seed: int,
    deadline: float,
) -> tuple[dict[str, NetworkFit], dict[str, Any]]:
    """What a model pays beyond its kernels timed alone, per variant: fitted on
    :data:`OVERHEAD_NETWORKS` random networks of the design space by :func:`fit_networks`: the
    scale of the kernels' predicted sum and, for an ``eager`` runtime, the cost per module
    call, never less than an empty module's call (:func:`empty_module_call_seconds`; a graph
    runtime calls no modules: 0). With no network that could be predicted (a calibration too
    short to have sampled every kernel group), the kernels as predicted. The module calls are
    Python's and the blocks' own code, and the dispatch of small ops around the kernels; the
    scale is what the kernels' sum misses inside a model, whatever its cause.

    Each network is timed whole in every variant (``timers[variant].network``) in up to
    :data:`OVERHEAD_ROUNDS` rounds, the order changing from round to round
    (``interleaved_order``), and its time is the median of its rounds: a network timed once,
    inside a moment the machine ran slow, moved the fit by a factor of two from one
    calibration to the next when it rested on five single timings. Rounds after the first stop
    at ``deadline``. The networks are drawn from ``seed + 2``, a stream of their own (up to
    three times :data:`OVERHEAD_NETWORKS` draws).
    Returns the fit per variant, and its evidence for the profile's ``validation``: each
    network's times and the empty module's call."""
    variants = list(timers)
    kernels = list(samples)
    regressors = {v: KernelRegressor(kernels, [samples[k][v] for k in kernels]) for v in variants}
    rng = np.random.default_rng(seed + 2)
    networks: list[_Network] = []
    for _ in range(3 * OVERHEAD_NETWORKS):
        if len(networks) >= OVERHEAD_NETWORKS:
            break
        spec = sample_network(rng, MOBILENET_STYLES)
        model = fuse(spec.build().eval()).to(device)
        shape = (1, 3, spec.resolution, spec.resolution)
        trace = trace_ops(model, shape)
        graph = kernels_of_ops(trace.nodes, fusions)
        predicted: dict[str, float] = {}
        for variant in variants:
            try:
                predicted[variant] = sum(regressors[variant].predict(k) for k in graph)
            except ValueError:  # a kernel group the budget left unsampled
                continue
        if predicted:
            calls = max(trace.module_calls, 1) if eager else 0
            networks.append(_Network(spec.describe(), model, shape, calls, predicted))
    # Each network as the runtime runs it whole: built once, timed in every round.
    timed = {
        (i, variant): timers[variant].network(network.model, network.shape, f"network{i}")
        for i, network in enumerate(networks)
        for variant in network.kernels_s
    }
    try:
        for r in range(OVERHEAD_ROUNDS):
            if r > 0 and time.perf_counter() >= deadline:
                break
            for i in interleaved_order(len(networks), r) if networks else []:
                network = networks[i]
                for variant in network.kernels_s:
                    network.rounds_s[variant].append(timed[i, variant]())
    finally:
        timed.clear()  # release the runtimes' sessions
    records: list[dict[str, Any]] = []
    for network in networks:
        for variant, kernels_s in network.kernels_s.items():
            rounds = network.rounds_s[variant]
            records.append(
                {
                    "network": network.name,
                    "variant": variant,
                    "measured_s": float(np.median(rounds)),
                    "rounds_s": rounds,
                    "kernels_s": kernels_s,
                    "module_calls": network.calls,
                }
            )
    floor = empty_module_call_seconds(device) if eager else 0.0
    fits = {}
    for variant in variants:
        mine = [r for r in records if r["variant"] == variant]
        fits[variant] = fit_networks(
            [r["measured_s"] for r in mine],
            [r["kernels_s"] for r in mine],
            [r["module_calls"] for r in mine],
            call_s[variant],
            floor,
        )
    return fits, {"empty_module_call_s": floor, "networks": records}


def empty_module_call_seconds(device: str) -> float:
    """What a call of an empty module costs: a chain of identity modules, per module."""
    chain = torch.nn.Sequential(*(torch.nn.Identity() for _ in range(MODULE_CHAIN)))
    x = torch.zeros(1, device=device)
    with torch.inference_mode():
        return measure(lambda: chain(x), warmup=3, repeats=9).median_s / (MODULE_CHAIN + 1)
