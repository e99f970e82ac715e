"""``sepconv reproduce``: the accuracy-against-cost sweep of a config file, resumable."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config module loads torch: only when the command runs
    from sepconv.reproduce.config import ReproduceConfig
    from sepconv.utils.tables import Column


def _plan_columns() -> list[Column]:
    """The plan table's columns; the least needed give way first in a narrow terminal."""
    from sepconv.utils.tables import Column

    return [
        Column("row", "left"),
        Column("twin", "left", drop=7),
        Column("params", drop=3),
        Column("MACs", drop=2),
        Column("runs (done/partial/todo)", short="runs d/p/t"),
        Column("epochs", short="ep"),
        Column("steps/run", short="steps", drop=4),
        Column("first step s", short="1st s", drop=5),
        Column("s/step"),
        Column("eval s", drop=6),
        Column("min/run", short="min"),
        Column("min pending", short="pending"),
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="train and measure a list of models under one recipe; table + plots",
        description="Train every row x seed of CONFIG (a TOML sweep config, e.g. "
        "configs/reproduce_compact.toml) with the sepconv trainer, each run in "
        "RUNS_DIR/<row>/seed<k>/; finished runs are skipped and interrupted ones resume from "
        "their checkpoint. Then measure params, MACs and CPU latency of every row in this one "
        "process and write OUT/{results.md,results.json,acc_vs_params.png,acc_vs_macs.png,"
        "acc_vs_latency.png,config.toml,command.txt,environment.json,runs/}.",
    )
    parser.add_argument("config", metavar="CONFIG", help="sweep config (.toml)")
    parser.add_argument("--out", default=None, help="results folder (default: results/NAME)")
    parser.add_argument(
        "--runs-dir", default=None, help="run folders (default: runs/reproduce/NAME)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="ROW",
        help="rows to train (the table lists every row with results)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (all rows)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write the results folder even if it holds results of runs this sweep would not "
        "keep (another config, --epochs, rows or seeds left out, another --runs-dir); "
        "without it such a sweep is refused before training",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="training threads in all, shared by the jobs (default: the config's)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once, each in its own process with THREADS // JOBS threads "
        "(default: the config's jobs, else 1); logs go to RUNS_DIR/<row>/seed<k>/console.log",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="where to train: cpu, cuda or cuda:N (default: the config's device, else cpu); "
        "latency is always measured on the CPU, and after a sweep on a GPU its batch-256 "
        "inference throughput too; with --jobs N the N runs share the GPU",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop each run after N optimizer steps, checkpointed (rerun to continue)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, each row's cost and its measured step time; train nothing",
    )
    parser.add_argument(
        "--time-steps",
        type=int,
        default=3,
        help="with --dry-run: training steps timed per row after one warm-up (0: no timing)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run every row once, seed 0, for 2 steps of at most 32 images on 256 test "
        "images, through the whole pipeline (table, plots); results go to "
        "results/NAME_smoke, runs to runs/reproduce/NAME_smoke",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train every row for N epochs instead of the config's (to fit a time budget "
        "once --dry-run has measured the step times)",
    )
    parser.add_argument(
        "--plan-json",
        default=None,
        metavar="PATH",
        help="with --dry-run: also write the plan and its time estimates to PATH as JSON",
    )
    parser.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The command line these arguments stand for (options at their default left out)."""
    words = ["sepconv", "reproduce", args.config]
    for flag, value in (
        ("--out", args.out),
        ("--runs-dir", args.runs_dir),
        ("--seeds", args.seeds),
        ("--threads", args.threads),
        ("--jobs", args.jobs),
        ("--max-steps", args.max_steps),
        ("--device", args.device),
        ("--epochs", args.epochs),
    ):
        if value is not None:
            words += [flag, str(value)]
    if args.smoke:
        words.append("--smoke")
    if args.only:
        words += ["--only", *args.only]
    return shlex.join(words)


def _check_numbers(args: argparse.Namespace) -> None:
    """Every number of the command line, in range, before the config is read or a run starts."""
    from sepconv.reproduce.checks import MAX_SEEDS
    from sepconv.utils.validation import bounded_int, positive_int, thread_count

    if args.seeds is not None:
        bounded_int("--seeds", args.seeds, 1, MAX_SEEDS)
    for flag, value in (("--threads", args.threads), ("--jobs", args.jobs)):
        if value is not None:
            thread_count(flag, value)
    for flag, value in (("--max-steps", args.max_steps), ("--epochs", args.epochs)):
        if value is not None:
            positive_int(flag, value)
    bounded_int("--time-steps", args.time_steps, 0, 1000)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _plan(args: argparse.Namespace, config: ReproduceConfig, runs_dir: Path) -> int:
    """``--dry-run``: print the plan with each row's cost and measured step time."""

    from sepconv.cli._console import console
    from sepconv.reproduce.plan import dry_run, split_threads
    from sepconv.utils.tables import FitTable
    from sepconv.utils.validation import invalid

    device = args.device or config.device
    jobs, threads = split_threads(config, args.threads, args.jobs, device)
    if args.time_steps < 0:
        raise invalid("--time-steps", "an integer >= 0", args.time_steps)
    entries = dry_run(
        config,
        runs_dir,
        only=args.only,
        seeds=args.seeds,
        threads=threads,
        time_steps=args.time_steps,
        device=device,
    )
    rows = []
    changed = []
    total = 0.0
    for entry in entries:
        counts = "/".join(str(entry.statuses.count(s)) for s in ("done", "partial", "todo"))
        rows.append(
            [
                entry.row.name,
                entry.row.twin or "-",
                f"{entry.cost.params:,}",
                f"{entry.cost.macs / 1e6:,.1f}M",
                counts,
                str(entry.row.recipe.epochs),
                str(entry.steps_per_run),
                "-" if entry.first_s is None else f"{entry.first_s:.2f}",
                "-" if entry.step_s is None else f"{entry.step_s:.4f}",
                "-" if entry.eval_s is None else f"{entry.eval_s:.2f}",
                _minutes(entry.run_s),
                _minutes(entry.pending_s),
            ]
        )
        if entry.row.changes:
            changes = ", ".join(f"{k}={v}" for k, v in entry.row.changes.items())
            changed.append(f"  {entry.row.name}: {changes}")
        total += entry.pending_s or 0.0
    out = console()
    out.print(
        FitTable(
            f"{config.name}: plan",
            _plan_columns(),
            rows,
            caption=f"runs in {runs_dir}; step times measured at {threads} thread(s) on "
            f"{_device_name(device)}",
        )
    )
    if changed:
        out.print("Rows that change the recipe:\n" + "\n".join(changed), markup=False)
    if args.time_steps:
        out.print(
            f"Estimated training time of the pending runs: {total / 60:.1f} min at "
            f"{threads} thread(s) (first step, including one-time set-up such as "
            "torch.compile, + the other steps x measured step time + one test-set evaluation "
            "per epoch; latency measurement after training not included)."
        )
        if jobs > 1:
            out.print(
                f"With {jobs} runs at a time: about {total / jobs / 60:.1f} min of wall time "
                "if the runs keep their step times when they share the machine (each was "
                "timed alone; parallel runs share memory bandwidth, so expect more)."
            )
    if args.plan_json:
        from sepconv.utils.files import write_json

        plan_rows = [
            {
                "row": entry.row.name,
                "params": entry.cost.params,
                "macs": entry.cost.macs,
                "epochs": entry.row.recipe.epochs,
                "steps_per_run": entry.steps_per_run,
                "first_step_s": entry.first_s,
                "step_s": entry.step_s,
                "eval_s": entry.eval_s,
                "run_s": entry.run_s,
                "pending_runs": sum(s != "done" for s in entry.statuses),
                "pending_s": entry.pending_s,
            }
            for entry in entries
        ]
        write_json(
            Path(args.plan_json),
            {
                "config": config.name,
                "device": _device_name(device),
                "jobs": jobs,
                "threads_per_run": threads,
                "rows": plan_rows,
                "pending_s": total if args.time_steps else None,
                "wall_s_if_jobs_keep_step_times": total / jobs if args.time_steps else None,
            },
        )
    return 0


def _device_name(device: str) -> str:
    """``device``, with the GPU's name when it is a CUDA device."""
    import torch

    resolved = torch.device(device)
    if resolved.type != "cuda":
        return device
    return f"{device} ({torch.cuda.get_device_name(resolved)})"


def run(args: argparse.Namespace) -> int:
    from sepconv.cli._console import console
    from sepconv.reproduce.config import load_config
    from sepconv.reproduce.guard import check_results_writable
    from sepconv.reproduce.runs import plan_runs
    from sepconv.reproduce.sweep import check_results_kept, run_sweep
    from sepconv.reproduce.variants import smoke_config, with_epochs
    from sepconv.utils.devices import check_device

    _check_numbers(args)
    config = load_config(args.config)
    # Before any data is read: `--device cuda` on a machine without a GPU is a one-line error.
    check_device(args.device or config.device, "--device")
    if args.epochs is not None:
        config = with_epochs(config, args.epochs)
    if args.smoke:
        config = smoke_config(config)
    runs_dir = Path(args.runs_dir or f"runs/reproduce/{config.name}")
    out_dir = Path(args.out or f"results/{config.name}")
    from sepconv.utils.files import check_writable

    if args.dry_run:
        if args.plan_json:
            check_writable(args.plan_json, "--plan-json")
        return _plan(args, config, runs_dir)
    # Hours of training must not end in a folder that cannot be written.
    check_writable(runs_dir, "--runs-dir", is_dir=True)
    check_writable(out_dir, "--out", is_dir=True)
    check_results_writable(out_dir, "--out")
    if not args.overwrite:
        runs = plan_runs(config, runs_dir, only=args.only, seeds=args.seeds)
        check_results_kept(config, runs, runs_dir, out_dir, args.seeds, ("--out", "--overwrite"))
    outcome = run_sweep(
        config,
        runs_dir=runs_dir,
        out_dir=out_dir,
        only=args.only,
        seeds=args.seeds,
        threads=args.threads,
        jobs=args.jobs,
        device=args.device,
        max_steps=args.max_steps,
        command=_command(args),
        overwrite=True,  # checked above, where the message can name the flags
    )
    out = console()
    statuses = list(outcome.statuses.values())
    tally = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    out.print(f"runs: {tally}")
    for key, error in outcome.failures.items():
        out.print(f"FAILED {key}: {error}", style="bold red", markup=False)
    if not outcome.complete:
        out.print("Some runs stopped at --max-steps; run the same command again to continue.")
        return 0
    out.print(f"results written to {out_dir}")
    if outcome.failures:
        out.print(f"{len(outcome.failures)} run(s) failed; their rows are marked FAILED there.")
        return 1
    return 0
