"""The cost of every row of a sweep: counted params and MACs, measured CPU latency.

Params and MACs come from :func:`sepconv.analysis.analyze` at the trained input size (batch 1).
Latency comes from :func:`sepconv.bench.timing.measure` at the configured batch sizes and
threads, for every row in one process so the ratios are fair, and is kept in
``RUNS_DIR/latency.json``: a later sweep with the same timed models (:func:`latency_identity`),
settings and machine reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sepconv.analysis import analyze
from sepconv.bench.timing import Timing, environment, measure
from sepconv.data import channel_stats
from sepconv.data.normalize import to_model_input
from sepconv.reproduce.config import LatencyConfig, ReproduceConfig, RowConfig
from sepconv.reproduce.data import SweepData
from sepconv.reproduce.runs import RunSpec, run_identity
from sepconv.train import load_tensors, update_bn_statistics
from sepconv.train.trainer import WEIGHTS_NAME
from sepconv.utils.files import write_json

LATENCY_NAME = "latency.json"
LATENCY_BN_IMAGES = 512  # training images an untrained latency model's BatchNorm statistics use


@dataclass(frozen=True)
class RowCost:
    """Counted cost of one row at the trained input size (batch 1).

    Attributes:
        params: Parameters.
        macs: Headline multiply-adds (conv + linear) per image.
        separable: Whether the model has depthwise convs (``by_kind()["depthwise_conv"]``).
    """

    params: int
    macs: int
    separable: bool


def row_cost(row: RowConfig, data: SweepData) -> RowCost:
    """Params, MACs and conv kind of ``row`` from :func:`sepconv.analysis.analyze` at one image.

    Counting needs shapes only: the model is built on the meta device, with no weights to
    initialise (seconds for VGG-16) or hold.

    Example:
        >>> row_cost(config.row("vgg16"), SweepData.load(config)).params  # doctest: +SKIP
        134300362
    """
    with torch.device("meta"):
        model = data.build(row, 0)
    report = analyze(model, (1, *data.input_shape))
    return RowCost(
        params=report.total_params,
        macs=report.macs,
        separable="depthwise_conv" in report.by_kind(),
    )


def latency_model(row: RowConfig, data: SweepData, weights: Path | None = None) -> nn.Module:
    """The eval-mode model whose latency stands for ``row``.

    With ``weights`` (a run's ``model.safetensors``) it is the trained model. Without them (a
    committed results folder keeps each run's result and log, not its weights) it is the
    row's architecture with the initial weights of seed 0, its BatchNorm statistics measured
    on the first :data:`LATENCY_BN_IMAGES` training images: the initial statistics (mean 0,
    variance 1) do not normalise, and the activations of such a model shrink from layer to
    layer, unlike a trained model's. Both run the same shapes and operations.

    Example:
        >>> model = latency_model(config.row("vgg16"), SweepData.load(config))  # doctest: +SKIP
    """
    model = data.build(row, 0)
    if weights is not None:
        tensors, _ = load_tensors(weights)
        model.load_state_dict(tensors)
        return model.eval()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model.eval()
    train = data.train_set(row)
    mean, std = channel_stats(train.images)
    images = to_model_input(
        train.images[:LATENCY_BN_IMAGES], mean, std, device=torch.device("cpu"), channels_last=False
    )
    return update_bn_statistics(model, images.split(128))


def measure_row_latency(
    row: RowConfig,
    data: SweepData,
    latency: LatencyConfig,
    *,
    threads: int,
    weights: Path | None = None,
) -> dict[int, Timing]:
    """CPU latency of ``row`` in eval mode at each batch size of ``latency``.

    The model is :func:`latency_model` (trained when ``weights`` are given), run in the memory
    format it was trained in (``recipe.channels_last``) on a random input.

    Example:
        >>> timings = measure_row_latency(row, data, config.latency, threads=2)  # doctest: +SKIP
        >>> sorted(timings)  # doctest: +SKIP
        [1, 256]
    """
    model = latency_model(row, data, weights)
    fmt = torch.channels_last if row.recipe.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    timings = {}
    for batch in latency.batch_sizes:
        x = torch.randn(batch, *data.input_shape).contiguous(memory_format=fmt)
        timings[batch] = measure(
            partial(model, x),
            warmup=latency.warmup,
            repeats=latency.repeats,
            max_time_s=latency.max_time_s,
            threads=threads,
        )
    return timings


def timed_run(runs: Sequence[RunSpec]) -> RunSpec | None:
    """The first of ``runs`` that kept its ``model.safetensors``: the run whose trained weights
    stand for its row's latency."""
    return next((run for run in runs if (run.directory / WEIGHTS_NAME).is_file()), None)


def trained_weights(runs: Sequence[RunSpec]) -> Path | None:
    """The ``model.safetensors`` of the first of ``runs`` that kept one."""
    run = timed_run(runs)
    return None if run is None else run.directory / WEIGHTS_NAME


def latency_identity(
    config: ReproduceConfig, row: RowConfig, timed: RunSpec | None
) -> dict[str, Any]:
    """What decides the weights of the model timed for ``row``, as JSON: a cached latency is
    reused only while this is unchanged.

    Trained weights (those of the run ``timed``) are decided by everything that decides the
    run's outcome, :func:`~sepconv.reproduce.runs.run_identity`: the row, the seed, the data,
    the augmentation and the row's random erasing (and the test images, which a run folder is
    checked against too). The stand-in of :func:`latency_model`
    (``timed`` is ``None``) by the row and its training images alone: seed 0 and BatchNorm
    statistics on un-augmented images, so augmentation and erasing do not enter.

    Example:
        >>> latency_identity(config, config.row("vgg16"), None)["data"]  # doctest: +SKIP
        'fashion-mnist'
    """
    if timed is not None:
        return run_identity(timed, config)
    sized = {} if config.image_size is None else {"image_size": config.image_size}
    stand_in: dict[str, Any] = json.loads(
        json.dumps({**row.identity(), "data": config.data, **sized})
    )
    return stand_in


def _cached(path: Path, settings: dict[str, Any], wanted: dict[str, Any]) -> Any:
    """The timings of ``path`` when it holds every wanted row under ``settings``, else None."""
    if not path.is_file():
        return None
    cached = json.loads(path.read_text(encoding="utf-8"))
    if cached.get("settings") != settings or not all(
        {k: cached["rows"].get(name, {}).get(k) for k in want} == want
        for name, want in wanted.items()
    ):
        return None
    return {
        name: {
            int(b): Timing(**{**t, "samples_s": tuple(t["samples_s"])})
            for b, t in cached["rows"][name]["timings"].items()
        }
        for name in wanted
    }


def _timings_json(timings: Mapping[int, Timing]) -> dict[str, Any]:
    # The medians and IQRs in ms are derived from the samples: not stored twice.
    return {
        str(b): {k: v for k, v in t.to_dict().items() if k not in ("median_ms", "iqr_ms")}
        for b, t in timings.items()
    }


def row_latencies(
    config: ReproduceConfig,
    data: SweepData,
    finished: Mapping[str, Sequence[RunSpec]],
    runs_dir: Path,
    threads: int,
) -> tuple[dict[str, dict[int, Timing]], dict[str, bool]]:
    """Latency of every row with a finished run, and whether it was timed on trained weights.

    Measured now, in this one process, unless ``runs_dir/latency.json`` already holds every
    row of ``finished`` under the same settings and machine, timed on the same weights
    (trained or not, as :func:`latency_model` says, and decided by the same
    :func:`latency_identity`); what is measured is written there.

    Args:
        config: The sweep.
        data: Its images.
        finished: Per row name, its finished runs (the first with weights is timed).
        runs_dir: The sweep's run folders.
        threads: Intra-op threads while timing.

    Example:
        >>> timings, trained = row_latencies(config, data, done, Path("runs"), 2)  # doctest: +SKIP
    """
    path = runs_dir / LATENCY_NAME
    settings = {
        "latency": json.loads(json.dumps(asdict(config.latency))),
        "threads": threads,
        "environment": environment(threads),
    }
    timed = {name: timed_run(runs) for name, runs in finished.items()}
    weights = {
        name: None if run is None else run.directory / WEIGHTS_NAME for name, run in timed.items()
    }
    trained = {name: path is not None for name, path in weights.items()}
    wanted = {
        name: {
            "identity": latency_identity(config, config.row(name), timed[name]),
            "trained": trained[name],
        }
        for name in finished
    }
    wanted = json.loads(json.dumps(wanted))
    cached = _cached(path, settings, wanted)
    if cached is not None:
        return cached, trained
    measured = {}
    for name in tqdm(finished, desc="latency", unit="row"):
        measured[name] = measure_row_latency(
            config.row(name), data, config.latency, threads=threads, weights=weights[name]
        )
    rows = {
        name: {**wanted[name], "timings": _timings_json(timings)}
        for name, timings in measured.items()
    }
    write_json(path, {"settings": settings, "rows": rows})
    return measured, trained
