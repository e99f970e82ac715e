"""What an eager model pays per module call beyond its kernels, fitted on whole networks.

A graph runtime runs the kernels of its graph; eager PyTorch also runs Python: every module's
``__call__``, the blocks' own ``forward`` code, and the small ops around the kernels. An eager
calibration (:func:`sepconv.predict.calibrate.calibrate`) therefore times a few random networks
of the design space whole, subtracts the kernels' predicted sum and the model call's fixed
cost, and divides what is left by the network's module calls: the profile's ``module_call_s``,
which :func:`sepconv.predict.predict_latency` adds per module call.
"""

from __future__ import annotations

import functools
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
    "empty_module_call_seconds",
    "module_call_seconds",
]

#: Random networks an eager calibration times whole, to fit what a module call costs, and the
#: rounds each is timed in (the median of its rounds is its time).
OVERHEAD_NETWORKS = 9
OVERHEAD_ROUNDS = 3
# Identity modules in the chain that times an empty module call.
MODULE_CHAIN = 64


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


def module_call_seconds(
    samples: Mapping[Kernel, Mapping[str, float]],
    timers: Mapping[str, Any],
    fusions: Sequence[str],
    call_s: dict[str, float],
    *,
    device: str,
    seed: int,
    deadline: float,
) -> tuple[dict[str, float], dict[str, Any]]:
    """What an eager model pays per module call beyond its kernels: fitted on
    :data:`OVERHEAD_NETWORKS` random networks of the design space, as the median over them of
    (measured - call - the kernels' predicted sum) per module call, and never less than an
    empty module's call (:func:`empty_module_call_seconds`, also the answer when no network
    drawn could be predicted: a calibration too short to have sampled every kernel group). It
    is Python's module calls and the blocks' own code, and the dispatch of small ops around the
    kernels: on a 2-core EPYC 4-16 us a module call, several times an empty one.

    Each network is timed whole in every variant in up to :data:`OVERHEAD_ROUNDS` rounds, the
    order changing from round to round (``interleaved_order``), and its time is the median of
    its rounds: a network timed once, inside a moment the machine ran slow, moved the fit by a
    factor of two from one calibration to the next when it rested on five single timings. Rounds
    after the first stop at ``deadline``. The networks are drawn from ``seed + 2``, a stream of
    their own (up to three times :data:`OVERHEAD_NETWORKS` draws).
    Returns the cost per variant, and its evidence for the profile's ``validation``: each
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
            calls = max(trace.module_calls, 1)
            networks.append(_Network(spec.describe(), model, shape, calls, predicted))
    for r in range(OVERHEAD_ROUNDS):
        if r > 0 and time.perf_counter() >= deadline:
            break
        for i in interleaved_order(len(networks), r) if networks else []:
            network = networks[i]
            for variant in network.kernels_s:
                layout = torch.channels_last if variant == "nhwc" else torch.contiguous_format
                x = torch.randn(network.shape, device=device).contiguous(memory_format=layout)
                net = network.model.to(memory_format=layout)
                seconds = timers[variant].time_call(functools.partial(net, x))
                network.rounds_s[variant].append(seconds)
    per_call: dict[str, list[float]] = {v: [] for v in variants}
    records: list[dict[str, Any]] = []
    for network in networks:
        for variant, kernels_s in network.kernels_s.items():
            rounds = network.rounds_s[variant]
            measured = float(np.median(rounds))
            per_call[variant].append((measured - call_s[variant] - kernels_s) / network.calls)
            records.append(
                {
                    "network": network.name,
                    "variant": variant,
                    "measured_s": measured,
                    "rounds_s": rounds,
                    "kernels_s": kernels_s,
                    "module_calls": network.calls,
                }
            )
    floor = empty_module_call_seconds(device)
    fit = {v: max(float(np.median(c)) if c else floor, floor) for v, c in per_call.items()}
    return fit, {"empty_module_call_s": floor, "networks": records}


def empty_module_call_seconds(device: str) -> float:
    """What a call of an empty module costs: a chain of identity modules, per module."""
    chain = torch.nn.Sequential(*(torch.nn.Identity() for _ in range(MODULE_CHAIN)))
    x = torch.zeros(1, device=device)
    with torch.inference_mode():
        return measure(lambda: chain(x), warmup=3, repeats=9).median_s / (MODULE_CHAIN + 1)
