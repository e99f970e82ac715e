"""What a model pays beyond its kernels timed alone, fitted on whole networks.

Kernels timed alone, each over and over in a small graph, need not add up to the model they
make: the runtime plans a whole model otherwise, and what each kernel finds in the caches
differs. Eager PyTorch also runs Python: every module's ``__call__``, the blocks' own
``forward`` code, and the small ops around the kernels. A calibration
(:func:`sepconv.predict.calibrate.calibrate`) therefore times a few random networks of the
design space whole, now and then over the whole calibration, as a user runs them (eager
PyTorch: the module; a graph runtime: the file ``sepconv.export_onnx`` writes), and fits the
profile's ``kernel_scale``, by which :func:`sepconv.predict.predict_latency` multiplies the
kernels' predicted sum, and (eager only) its ``module_call_s``, which it adds per module call.
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
from sepconv.predict.space import MOBILENET_STYLES, NetworkSpec, sample_network
from sepconv.predict.speed import SpeedProbe, typical_seconds
from sepconv.predict.trace import trace_ops

__all__ = [
    "OVERHEAD_NETWORKS",
    "OVERHEAD_SHARE",
    "SCALE_RIDGE",
    "NetworkFit",
    "WholeNetworks",
    "empty_module_call_seconds",
    "fit_networks",
    "whole_network_specs",
]

#: Random networks a calibration times whole, to fit what a model pays beyond its kernels, and
#: the share of the calibration's time spent timing them (a network's time is read from its
#: timings by :func:`sepconv.predict.speed.typical_seconds`).
OVERHEAD_NETWORKS = 9
OVERHEAD_SHARE = 0.1
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
    """A drawn network and its whole-network times in each variant, one per timing."""

    name: str
    model: torch.nn.Module
    shape: tuple[int, ...]
    calls: int  # module calls per forward
    kernels: list[Kernel]
    rounds_s: dict[str, list[float]] = field(default_factory=dict)


class WholeNetworks:
    """:data:`OVERHEAD_NETWORKS` random networks of the design space, timed whole now and then
    over a whole calibration, and the fit of what a model pays beyond its kernels on them.

    The machines sepconv is calibrated on change speed within seconds (a virtual machine's
    host: in one calibration the same network, timed eleven times, took from 11.6 to 19.6 ms),
    so networks timed only at the end of a calibration, within a few seconds, fitted the
    scale to whatever speed the machine had then, and every prediction with it. Timed
    throughout, the networks see the same mix of fast and slow moments as the kernels do.
    A network's time is the median of its timings, or their undisturbed time where the
    kernels are predicted from theirs (:func:`sepconv.predict.speed.typical_seconds`).
    :meth:`due` says when the networks' share of the time spent so far is below
    :data:`OVERHEAD_SHARE`; :meth:`time_next` then times the next network in every variant
    (``timers[variant].network``; the order changes from round to round,
    ``interleaved_order``), building it on its first timing (a graph runtime exports it
    then), and then reads the ``probe`` (:class:`sepconv.predict.speed.SpeedProbe`) if due.
    The networks are drawn from ``seed + 2``, a stream of their own.
    """

    def __init__(
        self,
        timers: Mapping[str, Any],
        fusions: Sequence[str],
        *,
        eager: bool,
        device: str,
        seed: int,
        probe: SpeedProbe | None = None,
        slopes: bool = True,
    ) -> None:
        self.timers = timers
        self.slopes = slopes  # how the kernels are predicted (KernelRegressor's ``slopes``)
        self.probe = probe
        self.eager = eager
        self.device = device
        self.started = time.perf_counter()
        self.spent_s = 0.0
        self.done = 0  # timings so far, over all networks
        self.networks: list[_Network] = []
        for spec in whole_network_specs(seed):
            model = fuse(spec.build().eval()).to(device)
            shape = (1, 3, spec.resolution, spec.resolution)
            trace = trace_ops(model, shape)
            calls = max(trace.module_calls, 1) if eager else 0
            kernels = kernels_of_ops(trace.nodes, fusions)
            self.networks.append(_Network(spec.describe(), model, shape, calls, kernels))
        self._timed: dict[tuple[int, str], Any] = {}

    def due(self) -> bool:
        """Whether the networks have had less than their share of the time so far."""
        return self.spent_s < OVERHEAD_SHARE * (time.perf_counter() - self.started)

    def time_next(self) -> None:
        """Time the next network whole in every variant."""
        began = time.perf_counter()
        count = len(self.networks)
        i = interleaved_order(count, self.done // count)[self.done % count]
        network = self.networks[i]
        for variant, timer in self.timers.items():
            if (i, variant) not in self._timed:
                self._timed[i, variant] = timer.network(network.model, network.shape, f"net{i}")
            network.rounds_s.setdefault(variant, []).append(self._timed[i, variant]())
        self.done += 1
        self.spent_s += time.perf_counter() - began
        # The reference network right after a whole one, as a user's run of a model follows
        # another: timed right after a kernel, it took 1.45x its time in a run of models.
        if self.probe is not None and self.probe.due():
            self.probe.read()

    def close(self) -> None:
        """Release the runtimes' sessions."""
        self._timed.clear()

    def fit(
        self, samples: Mapping[Kernel, Mapping[str, float]], call_s: Mapping[str, float]
    ) -> tuple[dict[str, NetworkFit], dict[str, Any]]:
        """What a model pays beyond its kernels timed alone, per variant, by :func:`fit_networks`
        over the networks timed at least once whose kernels ``samples`` can predict (each network's
        time: the median of its timings, or their undisturbed time without slopes): the scale of the
        kernels' predicted sum and, for an eager runtime, the cost per module call, never less than
        an empty module's call (:func:`empty_module_call_seconds`; a graph runtime calls no modules:
        0). With no such network (a calibration too short to have sampled every kernel group), the
        kernels as predicted. Returns the fit per variant and its evidence for the profile's
        ``validation``: each network's times and the empty module's call."""
        kernels = list(samples)
        records: list[dict[str, Any]] = []
        for variant in self.timers:
            seconds = [samples[k][variant] for k in kernels]
            regressor = KernelRegressor(kernels, seconds, self.slopes)
            for network in self.networks:
                rounds = network.rounds_s.get(variant, [])
                try:
                    predicted = sum(regressor.predict(k) for k in network.kernels)
                except ValueError:  # a kernel group the budget left unsampled
                    continue
                if rounds:
                    records.append(
                        {
                            "network": network.name,
                            "variant": variant,
                            "measured_s": typical_seconds(rounds, undisturbed=not self.slopes),
                            "rounds_s": rounds,
                            "kernels_s": predicted,
                            "module_calls": network.calls,
                        }
                    )
        floor = empty_module_call_seconds(self.device) if self.eager else 0.0
        fits = {}
        for variant in self.timers:
            mine = [r for r in records if r["variant"] == variant]
            fits[variant] = fit_networks(
                [r["measured_s"] for r in mine],
                [r["kernels_s"] for r in mine],
                [r["module_calls"] for r in mine],
                call_s[variant],
                floor,
            )
        return fits, {"empty_module_call_s": floor, "networks": records}


def whole_network_specs(seed: int) -> list[NetworkSpec]:
    """The :data:`OVERHEAD_NETWORKS` random networks a calibration of ``seed`` times whole
    (:class:`WholeNetworks`), drawn from ``seed + 2``: to rebuild them, as
    ``benchmarks/predict_offline.py`` does to fit their scale again offline."""
    rng = np.random.default_rng(seed + 2)
    return [sample_network(rng, MOBILENET_STYLES) for _ in range(OVERHEAD_NETWORKS)]


def empty_module_call_seconds(device: str) -> float:
    """What a call of an empty module costs: a chain of identity modules, per module."""
    chain = torch.nn.Sequential(*(torch.nn.Identity() for _ in range(MODULE_CHAIN)))
    x = torch.zeros(1, device=device)
    with torch.inference_mode():
        return measure(lambda: chain(x), warmup=3, repeats=9).median_s / (MODULE_CHAIN + 1)
