"""Training several runs of a sweep at once, each in its own worker process.

The workers are spawned, so none inherits the parent's OpenMP thread pool; each pins its share
of the threads and loads the sweep's images once. A worker's console output goes to
``console.log`` in its run folder instead of the terminal.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import torch

from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.data import SweepData
from sepconv.reproduce.runs import RunSpec, train_run

CONSOLE_NAME = "console.log"  # a worker's progress output, with jobs > 1

# A worker process's copy of the sweep's images, loaded once by _start_worker.
_worker_data: SweepData | None = None


def _start_worker(config: ReproduceConfig, threads: int) -> None:
    """Initialise a sweep worker process: pin its intra-op threads and load the images."""
    global _worker_data
    torch.set_num_threads(threads)
    _worker_data = SweepData.load(config)


def _train_in_worker(
    task: tuple[RunSpec, int | None, str],
) -> tuple[RunSpec, dict[str, Any] | None]:
    """:func:`train_run` in a worker process, its progress output appended to the run's
    ``console.log``; returns the run with its result."""
    run, max_steps, device = task
    if _worker_data is None:
        raise RuntimeError("_train_in_worker runs only in a process started by _start_worker")
    run.directory.mkdir(parents=True, exist_ok=True)
    log_path = run.directory / CONSOLE_NAME
    with log_path.open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        return run, train_run(run, _worker_data, device=device, max_steps=max_steps)


def train_in_parallel(
    runs: Sequence[RunSpec],
    config: ReproduceConfig,
    *,
    jobs: int,
    threads: int,
    max_steps: int | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[RunSpec, dict[str, Any] | None]]:
    """Train ``runs`` ``jobs`` at a time, in the order given; yield each with its result
    (``None`` when ``max_steps`` stopped it) as it finishes.

    Args:
        runs: The runs, in the order to start them.
        config: The sweep (each worker loads its images).
        jobs: Worker processes.
        threads: Intra-op threads of each worker.
        max_steps: As for :func:`sepconv.reproduce.runs.train_run`.
        device: Where every worker trains; on a GPU the workers share it, each with its own
            CUDA context and its own copy of the training images there.

    Example:
        >>> for run, result in train_in_parallel(runs, config, jobs=2, threads=1):  # doctest: +SKIP
        ...     print(run.key, result is not None)
    """
    spawn = multiprocessing.get_context("spawn")  # no inherited OpenMP pool
    with spawn.Pool(jobs, _start_worker, (config, threads)) as pool:
        tasks = [(run, max_steps, str(device)) for run in runs]
        yield from pool.imap_unordered(_train_in_worker, tasks)
        pool.close()
        pool.join()
