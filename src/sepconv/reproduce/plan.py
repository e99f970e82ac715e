"""Planning a sweep: how its threads are shared, which run starts first, how long it takes.

:func:`dry_run` measures every row (cost, seconds per training step and per evaluation) without
training anything; :class:`Eta` estimates the time left while a sweep runs, from the runs it
has finished.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sepconv.bench.timing import pinned_threads, usable_cpus
from sepconv.data import ImageDataset
from sepconv.reproduce.config import ReproduceConfig, RowConfig
from sepconv.reproduce.cost import RowCost, row_cost
from sepconv.reproduce.data import SweepData, training_augment
from sepconv.reproduce.runs import RunSpec, plan_runs
from sepconv.train import Trainer, evaluate
from sepconv.train.distributed import DistributedContext
from sepconv.utils.devices import check_device
from sepconv.utils.validation import invalid, positive_int, thread_count


def steps_per_run(row: RowConfig, train_images: int) -> int:
    """Optimizer steps of one run of ``row`` on ``train_images`` images (last batch dropped)."""
    return row.recipe.epochs * (train_images // row.recipe.batch_size)


def images_to_train(row: RowConfig, data: SweepData) -> int:
    """Training images one run of ``row`` goes through, over all its epochs."""
    return steps_per_run(row, len(data.train_set(row))) * row.recipe.batch_size


def _capped(count: int) -> int:
    """A thread count from a config, at most the CPUs this process may use."""
    return min(count, usable_cpus())


def latency_threads(config: ReproduceConfig, threads: int | None = None) -> int:
    """The threads a sweep measures latency at: the config's ``latency.threads``, else
    ``threads`` (the sweep's), else the config's ``threads``; a count from the config never
    more than the CPUs this process may use, a count given here used as given.

    Example:
        >>> latency_threads(config, threads=3)  # doctest: +SKIP
        3
    """
    if config.latency.threads:
        return _capped(config.latency.threads)
    return threads if threads is not None else _capped(config.threads)


def split_threads(
    config: ReproduceConfig,
    threads: int | None = None,
    jobs: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[int, int]:
    """``(jobs, threads of each run)`` for a sweep: ``threads`` shared by ``jobs`` runs at a
    time (default: the config's ``jobs``), at least one thread each.

    ``threads`` defaults to the config's, but never more than the CPUs this process may use:
    a config written for a 16-core GPU host, run on a 2-core machine, would otherwise start
    eight threads per run on two cores, and each would wait on the others. A count given here
    is used as given.

    Several jobs on one GPU share it: each run is its own process with its own CUDA context,
    which fills the GPU better than one small model does alone.

    Raises:
        ValueError: ``jobs`` is not a positive integer, or above 1 on a device other than the
            CPU or a CUDA GPU.

    Example:
        >>> split_threads(config, threads=2, jobs=2)  # doctest: +SKIP
        (2, 1)
    """
    jobs = config.jobs if jobs is None else thread_count("jobs", jobs)
    if threads is not None:
        thread_count("threads", threads)
    if jobs > 1 and torch.device(device).type not in ("cpu", "cuda"):
        raise invalid(
            "jobs",
            f"1 when training on {device} (parallel runs need the CPU or a CUDA GPU)",
            jobs,
            note="; pass jobs=1 (--jobs 1)",
        )
    threads = _capped(config.threads) if threads is None else threads
    return jobs, max(1, threads // jobs)


def longest_first(runs: Sequence[RunSpec], data: SweepData) -> list[RunSpec]:
    """``runs`` by images to train, most first (ties keep their order): the order parallel
    jobs start them in, so that the longest run does not end alone on one core. Images, not
    MACs: on a CPU, small CNNs' training time follows the images they see far more closely
    than their MACs (see the images/s of the runs against the MACs column in
    ``results/reproduce_compact``)."""
    return sorted(runs, key=lambda run: -images_to_train(run.row, data))


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
        first_s: Measured seconds of the first step, one-time set-up included (the
            ``torch.compile`` warm-up with ``recipe.compile``); ``None`` likewise.
    """

    row: RowConfig
    cost: RowCost
    statuses: tuple[str, ...]
    steps_per_run: int
    step_s: float | None
    eval_s: float | None
    first_s: float | None = None

    @property
    def run_s(self) -> float | None:
        """Estimated seconds of one run: the first step, the other steps x step time, and one
        evaluation per epoch."""
        if self.step_s is None or self.eval_s is None:
            return None
        first = self.step_s if self.first_s is None else self.first_s
        steps = (self.steps_per_run - 1) * self.step_s
        return first + steps + self.row.recipe.epochs * self.eval_s

    @property
    def pending_s(self) -> float | None:
        """Estimated seconds of the runs not yet done (a partial run counted whole)."""
        run_s = self.run_s
        pending = sum(status != "done" for status in self.statuses)
        return None if run_s is None else pending * run_s


def _synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``, so that the host clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_row(
    row: RowConfig, data: SweepData, *, steps: int, device: str | torch.device = "cpu"
) -> tuple[float, float, float]:
    """Measure ``(seconds per training step, seconds per test-set evaluation, seconds of the
    first step)`` of ``row``.

    Runs the real :class:`~sepconv.train.Trainer` (writing nothing) for one warm-up step (timed
    on its own: it includes set-up such as ``torch.compile``), then times ``steps`` more;
    evaluation is timed on one warm batch of ``batch_size`` test images and scaled to the
    whole test set. On a GPU the clock stops after the queued work has finished.

    Example:
        >>> step_s, eval_s, first_s = time_row(config.row("vgg16"), data, steps=3)  # doctest: +SKIP
    """
    positive_int("steps", steps)
    side = data.input_shape[1]
    dev = torch.device(device)
    trainer = Trainer(
        data.build(row, 0),
        row.recipe,
        data.train_set(row),
        None,
        augment=training_augment(data.config, side, row),
        context=DistributedContext(rank=0, world_size=1, device=dev),
    )
    start = time.perf_counter()
    trainer.fit(max_steps=1)
    _synchronize(dev)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.fit(max_steps=1 + steps)
    _synchronize(dev)
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
            autocast_bf16=trainer.bf16,
        )
        timed.append(time.perf_counter() - start)
    eval_s = timed[-1] * len(data.test) / count
    return step_s, eval_s, first_s


def dry_run(
    config: ReproduceConfig,
    runs_dir: str | Path,
    *,
    only: Sequence[str] = (),
    seeds: int | None = None,
    threads: int | None = None,
    time_steps: int = 3,
    device: str | torch.device | None = None,
) -> list[PlanEntry]:
    """The plan of a sweep with each row's cost, without training anything.

    Args:
        config, runs_dir, only, seeds: As for :func:`sepconv.reproduce.runs.plan_runs`.
        threads: Intra-op threads while timing (default: the config's).
        time_steps: Training steps timed per row (after one warm-up step); 0 skips timing.
        device: Where to time (default: the config's ``device``); checked to exist first.

    Example:
        >>> [entry.row.name for entry in dry_run(config, "runs", time_steps=0)]  # doctest: +SKIP
        ['mobilenet_v1_025', 'conv_mobilenet_v1_025', ...]
    """
    device = check_device(config.device if device is None else device, "device")
    runs = plan_runs(config, runs_dir, only=only, seeds=seeds)
    data = SweepData.load(config)
    entries = []
    with pinned_threads(threads or config.threads):
        for row in dict.fromkeys(run.row.name for run in runs):
            row_config = config.row(row)
            timed = (
                time_row(row_config, data, steps=time_steps, device=device)
                if time_steps
                else (None, None, None)
            )
            entries.append(
                PlanEntry(
                    row=row_config,
                    cost=row_cost(row_config, data),
                    statuses=tuple(run.status for run in runs if run.row.name == row),
                    steps_per_run=steps_per_run(row_config, len(data.train_set(row_config))),
                    step_s=timed[0],
                    eval_s=timed[1],
                    first_s=timed[2],
                )
            )
    return entries


class Eta:
    """Time left in a sweep: each run's work (MACs x images seen, training counted 3x for the
    backward pass) times the seconds per unit of work observed on finished runs, per row
    when that row has finished a run in this session, else over all of them.

    Args:
        runs: The runs of the sweep.
        costs: Per row name, its cost (the MACs weigh the work).
        data: The sweep's images.

    Example:
        >>> eta = Eta(runs, costs, data)  # doctest: +SKIP
        >>> eta.record(runs[0], 300.0); eta.remaining(runs[1:])  # doctest: +SKIP
    """

    def __init__(self, runs: Sequence[RunSpec], costs: dict[str, RowCost], data: SweepData):
        self.work = {}
        for run in runs:
            row = run.row
            evaluated = row.recipe.epochs * len(data.test)
            images = images_to_train(row, data)
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


def clock(seconds: float | None) -> str:
    """``h:mm:ss`` of ``seconds``, or "after the first run" when there is no estimate yet."""
    if seconds is None:
        return "after the first run"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
