"""Run every (row, seed) of a sweep through the :class:`~sepconv.train.Trainer`, resumably.

The orchestrator: it plans the runs (:mod:`sepconv.reproduce.runs`, one folder per run,
finished runs skipped and interrupted ones resumed), trains them one after the other or
``jobs`` at a time (:mod:`sepconv.reproduce.pool`) under one progress bar with an ETA
(:mod:`sepconv.reproduce.plan`), then measures the cost of every row in one process
(:mod:`sepconv.reproduce.cost`) and writes the results table (:mod:`sepconv.reproduce.results`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sepconv.bench.timing import environment, pinned_threads
from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.cost import RowCost, row_cost, row_latencies, trained_weights
from sepconv.reproduce.data import SweepData
from sepconv.reproduce.guard import check_results_kept, check_results_writable, table_runs
from sepconv.reproduce.plan import Eta, clock, latency_threads, longest_first, split_threads
from sepconv.reproduce.pool import CONSOLE_NAME, train_in_parallel
from sepconv.reproduce.results import write_results
from sepconv.reproduce.runs import (
    RESULT_NAME,
    RunSpec,
    plan_runs,
    read_result,
    train_run,
)
from sepconv.reproduce.speed import gpu_throughput
from sepconv.reproduce.table import summarize
from sepconv.train.trainer import LOG_NAME
from sepconv.utils.devices import check_device
from sepconv.utils.validation import positive_int


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        statuses: Per run key: ``skipped`` (already done), ``trained``, ``resumed``,
            ``stopped`` (by ``max_steps``; rerun to continue) or ``failed`` (training diverged).
        failures: Per failed run key, the error that ended it.
        results: Per row name, the results of its finished runs (seed order).
        files: Result files written (empty while runs are unfinished).
    """

    statuses: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every planned run has finished."""
        return "stopped" not in self.statuses.values()


@dataclass
class _Progress:
    """The sweep's progress bar, the ETA behind it and the outcome it fills in."""

    outcome: SweepOutcome
    eta: Eta
    bar: tqdm
    before: dict[str, str] = field(default_factory=dict)  # each run's status at the start

    def finish(self, run: RunSpec, result: dict[str, Any] | None) -> None:
        """Record a run that ended (``result`` is ``None`` when ``max_steps`` stopped it)."""
        if result is None:
            self.outcome.statuses[run.key] = "stopped"
        elif "failed" in result:
            self.outcome.statuses[run.key] = "failed"
            self.outcome.failures[run.key] = result["failed"]
        else:
            status = self.before[run.key]
            self.outcome.statuses[run.key] = "resumed" if status == "partial" else "trained"
            if status == "todo":
                # Only a whole run in this session says how long a run takes.
                self.eta.record(run, result["last_session_wall_s"])
        self.bar.update(1)


def _train(
    runs: Sequence[RunSpec],
    data: SweepData,
    progress: _Progress,
    *,
    jobs: int,
    threads: int,
    device: str | torch.device,
    max_steps: int | None,
) -> None:
    """Train the runs not yet done, one at a time or ``jobs`` at a time, updating ``progress``."""
    bar, eta = progress.bar, progress.eta
    pending = []
    for run in runs:
        progress.before[run.key] = run.status
        if progress.before[run.key] == "done":
            read_result(run, data.config)  # a stale result is refused now, not after training
            progress.outcome.statuses[run.key] = "skipped"
            bar.update(1)
        else:
            pending.append(run)
    if jobs == 1:
        for index, run in enumerate(pending):
            bar.set_postfix_str(f"now {run.key}, ETA {clock(eta.remaining(pending[index:]))}")
            progress.finish(run, train_run(run, data, device=device, max_steps=max_steps))
    elif pending:
        left = {run.key: run for run in pending}
        bar.set_postfix_str(f"{jobs} runs at a time, logs in <run>/{CONSOLE_NAME}")
        ordered = longest_first(pending, data)
        for run, result in train_in_parallel(
            ordered, data.config, jobs=jobs, threads=threads, max_steps=max_steps, device=device
        ):
            progress.finish(run, result)
            del left[run.key]
            remaining = eta.remaining(list(left.values()))
            estimate = None if remaining is None else remaining / jobs
            bar.set_postfix_str(f"{jobs} runs at a time, ETA {clock(estimate)}")


def _collect(
    config: ReproduceConfig, runs_dir: Path, seeds: int | None, outcome: SweepOutcome
) -> dict[str, list[RunSpec]]:
    """Every finished run of every row (not only the planned ones), its result put in
    ``outcome.results``: the table lists every row with results."""
    finished: dict[str, list[RunSpec]] = {}
    for run in table_runs(config, runs_dir, seeds):
        if run.status == "done":
            finished.setdefault(run.row.name, []).append(run)
            outcome.results.setdefault(run.row.name, []).append(read_result(run, config))
    return finished


def _write_table(
    data: SweepData,
    outcome: SweepOutcome,
    costs: dict[str, RowCost],
    finished: dict[str, list[RunSpec]],
    *,
    runs_dir: Path,
    out_dir: Path,
    command: str,
    context: dict[str, Any],
) -> list[Path]:
    """Measure the latency of every finished row (at ``context["latency_threads"]``),
    summarize and write the results folder."""
    config = _mark_failed(data.config, outcome.failures)
    latency_threads = context["latency_threads"]
    latencies, trained = row_latencies(config, data, finished, runs_dir, latency_threads)
    device = torch.device(context["device"])
    throughput = {}
    if device.type == "cuda":
        for name, runs_of_row in tqdm(finished.items(), desc="GPU throughput", unit="row"):
            weights = trained_weights(runs_of_row)
            throughput[name] = gpu_throughput(config.row(name), data, device, weights=weights)
    table = summarize(
        config,
        outcome.results,
        costs,
        latencies,
        input_shape=data.input_shape,
        latency_trained=trained,
        gpu_throughput=throughput,
        gpu=context["environment"].get("gpu") if throughput else None,
    )
    run_files = {
        run.key: {
            "result.json": run.directory / RESULT_NAME,
            "log.jsonl": run.directory / LOG_NAME,
        }
        for runs_of_row in finished.values()
        for run in runs_of_row
    }
    return write_results(
        table,
        out_dir,
        config=config,
        command=command,
        run_files=run_files,
        context={**context, "loadavg_end": _loadavg()},
    )


def _mark_failed(config: ReproduceConfig, failures: dict[str, str]) -> ReproduceConfig:
    """``config`` with each row that has a failed run marked so in its note under the table."""
    rows = []
    for row in config.rows:
        errors = [e for key, e in failures.items() if key.split("/")[0] == row.name]
        if errors:
            mark = f"FAILED: {len(errors)} run(s) diverged ({errors[0]})"
            row = replace(row, note=f"{mark} {row.note}".strip())
        rows.append(row)
    return replace(config, rows=tuple(rows))


def _loadavg() -> list[float]:
    return list(os.getloadavg())


def run_sweep(
    config: ReproduceConfig,
    *,
    runs_dir: str | Path,
    out_dir: str | Path,
    only: Sequence[str] = (),
    seeds: int | None = None,
    threads: int | None = None,
    jobs: int | None = None,
    device: str | torch.device | None = None,
    max_steps: int | None = None,
    command: str = "",
    overwrite: bool = False,
) -> SweepOutcome:
    """Train every planned run, then measure every row and write the results table.

    Finished runs are skipped, interrupted ones resumed. A progress bar covers the whole sweep
    (runs done / total, the current run, elapsed time, and an ETA from the runs finished so
    far); the trainer's own bar shows the current epoch. When every run has finished, the
    latency of every row with results is measured in this process and
    :func:`sepconv.reproduce.results.write_results` writes ``out_dir``.

    Args:
        config: The sweep.
        runs_dir: Where the run folders live.
        out_dir: Where the results go (``results.json``, ``results.md``, plots, ...).
        only, seeds: As for :func:`sepconv.reproduce.runs.plan_runs`.
        threads: Intra-op threads for training (default: the config's), shared by the jobs;
            latency uses ``config.latency.threads`` or this (a config's count capped at the
            CPUs this process may use).
        jobs: Runs trained at once, each in a worker process with ``threads // jobs``
            threads, started longest first by images to train (default: the config's
            ``jobs``); on a GPU the jobs share it.
        device: Where to train (default: the config's ``device``), checked to exist before
            anything is written. Latency is always measured on the CPU; after a sweep on a
            GPU every row's inference throughput there is measured too
            (:func:`sepconv.reproduce.speed.gpu_throughput`).
        max_steps: Stop each run after this many optimizer steps (checkpointed).
        command: The command line, recorded with the results.
        overwrite: Write ``out_dir`` even if it holds results of runs this sweep's table would
            not hold (checked before any training; see :func:`check_results_kept`).

    Raises:
        ValueError: an invalid argument, or (unless ``overwrite``) an ``out_dir`` whose results
            this sweep would lose.

    Example:
        >>> outcome = run_sweep(load_config("configs/reproduce_compact.toml"),
        ...                     runs_dir="runs/reproduce/reproduce_compact",
        ...                     out_dir="results/reproduce_compact")  # doctest: +SKIP
    """
    device = check_device(config.device if device is None else device, "device")
    runs_path, out_path = Path(runs_dir), Path(out_dir)
    runs = plan_runs(config, runs_path, only=only, seeds=seeds)
    if max_steps is not None:
        positive_int("max_steps", max_steps)
    if not overwrite:
        check_results_kept(config, runs, runs_path, out_path, seeds)
    check_results_writable(out_path)
    jobs, run_threads = split_threads(config, threads, jobs, device)
    load_start = _loadavg()
    data = SweepData.load(config)
    costs = {row.name: row_cost(row, data) for row in config.rows}
    sweep_start = time.perf_counter()
    with pinned_threads(run_threads):
        bar = tqdm(
            total=len(runs),
            desc="sweep",
            unit="run",
            position=0,
            bar_format="{desc} {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed{postfix}",
        )
        progress = _Progress(SweepOutcome(), Eta(runs, costs, data), bar)
        _train(
            runs,
            data,
            progress,
            jobs=jobs,
            threads=run_threads,
            device=device,
            max_steps=max_steps,
        )
        bar.set_postfix_str(f"done in {clock(time.perf_counter() - sweep_start)}")
        bar.close()
    outcome = progress.outcome
    finished = _collect(config, runs_path, seeds, outcome)
    if not outcome.complete:
        return outcome
    outcome.files = _write_table(
        data,
        outcome,
        costs,
        finished,
        runs_dir=runs_path,
        out_dir=out_path,
        command=command,
        context={
            "environment": environment(run_threads),
            "train_threads": run_threads,
            "jobs": jobs,
            "latency_threads": latency_threads(config, threads),
            "device": str(device),
            "loadavg_start": load_start,
        },
    )
    return outcome
