"""The run-folder protocol of a sweep: one folder per (row, seed), resumable and checked.

Each run lives in ``RUNS_DIR/<row>/seed<k>/``, with the trainer's files (``last.safetensors``
checkpoint, ``model.safetensors``, ``log.jsonl``), a ``run.json`` that records what the run is
(model, twin, recipe, data, seed) and, once it has finished, an atomically written
``result.json``. Training a run again skips it when finished and resumes it bit-exactly from its
checkpoint when interrupted (the trainer's resume); a run folder whose recorded settings differ
from the config is refused rather than silently reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sepconv.bench.timing import environment
from sepconv.reproduce.checks import MAX_SEEDS
from sepconv.reproduce.config import ReproduceConfig, RowConfig
from sepconv.reproduce.data import SweepData, training_augment
from sepconv.train import Trainer, TrainingDiverged
from sepconv.train.distributed import DistributedContext
from sepconv.train.trainer import CHECKPOINT_NAME
from sepconv.utils.files import write_json
from sepconv.utils.validation import bounded_int

RESULT_NAME = "result.json"
FAILED_NAME = "failed.json"  # a run whose training diverged: its error, for the table
SPEC_NAME = "run.json"


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: a row, a seed and the folder it lives in."""

    row: RowConfig
    seed: int
    directory: Path

    @property
    def key(self) -> str:
        """``<row>/seed<k>``, the run's name in progress output and results."""
        return f"{self.row.name}/seed{self.seed}"

    @property
    def status(self) -> str:
        """``"done"`` (result written), ``"partial"`` (a checkpoint to resume) or ``"todo"``."""
        if (self.directory / RESULT_NAME).is_file():
            return "done"
        if (self.directory / CHECKPOINT_NAME).is_file():
            return "partial"
        return "todo"


def plan_runs(
    config: ReproduceConfig,
    runs_dir: str | Path,
    *,
    only: Sequence[str] = (),
    seeds: int | None = None,
) -> list[RunSpec]:
    """List the runs of a sweep in order: rows as in the config, seeds ``0 .. n - 1``.

    Args:
        config: The sweep.
        runs_dir: Folder holding one sub-folder per row.
        only: Row names to keep (default: every row); an unknown name raises ``ValueError``.
        seeds: Number of seeds for every row, replacing each row's ``seeds``.

    Example:
        >>> runs = plan_runs(config, "runs/reproduce/compact", only=["vgg16"])  # doctest: +SKIP
        >>> [run.key for run in runs]  # doctest: +SKIP
        ['vgg16/seed0']
    """
    for name in only:
        config.row(name)
    if seeds is not None:
        bounded_int("seeds", seeds, 1, MAX_SEEDS)
    base = Path(runs_dir)
    return [
        RunSpec(row, seed, base / row.name / f"seed{seed}")
        for row in config.rows
        if not only or row.name in only
        for seed in range(seeds if seeds is not None else row.seeds)
    ]


def run_identity(run: RunSpec, config: ReproduceConfig) -> dict[str, Any]:
    """What decides a run's outcome, as JSON: compared before a run folder is reused."""
    identity = {
        **run.row.identity(),
        "seed": run.seed,
        "data": config.data,
        "augment": config.augment,
        "test_images": config.test_images,
    }
    erasing = config.erasing(run.row)
    # Absent means none: runs recorded before these options existed keep their identity.
    if erasing:
        identity["random_erasing"] = erasing
    if config.image_size is not None:
        identity["image_size"] = config.image_size
    normalised: dict[str, Any] = json.loads(json.dumps(identity))
    return normalised


def check_identity(path: Path, stored: Any, expected: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every setting in which the run recorded at ``path``
    (``stored``) differs from the one the config asks for (``expected``)."""
    if stored == expected:
        return
    stored = stored if isinstance(stored, dict) else {}
    differs = {
        key: (stored.get(key), expected.get(key))
        for key in sorted(set(stored) | set(expected))
        if stored.get(key) != expected.get(key)
    }
    raise ValueError(
        f"{path} records a run with other settings than the config asks for "
        f"((recorded, config) values: {differs}). Delete {path.parent} to run it again with "
        "the new settings, or pass another --runs-dir."
    )


def read_result(run: RunSpec, config: ReproduceConfig) -> dict[str, Any]:
    """The ``result.json`` of a finished run, checked against the config."""
    path = run.directory / RESULT_NAME
    try:
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); delete it to train the run again."
        ) from err
    check_identity(path, result.get("identity"), run_identity(run, config))
    return result


def _claim_folder(run: RunSpec, identity: dict[str, Any]) -> None:
    """Create the run folder with its ``run.json``, or check the one already there."""
    run.directory.mkdir(parents=True, exist_ok=True)
    spec_path = run.directory / SPEC_NAME
    if spec_path.is_file():
        stored = json.loads(spec_path.read_text("utf-8")).get("identity")
        check_identity(spec_path, stored, identity)
    else:
        write_json(spec_path, {"identity": identity})


def _trainer(run: RunSpec, data: SweepData, device: str | torch.device) -> Trainer:
    """The trainer of ``run``, writing into its folder, with the model's identity recorded."""
    config = data.config
    train_set = data.train_set(run.row)
    _, side, _ = data.input_shape
    return Trainer(
        data.build(run.row, run.seed),
        replace(run.row.recipe, seed=run.seed),
        train_set,
        data.test,
        out_dir=run.directory,
        augment=training_augment(config, side, run.row),
        context=DistributedContext(rank=0, world_size=1, device=torch.device(device)),
        metadata={
            "twin": run.row.twin,
            "row": run.row.name,
            "data": config.data,
            "image_size": side,
        },
    )


def train_run(
    run: RunSpec,
    data: SweepData,
    *,
    device: str | torch.device = "cpu",
    max_steps: int | None = None,
) -> dict[str, Any] | None:
    """Train one run to the end (or to ``max_steps``), resuming from its checkpoint if any.

    Args:
        run: The run.
        data: The sweep's images.
        device: Where to train.
        max_steps: Stop after this many optimizer steps in total, checkpointed: the next call
            continues from there.

    Returns:
        The run's result (also written to ``result.json``), or ``None`` when ``max_steps``
        stopped it before the end, or ``{"row", "seed", "failed": message}`` (also written to
        ``failed.json``) when its training diverged.

    Example:
        >>> run = plan_runs(config, "runs")[0]  # doctest: +SKIP
        >>> result = train_run(run, SweepData.load(config))  # doctest: +SKIP
    """
    config = data.config
    identity = run_identity(run, config)
    if run.status == "done":
        return read_result(run, config)
    _claim_folder(run, identity)
    checkpoint = run.directory / CHECKPOINT_NAME
    resumed = checkpoint.is_file()
    trainer = _trainer(run, data, device)
    start = time.perf_counter()
    try:
        history = trainer.fit(checkpoint if resumed else None, max_steps=max_steps)
    except TrainingDiverged as err:
        # One diverged run fails its row, not the sweep: the table says so (see sweep.py).
        failure = {"row": run.row.name, "seed": run.seed, "failed": str(err)}
        write_json(run.directory / FAILED_NAME, failure)
        return failure
    (run.directory / FAILED_NAME).unlink(missing_ok=True)
    if trainer.epoch < trainer.config.epochs:
        return None
    last = history[-1]
    result = {
        "row": run.row.name,
        "seed": run.seed,
        "identity": identity,
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "evaluated": last["evaluated"],
        "epochs": last["epoch"],
        "steps": last["step"],
        "train_images": len(data.train_set(run.row)),
        "test_images": len(data.test),
        "train_time_s": sum(record["epoch_time_s"] for record in history),
        "resumed": resumed,
        "last_session_wall_s": time.perf_counter() - start,
        # One-time torch.compile warm-up of this session, inside last_session_wall_s.
        "compile_s": trainer.compile_time_s,
        "device": str(trainer.ctx.device),
        "environment": environment(),
        "history": history,
    }
    write_json(run.directory / RESULT_NAME, result)
    return result
