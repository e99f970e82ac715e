"""Reproduce the accuracy-against-cost table on a dataset that is available offline.

One TOML config (:func:`load_config`) names the rows (registered models, optionally as their
standard-conv twin) and one training recipe; :func:`run_sweep` trains every (row, seed) with
the :class:`~sepconv.train.Trainer`, resumably, measures params, MACs and CPU latency of every
row in one process, and writes a Markdown + JSON table with plots (:mod:`sepconv.reproduce.table`).
"""

from __future__ import annotations

from sepconv.reproduce.config import LatencyConfig, ReproduceConfig, RowConfig, load_config
from sepconv.reproduce.sweep import (
    PlanEntry,
    RowCost,
    RunSpec,
    SweepData,
    SweepOutcome,
    build_row_model,
    dry_run,
    latency_model,
    plan_runs,
    run_sweep,
    train_run,
)
from sepconv.reproduce.table import ResultsTable, RowSummary, TwinSummary, summarize, write_results

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
    "latency_model",
    "load_config",
    "plan_runs",
    "run_sweep",
    "summarize",
    "train_run",
    "write_results",
]
