"""Reproduce the accuracy-against-cost table on a dataset that is available offline.

One TOML config (:func:`load_config`) names the rows (registered models, optionally as their
standard-conv twin) and one training recipe; :func:`run_sweep` trains every (row, seed) with
the :class:`~sepconv.train.Trainer`, resumably, measures params, MACs and CPU latency of every
row in one process, and writes a Markdown + JSON table with plots.

Modules: ``config`` (the TOML file), ``data`` (images and row models), ``runs`` (the run-folder
protocol), ``pool`` (parallel workers), ``cost`` (params, MACs, latency), ``plan`` (threads,
order, ETA, dry run), ``sweep`` (the orchestrator), ``table`` (with ``summary`` and ``twins``),
``render`` (the table as Markdown), ``plots`` and ``results`` (the results folder), ``speed``
(GPU throughput, time to an accuracy) and ``variants`` (the smoke test, another number of
epochs).
"""

from __future__ import annotations

from sepconv.reproduce.config import LatencyConfig, ReproduceConfig, RowConfig, load_config
from sepconv.reproduce.cost import RowCost, latency_model
from sepconv.reproduce.data import SweepData, build_row_model
from sepconv.reproduce.plan import PlanEntry, dry_run
from sepconv.reproduce.render import render_markdown
from sepconv.reproduce.results import write_results
from sepconv.reproduce.runs import RunSpec, plan_runs, train_run
from sepconv.reproduce.speed import gpu_throughput, time_to_accuracy
from sepconv.reproduce.sweep import SweepOutcome, run_sweep
from sepconv.reproduce.table import ResultsTable, RowSummary, TwinSummary, summarize
from sepconv.reproduce.variants import smoke_config, with_epochs

__all__ = [
    "LatencyConfig",
    "PlanEntry",
    "ReproduceConfig",
    "ResultsTable",
    "RowConfig",
    "RowCost",
    "RowSummary",
    "RunSpec",
    "SweepData",
    "SweepOutcome",
    "TwinSummary",
    "build_row_model",
    "dry_run",
    "gpu_throughput",
    "latency_model",
    "load_config",
    "plan_runs",
    "render_markdown",
    "run_sweep",
    "smoke_config",
    "summarize",
    "time_to_accuracy",
    "train_run",
    "with_epochs",
    "write_results",
]
