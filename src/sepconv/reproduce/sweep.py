"""Run every (row, seed) of a sweep through the :class:`~sepconv.train.Trainer`, resumably.

Each run lives in its own folder, ``RUNS_DIR/<row>/seed<k>/``, with the trainer's files
(``last.safetensors`` checkpoint, ``model.safetensors``, ``log.jsonl``), a ``run.json`` that
records what the run is (model, twin, recipe, data, seed) and, once it has finished, an
atomically written ``result.json``. Running the sweep again skips finished runs and resumes
interrupted ones bit-exactly from their checkpoint (the trainer's resume); a run folder whose
recorded settings differ from the config is refused rather than silently reused.

With ``jobs > 1`` that many runs train at once, each in its own worker process (spawned, so no
thread pool is inherited) with its share of the threads; a worker's console output goes to
``console.log`` in its run folder instead of the terminal.

After training, the cost of every row is measured in one process, so the ratios are fair:
params and MACs from :func:`sepconv.analyze` at the trained input size, CPU latency from
:func:`sepconv.bench.timing.measure` at the configured batch sizes and threads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sepconv.analysis import analyze
from sepconv.bench.timing import Timing, environment, measure, pinned_threads
from sepconv.convert.twin import standard_twin
from sepconv.data import (
    BatchAugment,
    ImageDataset,
    channel_stats,
    default_augment,
    load_dataset,
)
from sepconv.models import create_model
from sepconv.models.init import init_conv
from sepconv.reproduce.config import LatencyConfig, ReproduceConfig, RowConfig
from sepconv.train import Trainer, evaluate, load_tensors, update_bn_statistics
from sepconv.train.distributed import DistributedContext
from sepconv.train.evaluate import to_model_input
from sepconv.train.trainer import CHECKPOINT_NAME, LOG_NAME, WEIGHTS_NAME
from sepconv.utils.files import write_json
from sepconv.utils.validation import positive_int

RESULT_NAME = "result.json"
SPEC_NAME = "run.json"
LATENCY_NAME = "latency.json"
CONSOLE_NAME = "console.log"  # a worker's progress output, with jobs > 1
SMALL_INPUT_MAX = 64  # images up to this side get small_input=True, as in `sepconv train`
LATENCY_BN_IMAGES = 512  # training images an untrained latency model's BatchNorm statistics use


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
        positive_int("seeds", seeds)
    base = Path(runs_dir)
    return [
        RunSpec(row, seed, base / row.name / f"seed{seed}")
        for row in config.rows
        if not only or row.name in only
        for seed in range(seeds if seeds is not None else row.seeds)
    ]


def _first(dataset: ImageDataset, count: int, key: str, config: ReproduceConfig) -> ImageDataset:
    if count > len(dataset):
        raise ValueError(
            f"{config.path}: invalid value for key `{key}`: expected at most {len(dataset)} "
            f"(the images {config.data!r} holds), received {count}."
        )
    return ImageDataset(dataset.images[:count], dataset.labels[:count], dataset.classes)


@dataclass(frozen=True)
class SweepData:
    """The training and test images of a sweep, loaded once for every run.

    Args:
        train: The whole training split.
        test: The test split (its first ``test_images`` when the config says so).
        config: The sweep, for the row subsets and error messages.
    """

    train: ImageDataset
    test: ImageDataset
    config: ReproduceConfig

    @classmethod
    def load(cls, config: ReproduceConfig) -> SweepData:
        """Load the splits of ``config.data``."""
        train = load_dataset(config.data, "train")
        test = load_dataset(config.data, "test")
        if config.test_images is not None:
            test = _first(test, config.test_images, "test_images", config)
        return cls(train, test, config)

    def train_set(self, row: RowConfig) -> ImageDataset:
        """The images ``row`` trains on: all, or the first ``train_images`` in file order."""
        if row.train_images is None:
            return self.train
        index = self.config.rows.index(row) + 1
        return _first(self.train, row.train_images, f"row[{index}].train_images", self.config)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def build(self, row: RowConfig, seed: int) -> nn.Module:
        """:func:`build_row_model` for this data's classes, channels and image size."""
        c, h, _ = self.input_shape
        return build_row_model(
            row, seed, num_classes=self.train.num_classes, in_chans=c, image_size=h
        )


def build_row_model(
    row: RowConfig, seed: int, *, num_classes: int, in_chans: int, image_size: int
) -> nn.Module:
    """Build the model of ``row``, initialised from ``seed`` alone.

    The registered model is built after ``torch.manual_seed(seed)`` with ``small_input`` for
    images of at most 64 px (as ``sepconv train`` does). For ``twin = "standard"`` the
    depthwise + pointwise pairs are then replaced by standard convs
    (:func:`sepconv.bench.standard_twin`, found from a pass in eval mode so that BatchNorm
    statistics stay untouched), and the new convs are re-drawn from the seed with the rule the
    builders apply to every conv (Kaiming-normal, fan-out; ``init_conv``) instead of
    PyTorch's default, so both twins start from the same initialisation scheme and share every
    other initial weight.

    Args:
        row: The row.
        seed: Seed of the initial weights.
        num_classes: Classifier outputs.
        in_chans: Input channels.
        image_size: Input side (square), for the twin's example pass and ``small_input``.

    Example:
        >>> build_row_model(row, 0, num_classes=10, in_chans=1, image_size=28)  # doctest: +SKIP
    """
    torch.manual_seed(seed)
    model = create_model(
        row.model,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=image_size <= SMALL_INPUT_MAX,
        **row.model_kwargs,
    )
    if row.twin is None:
        return model
    model.eval()
    twin, pairs = standard_twin(model, torch.zeros(1, in_chans, image_size, image_size))
    if pairs == 0:
        raise ValueError(
            f"Invalid value for row `{row.name}` key `twin`: expected a model with depthwise + "
            f"pointwise conv pairs to replace, received {row.model!r}, which has none; remove "
            "`twin` from the row."
        )
    original = dict(model.named_modules())
    torch.manual_seed(seed)
    for name, module in twin.named_modules():
        before = original.get(name)
        # A depthwise conv turned standard:
        if (
            isinstance(module, nn.Conv2d)
            and isinstance(before, nn.Conv2d)
            and before.groups != module.groups
        ):
            init_conv(module)
    return twin.train()


def training_augment(config: ReproduceConfig, side: int) -> BatchAugment | None:
    """The augmentation every run of ``config`` trains with, for images ``side`` px high."""
    if not config.augment:
        return None
    return default_augment(config.data, side, random_erasing=config.random_erasing)


def run_identity(run: RunSpec, config: ReproduceConfig) -> dict[str, Any]:
    """What decides a run's outcome, as JSON: compared before a run folder is reused."""
    identity = {
        **run.row.identity(),
        "seed": run.seed,
        "data": config.data,
        "augment": config.augment,
        "test_images": config.test_images,
    }
    if config.random_erasing:
        # Absent means none: runs recorded before the option existed keep their identity.
        identity["random_erasing"] = config.random_erasing
    normalised: dict[str, Any] = json.loads(json.dumps(identity))
    return normalised


def _check_identity(path: Path, stored: Any, expected: dict[str, Any]) -> None:
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
    _check_identity(path, result.get("identity"), run_identity(run, config))
    return result


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
        stopped it before the end.
    """
    config = data.config
    identity = run_identity(run, config)
    if run.status == "done":
        return read_result(run, config)
    run.directory.mkdir(parents=True, exist_ok=True)
    spec_path = run.directory / SPEC_NAME
    if spec_path.is_file():
        _check_identity(
            spec_path, json.loads(spec_path.read_text("utf-8")).get("identity"), identity
        )
    else:
        write_json(spec_path, {"identity": identity})
    checkpoint = run.directory / CHECKPOINT_NAME
    resumed = checkpoint.is_file()
    train_set = data.train_set(run.row)
    c, side, _ = data.input_shape
    trainer = Trainer(
        data.build(run.row, run.seed),
        replace(run.row.recipe, seed=run.seed),
        train_set,
        data.test,
        out_dir=run.directory,
        augment=training_augment(config, side),
        context=DistributedContext(rank=0, world_size=1, device=torch.device(device)),
        metadata={
            "model": run.row.model,
            "model_kwargs": {
                "num_classes": train_set.num_classes,
                "in_chans": c,
                "small_input": side <= SMALL_INPUT_MAX,
                **run.row.model_kwargs,
            },
            "twin": run.row.twin,
            "row": run.row.name,
            "data": config.data,
        },
    )
    start = time.perf_counter()
    history = trainer.fit(checkpoint if resumed else None, max_steps=max_steps)
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
        "train_images": len(train_set),
        "test_images": len(data.test),
        "train_time_s": sum(record["epoch_time_s"] for record in history),
        "resumed": resumed,
        "last_session_wall_s": time.perf_counter() - start,
        "device": str(trainer.ctx.device),
        "environment": environment(),
        "history": history,
    }
    write_json(run.directory / RESULT_NAME, result)
    return result


# A worker process's copy of the sweep's images, loaded once by _start_worker.
_worker_data: SweepData | None = None


def _start_worker(config: ReproduceConfig, threads: int) -> None:
    """Initialise a sweep worker process: pin its intra-op threads and load the images."""
    global _worker_data
    torch.set_num_threads(threads)
    _worker_data = SweepData.load(config)


def _train_in_worker(
    task: tuple[RunSpec, int | None],
) -> tuple[RunSpec, dict[str, Any] | None]:
    """:func:`train_run` in a worker process, its progress output appended to the run's
    ``console.log``; returns the run with its result."""
    run, max_steps = task
    if _worker_data is None:
        raise RuntimeError("_train_in_worker runs only in a process started by _start_worker")
    run.directory.mkdir(parents=True, exist_ok=True)
    log_path = run.directory / CONSOLE_NAME
    with log_path.open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        return run, train_run(run, _worker_data, max_steps=max_steps)


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
    """Params, MACs and conv kind of ``row`` from :func:`sepconv.analyze` at one image."""
    report = analyze(data.build(row, 0), (1, *data.input_shape))
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


def _steps_per_run(row: RowConfig, train_images: int) -> int:
    return row.recipe.epochs * (train_images // row.recipe.batch_size)


def _images_to_train(row: RowConfig, data: SweepData) -> int:
    return _steps_per_run(row, len(data.train_set(row))) * row.recipe.batch_size


def split_threads(
    config: ReproduceConfig,
    threads: int | None = None,
    jobs: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[int, int]:
    """``(jobs, threads of each run)`` for a sweep: ``threads`` (default: the config's) shared
    by ``jobs`` runs at a time (default: the config's ``jobs``), at least one thread each.

    Raises:
        ValueError: ``jobs`` is not a positive integer, or above 1 off the CPU.
    """
    jobs = config.jobs if jobs is None else positive_int("jobs", jobs)
    if jobs > 1 and torch.device(device).type != "cpu":
        raise ValueError(
            f"Invalid value for argument `jobs`: expected 1 when training on {device} (parallel "
            f"runs share the CPU cores), received {jobs}; pass jobs=1 (--jobs 1)."
        )
    return jobs, max(1, (threads or config.threads) // jobs)


def longest_first(runs: Sequence[RunSpec], data: SweepData) -> list[RunSpec]:
    """``runs`` by images to train, most first (ties keep their order): the order parallel
    jobs start them in, so that the longest run does not end alone on one core. Images, not
    MACs: on a CPU, small CNNs' training time follows their images far more closely (the
    committed compact table trained 385-850 images/s for 9.5M-76.5M MACs an image)."""
    return sorted(runs, key=lambda run: -_images_to_train(run.row, data))


@dataclass(frozen=True)
class PlanEntry:
    """One row of a dry-run plan: its cost, its runs and what is left to do.

    Attributes:
        row: The row.
        cost: Params, MACs.
        statuses: Status of each planned run (``done`` / ``partial`` / ``todo``).
        steps_per_run: Optimizer steps of one run.
        step_s: Measured seconds per training step (``None`` when not measured).
        eval_s: Measured seconds of one evaluation of the test set (``None`` likewise).
    """

    row: RowConfig
    cost: RowCost
    statuses: tuple[str, ...]
    steps_per_run: int
    step_s: float | None
    eval_s: float | None

    @property
    def run_s(self) -> float | None:
        """Estimated seconds of one run: steps x step time + one evaluation per epoch."""
        if self.step_s is None or self.eval_s is None:
            return None
        return self.steps_per_run * self.step_s + self.row.recipe.epochs * self.eval_s

    @property
    def pending_s(self) -> float | None:
        """Estimated seconds of the runs not yet done (a partial run counted whole)."""
        run_s = self.run_s
        pending = sum(status != "done" for status in self.statuses)
        return None if run_s is None else pending * run_s


def time_row(
    row: RowConfig, data: SweepData, *, steps: int, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Measure ``(seconds per training step, seconds per test-set evaluation)`` of ``row``.

    Runs the real :class:`~sepconv.train.Trainer` (writing nothing) for one warm-up step, then
    times ``steps`` more; evaluation is timed on one warm batch of ``batch_size`` test images
    and scaled to the whole test set.
    """
    positive_int("steps", steps)
    side = data.input_shape[1]
    dev = torch.device(device)
    trainer = Trainer(
        data.build(row, 0),
        row.recipe,
        data.train_set(row),
        None,
        augment=training_augment(data.config, side),
        context=DistributedContext(rank=0, world_size=1, device=dev),
    )
    trainer.fit(max_steps=1)
    start = time.perf_counter()
    trainer.fit(max_steps=1 + steps)
    step_s = (time.perf_counter() - start) / steps
    # One batch of the training batch size, evaluated twice: the first call warms up.
    count = min(len(data.test), row.recipe.batch_size)
    subset = ImageDataset(data.test.images[:count], data.test.labels[:count], data.test.classes)
    timed = []
    for _ in range(2):
        start = time.perf_counter()
        evaluate(
            trainer.eval_model,
            subset,
            mean=trainer.mean,
            std=trainer.std,
            batch_size=count,
            device=dev,
            channels_last=row.recipe.channels_last,
        )
        timed.append(time.perf_counter() - start)
    eval_s = timed[-1] * len(data.test) / count
    return step_s, eval_s


def dry_run(
    config: ReproduceConfig,
    runs_dir: str | Path,
    *,
    only: Sequence[str] = (),
    seeds: int | None = None,
    threads: int | None = None,
    time_steps: int = 3,
    device: str | torch.device = "cpu",
) -> list[PlanEntry]:
    """The plan of a sweep with each row's cost, without training anything.

    Args:
        config, runs_dir, only, seeds: As for :func:`plan_runs`.
        threads: Intra-op threads while timing (default: the config's).
        time_steps: Training steps timed per row (after one warm-up step); 0 skips timing.
        device: Where to time.
    """
    runs = plan_runs(config, runs_dir, only=only, seeds=seeds)
    data = SweepData.load(config)
    entries = []
    with pinned_threads(threads or config.threads):
        for row in dict.fromkeys(run.row.name for run in runs):
            row_config = config.row(row)
            timed = (
                time_row(row_config, data, steps=time_steps, device=device)
                if time_steps
                else (None, None)
            )
            entries.append(
                PlanEntry(
                    row=row_config,
                    cost=row_cost(row_config, data),
                    statuses=tuple(run.status for run in runs if run.row.name == row),
                    steps_per_run=_steps_per_run(row_config, len(data.train_set(row_config))),
                    step_s=timed[0],
                    eval_s=timed[1],
                )
            )
    return entries


class _Eta:
    """Time left in a sweep: each run's work (MACs x images seen, training counted 3x for the
    backward pass) times the seconds per unit of work observed on finished runs, per row
    when that row has finished a run in this session, else over all of them."""

    def __init__(self, runs: Sequence[RunSpec], costs: dict[str, RowCost], data: SweepData):
        self.work = {}
        for run in runs:
            row = run.row
            evaluated = row.recipe.epochs * len(data.test)
            images = _images_to_train(row, data)
            self.work[run.key] = costs[row.name].macs * (3 * images + evaluated)
        self.rates: dict[str, float] = {}
        self.seconds = 0.0
        self.units = 0.0

    def record(self, run: RunSpec, seconds: float) -> None:
        """A run trained from scratch to the end in ``seconds``."""
        self.rates[run.row.name] = seconds / self.work[run.key]
        self.seconds += seconds
        self.units += self.work[run.key]

    def remaining(self, runs: Sequence[RunSpec]) -> float | None:
        """Estimated seconds for ``runs``; ``None`` before any run has finished."""
        if not self.units:
            return None
        overall = self.seconds / self.units
        return sum(self.work[r.key] * self.rates.get(r.row.name, overall) for r in runs)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "after the first run"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        statuses: Per run key: ``skipped`` (already done), ``trained``, ``resumed`` or
            ``stopped`` (by ``max_steps``; rerun to continue).
        results: Per row name, the results of its finished runs (seed order).
        files: Result files written (empty while runs are unfinished).
    """

    statuses: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every planned run has finished."""
        return "stopped" not in self.statuses.values()


def _trained_weights(runs: Sequence[RunSpec]) -> Path | None:
    """The ``model.safetensors`` of the first of ``runs`` that kept one."""
    return next(
        (run.directory / WEIGHTS_NAME for run in runs if (run.directory / WEIGHTS_NAME).is_file()),
        None,
    )


def _latencies(
    config: ReproduceConfig,
    data: SweepData,
    finished: dict[str, list[RunSpec]],
    runs_dir: Path,
    threads: int,
) -> tuple[dict[str, dict[int, Timing]], dict[str, bool]]:
    """Latency of every row with a finished run, and whether it was timed on trained weights
    (:func:`latency_model`): measured now in this one process unless ``runs_dir/latency.json``
    already holds all of them under the same settings."""
    path = runs_dir / LATENCY_NAME
    settings = {
        "latency": json.loads(json.dumps(asdict(config.latency))),
        "threads": threads,
        "environment": environment(threads),
    }
    weights = {name: _trained_weights(runs) for name, runs in finished.items()}
    trained = {name: path is not None for name, path in weights.items()}
    wanted = {
        name: {"identity": config.row(name).identity(), "trained": trained[name]}
        for name in finished
    }
    wanted = json.loads(json.dumps(wanted))
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("settings") == settings and all(
            {k: cached["rows"].get(name, {}).get(k) for k in want} == want
            for name, want in wanted.items()
        ):
            timings = {
                name: {
                    int(b): Timing(**{**t, "samples_s": tuple(t["samples_s"])})
                    for b, t in cached["rows"][name]["timings"].items()
                }
                for name in wanted
            }
            return timings, trained
    measured = {}
    for name in tqdm(finished, desc="latency", unit="row"):
        measured[name] = measure_row_latency(
            config.row(name), data, config.latency, threads=threads, weights=weights[name]
        )
    rows = {
        name: {
            **wanted[name],
            "timings": {
                str(b): {k: v for k, v in t.to_dict().items() if k not in ("median_ms", "iqr_ms")}
                for b, t in timings.items()
            },
        }
        for name, timings in measured.items()
    }
    write_json(path, {"settings": settings, "rows": rows})
    return measured, trained


def run_sweep(
    config: ReproduceConfig,
    *,
    runs_dir: str | Path,
    out_dir: str | Path,
    only: Sequence[str] = (),
    seeds: int | None = None,
    threads: int | None = None,
    jobs: int | None = None,
    device: str | torch.device = "cpu",
    max_steps: int | None = None,
    command: str = "",
) -> SweepOutcome:
    """Train every planned run, then measure every row and write the results table.

    Finished runs are skipped, interrupted ones resumed. A progress bar covers the whole sweep
    (runs done / total, the current run, elapsed time, and an ETA from the runs finished so
    far); the trainer's own bar shows the current epoch. When every run has finished, the
    latency of every row with results is measured in this process and
    :func:`sepconv.reproduce.table.write_results` writes ``out_dir``.

    Args:
        config: The sweep.
        runs_dir: Where the run folders live.
        out_dir: Where the results go (``results.json``, ``results.md``, plots, ...).
        only, seeds: As for :func:`plan_runs`.
        threads: Intra-op threads for training (default: the config's), shared by the jobs;
            latency uses ``config.latency.threads`` or this.
        jobs: Runs trained at once, each in a worker process with ``threads // jobs``
            threads, started longest first by images to train (default: the config's
            ``jobs``); only on the CPU.
        device: Where to train (latency is always measured on the CPU).
        max_steps: Stop each run after this many optimizer steps (checkpointed).
        command: The command line, recorded with the results.

    Example:
        >>> outcome = run_sweep(load_config("configs/reproduce_compact.toml"),
        ...                     runs_dir="runs/reproduce/reproduce_compact",
        ...                     out_dir="results/reproduce_compact")  # doctest: +SKIP
    """
    from sepconv.reproduce.table import summarize, write_results

    runs_path, out_path = Path(runs_dir), Path(out_dir)
    runs = plan_runs(config, runs_path, only=only, seeds=seeds)
    if max_steps is not None:
        positive_int("max_steps", max_steps)
    train_threads = threads or config.threads
    jobs, run_threads = split_threads(config, threads, jobs, device)
    load_start = os.getloadavg()
    data = SweepData.load(config)
    costs = {row.name: row_cost(row, data) for row in config.rows}
    outcome = SweepOutcome()
    eta = _Eta(runs, costs, data)
    sweep_start = time.perf_counter()
    with pinned_threads(run_threads):
        bar = tqdm(
            total=len(runs),
            desc="sweep",
            unit="run",
            position=0,
            bar_format="{desc} {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed{postfix}",
        )
        pending, before = [], {}
        for run in runs:
            before[run.key] = run.status
            if before[run.key] == "done":
                read_result(run, config)
                outcome.statuses[run.key] = "skipped"
                bar.update(1)
            else:
                pending.append(run)

        def finish(run: RunSpec, result: dict[str, Any] | None) -> None:
            if result is None:
                outcome.statuses[run.key] = "stopped"
            else:
                status = before[run.key]
                outcome.statuses[run.key] = "resumed" if status == "partial" else "trained"
                if status == "todo":
                    eta.record(run, result["last_session_wall_s"])
            bar.update(1)

        if jobs == 1:
            for index, run in enumerate(pending):
                bar.set_postfix_str(f"now {run.key}, ETA {_clock(eta.remaining(pending[index:]))}")
                finish(run, train_run(run, data, device=device, max_steps=max_steps))
        elif pending:
            left = {run.key: run for run in pending}
            bar.set_postfix_str(f"{jobs} runs at a time, logs in <run>/{CONSOLE_NAME}")
            spawn = multiprocessing.get_context("spawn")  # no inherited OpenMP pool
            with spawn.Pool(jobs, _start_worker, (config, run_threads)) as pool:
                tasks = [(run, max_steps) for run in longest_first(pending, data)]
                for run, result in pool.imap_unordered(_train_in_worker, tasks):
                    finish(run, result)
                    del left[run.key]
                    remaining = eta.remaining(list(left.values()))
                    estimate = None if remaining is None else remaining / jobs
                    bar.set_postfix_str(f"{jobs} runs at a time, ETA {_clock(estimate)}")
                pool.close()
                pool.join()
        bar.set_postfix_str(f"done in {_clock(time.perf_counter() - sweep_start)}")
        bar.close()
    finished: dict[str, list[RunSpec]] = {}
    for row in config.rows:
        for seed in range(max(row.seeds, seeds or 0)):
            run = RunSpec(row, seed, runs_path / row.name / f"seed{seed}")
            if run.status == "done":
                finished.setdefault(row.name, []).append(run)
                outcome.results.setdefault(row.name, []).append(read_result(run, config))
    if not outcome.complete:
        return outcome
    latency_threads = config.latency.threads or train_threads
    latencies, trained = _latencies(config, data, finished, runs_path, latency_threads)
    table = summarize(
        config,
        outcome.results,
        costs,
        latencies,
        input_shape=data.input_shape,
        latency_trained=trained,
    )
    run_files = {
        run.key: {
            "result.json": run.directory / RESULT_NAME,
            "log.jsonl": run.directory / LOG_NAME,
        }
        for runs_of_row in finished.values()
        for run in runs_of_row
    }
    outcome.files = write_results(
        table,
        out_path,
        config=config,
        command=command,
        run_files=run_files,
        context={
            "environment": environment(run_threads),
            "train_threads": run_threads,
            "jobs": jobs,
            "latency_threads": latency_threads,
            "device": str(device),
            "loadavg_start": list(load_start),
            "loadavg_end": list(os.getloadavg()),
        },
    )
    return outcome
