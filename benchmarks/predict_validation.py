"""What ``predict_accuracy.py`` and ``predict_drift.py`` share: random models with
trained-looking BatchNorm statistics, timed in interleaved rounds, and the summary of the
prediction errors."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sepconv.bench import measure
from sepconv.bench.timing import RUNTIME_SETTLE_S, interleaved_order
from sepconv.predict import MOBILENET_STYLES, NetworkSpec, Profile, sample_network
from sepconv.predict.quiet import quiet_measure

GROUP = 10  # models timed round-robin together (with one twin: the noise floor)


def randomize_norms(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Trained-looking BatchNorm statistics: folding then gives every conv a real bias."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.5, c)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.25, 2.25, c)))
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c)))
                m.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, c)))
    return model


def draw_group(rng: np.random.Generator, size: int) -> list[tuple[NetworkSpec, nn.Module]]:
    """``size`` random models of the MobileNet design space, BatchNorm randomised: the specs
    drawn first, then each model built, as ``predict_accuracy.py`` draws a group (so that
    ``predict_offline.py`` can build a recorded run's models again from its seed)."""
    specs = [sample_network(rng, MOBILENET_STYLES) for _ in range(size)]
    return [(spec, randomize_norms(spec.build(), rng)) for spec in specs]


def time_group(
    runners: list,
    inputs: list,
    rounds: int,
    tally: dict[str, int],
    device: str = "cpu",
    probe: Callable[[], float] | None = None,
    readings: list[float] | None = None,
    first_round: int = 0,
) -> list[float]:
    """Median over interleaved rounds of each runner's median ms. On the CPU each timing leaves
    out the blocks other processes disturbed (``quiet_measure``); on a GPU CUDA events time
    blocks of calls, each block synchronised (``measure``). With a ``probe`` (seconds of one
    call of the profile's reference network, ``sepconv.predict.speed``), it is read after
    every round into ``readings``. ``first_round``: the number of the first round (each round
    runs the runners in another order, ``interleaved_order``)."""
    per_round: list[list[float]] = [[] for _ in runners]
    for r in range(first_round, first_round + rounds):
        for i in interleaved_order(len(runners), r):
            if device == "cuda":
                gpu = measure(
                    functools.partial(runners[i], inputs[i]),
                    repeats=5,
                    min_block_s=0.02,
                    device=device,
                )
                per_round[i].append(gpu.median_ms)
                tally["kept"] += 5
                continue
            time.sleep(RUNTIME_SETTLE_S)  # the previous runtime's threads stop spinning
            timing = quiet_measure(
                functools.partial(runners[i], inputs[i]), repeats=5, min_block_s=0.02
            )
            per_round[i].append(timing.median_ms)
            tally["kept"] += timing.kept
            tally["disturbed"] += timing.disturbed
            tally["busy"] += timing.busy
        if probe is not None and readings is not None:
            readings.append(probe())
    return [float(np.median(v)) for v in per_round]


def time_groups(
    groups: Sequence[tuple[list, list]],
    rounds: int,
    tally: dict[str, int],
    device: str = "cpu",
    probe: Callable[[], float] | None = None,
    spread: bool = True,
) -> list[tuple[list[float], list[float]]]:
    """Each group's ``(runners, inputs)`` timed in ``rounds`` interleaved rounds
    (:func:`time_group`); per group, each runner's median ms and the ``probe``'s readings.

    ``spread``: round ``r`` of every group before round ``r + 1`` of any, so that a model's
    rounds, and its median, span the whole run: on a host whose speed changes for minutes at a
    time, a group timed in one stretch measures that stretch's speed, where a calibration's
    kernels and networks, timed throughout it, describe the machine's typical speed. Otherwise
    (``spread=False``) a group's rounds follow one another."""
    steps = [(r, g) for r in range(rounds) for g in range(len(groups))]
    if not spread:
        steps.sort(key=lambda step: step[1])  # stable: each group's rounds in order, in a row
    per_round: list[list[list[float]]] = [[[] for _ in runners] for runners, _ in groups]
    probed: list[list[float]] = [[] for _ in groups]
    for r, g in steps:
        runners, inputs = groups[g]
        ms = time_group(runners, inputs, 1, tally, device, probe, probed[g], first_round=r)
        for i, value in enumerate(ms):
            per_round[g][i].append(value)
        if (g == len(groups) - 1) if spread else (r == rounds - 1):
            print(f"round {r + 1}/{rounds}, group {g + 1}/{len(groups)} timed", flush=True)
    return [
        ([float(np.median(v)) for v in group], readings)
        for group, readings in zip(per_round, probed, strict=True)
    ]


def summary(errors: list[float], misses: int = 0) -> dict[str, float]:
    """Shares within 10% and 5% (``misses``: models with no prediction, counted outside), and
    the RMSPE, mean and worst of the relative errors."""
    e = np.asarray(errors)
    total = e.size + misses
    return {
        "within_10pct": float(np.sum(np.abs(e) <= 0.10) / total),
        "within_5pct": float(np.sum(np.abs(e) <= 0.05) / total),
        "rmspe": float(np.sqrt(np.mean(e**2))),
        "mean_error": float(np.mean(e)),
        "max_abs_error": float(np.max(np.abs(e))),
    }


def compared(
    rows: Sequence[dict[str, Any]], j: int, other: Profile, profile: Profile
) -> dict[str, Any]:
    """How profile ``other`` predicted the models measured for ``profile`` (its predictions in
    each row's ``compared{j}_ms``), and, where both profiles timed the reference network, at
    the speed its own reference time implies (each group's ``speed_factor`` is the reference
    network's time then over ``profile``'s)."""
    record: dict[str, Any] = {
        "profile": other.describe(),
        "kernel_timing": other.kernel_timing,
        "calibration_s": other.elapsed_s,
        **summary([r[f"compared{j}_ms"] / r["measured_ms"] - 1 for r in rows]),
    }
    if profile.reference_s and other.reference_s and all("speed_factor" in r for r in rows):
        ratio = profile.reference_s / other.reference_s
        record["rechecked"] = summary(
            [r[f"compared{j}_ms"] * r["speed_factor"] * ratio / r["measured_ms"] - 1 for r in rows]
        )
    return record
