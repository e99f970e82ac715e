"""Variants of a sweep: a smoke test of the whole pipeline, and the same sweep with another
number of epochs.

:func:`smoke_config` shrinks a sweep so that it runs end to end in seconds to minutes on any
device (training, evaluation, cost counting, latency, the table, the plots) without changing
what each row is: same models, twins, recipes apart from the schedule, and augmentation. It
checks that a long sweep will not fail on its way, not what it will measure.
:func:`with_epochs` changes the schedule of every row, to fit a sweep into a time budget once
its step times are measured (``sepconv reproduce --dry-run``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sepconv.reproduce.config import LatencyConfig, ReproduceConfig, RowConfig
from sepconv.utils.validation import positive_int

SMOKE_BATCH = 32  # largest batch of a smoke step
SMOKE_STEPS = 2  # optimizer steps of every smoke run
SMOKE_TEST_IMAGES = 256


def _smoke_row(row: RowConfig) -> RowConfig:
    batch = min(row.recipe.batch_size, SMOKE_BATCH)
    changes: dict[str, Any] = {"epochs": 1, "batch_size": batch, "checkpoint_every": 0}
    overrides = {**row.overrides, **changes}
    return replace(
        row,
        seeds=1,
        train_images=batch * SMOKE_STEPS,
        recipe=replace(row.recipe, **changes),
        overrides=overrides,
    )


def smoke_config(config: ReproduceConfig) -> ReproduceConfig:
    """``config`` reduced to a smoke test, named ``<name>_smoke``.

    Every row keeps its model, twin and recipe but trains one seed for one epoch of
    :data:`SMOKE_STEPS` steps on the first ``SMOKE_STEPS x batch`` training images, at its batch
    size or :data:`SMOKE_BATCH` if smaller; the test set is cut to its first
    :data:`SMOKE_TEST_IMAGES` images and latency is timed once per row at batch 1. Twin pairs
    stay pairs (both sides change alike).

    Args:
        config: The sweep.

    Returns:
        The reduced sweep; its results go to ``results/<name>_smoke`` by default.

    Example:
        >>> smoke = smoke_config(load_config("configs/reproduce_gpu.toml"))  # doctest: +SKIP
        >>> smoke.name, {row.recipe.epochs for row in smoke.rows}  # doctest: +SKIP
        ('reproduce_gpu_smoke', {1})
    """
    test_images = min(config.test_images or SMOKE_TEST_IMAGES, SMOKE_TEST_IMAGES)
    return replace(
        config,
        name=f"{config.name}_smoke",
        rows=tuple(_smoke_row(row) for row in config.rows),
        test_images=test_images,
        latency=LatencyConfig(
            batch_sizes=(1,),
            threads=config.latency.threads,
            warmup=1,
            repeats=1,
            max_time_s=0.05,
        ),
    )


def with_epochs(config: ReproduceConfig, epochs: int) -> ReproduceConfig:
    """``config`` with every row, and the shared recipe, trained for ``epochs`` epochs.

    Warm-up stays as many epochs as configured; the cosine decay spans the new length.

    Args:
        config: The sweep.
        epochs: Epochs of every run, >= 1.

    Example:
        >>> [r.recipe.epochs for r in with_epochs(config, 12).rows]  # doctest: +SKIP
        [12, 12, 12]
    """
    positive_int("epochs", epochs)
    rows = tuple(
        replace(
            row,
            recipe=replace(row.recipe, epochs=epochs),
            overrides=(
                {**row.overrides, "epochs": epochs} if "epochs" in row.overrides else row.overrides
            ),
        )
        for row in config.rows
    )
    return replace(config, recipe=replace(config.recipe, epochs=epochs), rows=rows)
