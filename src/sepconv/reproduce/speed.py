"""How fast a row runs on a GPU and how fast its runs learned.

:func:`gpu_throughput` measures inference images per second of a row's model on a CUDA device
at batch 256, in the precision and memory format it trained in, after a sweep on that device
(the table's latency columns stay CPU). :func:`time_to_accuracy` reads from a run's epoch log
how much training time it took to first reach a test accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sepconv.bench.timing import measure
from sepconv.reproduce.config import RowConfig
from sepconv.reproduce.cost import latency_model
from sepconv.reproduce.data import SweepData

GPU_THROUGHPUT_BATCH = 256


def gpu_throughput(
    row: RowConfig,
    data: SweepData,
    device: str | torch.device,
    *,
    weights: Path | None = None,
    batch: int = GPU_THROUGHPUT_BATCH,
) -> float:
    """Inference images per second of ``row`` on a CUDA ``device`` at ``batch``.

    The model is :func:`~sepconv.reproduce.cost.latency_model` (trained when ``weights`` are
    given) in eval mode, eager, in ``recipe.channels_last`` memory format and under bf16
    autocast when the recipe trained under it (``amp = "bf16"``, or ``"auto"`` on a GPU with
    bf16), on a random input already on the device; timed with CUDA events by
    :func:`sepconv.bench.timing.measure` (median of the blocks).

    Example:
        >>> rate = gpu_throughput(config.row("mobilenet_v2"), data, "cuda")  # doctest: +SKIP
    """
    dev = torch.device(device)
    recipe = row.recipe
    bf16 = recipe.amp == "bf16" or (
        recipe.amp == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = latency_model(row, data, weights).to(dev).to(memory_format=fmt)
    x = torch.randn(batch, *data.input_shape, device=dev).contiguous(memory_format=fmt)

    def forward() -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x)

    timing = measure(forward, warmup=3, repeats=10, max_time_s=5.0, device=dev)
    return batch / timing.median_s


def time_to_accuracy(history: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """Training seconds from the first step to the end of the first epoch whose test accuracy
    is at least ``target``; ``None`` when no epoch reached it.

    The seconds are the epochs' ``epoch_time_s``: training steps only, so the test-set
    evaluation after each epoch and the one-time ``torch.compile`` warm-up are not counted.

    Example:
        >>> time_to_accuracy([{"epoch_time_s": 2.0, "test_acc": 0.9},
        ...                   {"epoch_time_s": 2.5, "test_acc": 0.951}], 0.95)
        4.5
    """
    elapsed = 0.0
    for record in history:
        elapsed += record["epoch_time_s"]
        if record.get("test_acc", -1.0) >= target:
            return elapsed
    return None


def format_count(value: float | None) -> str:
    """``12,345`` for a rate, ``-`` when not measured."""
    return "-" if value is None else f"{value:,.0f}"


def format_reached(seconds: Sequence[float | None]) -> str:
    """Fastest time to the target and how many runs reached it, e.g. ``41.2 (3/3)``.

    Example:
        >>> format_reached([50.0, None, 41.23])
        '41.2 (2/3)'
    """
    reached = [s for s in seconds if s is not None]
    best = f"{min(reached):.1f}" if reached else "-"
    return f"{best} ({len(reached)}/{len(seconds)})" if seconds else "-"


def speed_notes(gpu: str | None, target: float | None) -> list[str]:
    """The Markdown paragraphs that define the table's GPU throughput and time-to-accuracy
    columns (each after a blank line), for the columns present."""
    lines = []
    if gpu:
        lines += [
            "",
            f"GPU img/s: inference images per second at batch {GPU_THROUGHPUT_BATCH} on {gpu}, "
            "eval mode, eager, in the training precision and memory format (CUDA events, "
            "median).",
        ]
    if target is not None:
        lines += [
            "",
            f"s to {100 * target:g}%: training seconds from the first step to the end of the "
            "first epoch at or above that test accuracy (steps only: the evaluation after each "
            "epoch and the one-time `torch.compile` warm-up are excluded), fastest run / runs "
            "that reached it.",
        ]
    return lines
