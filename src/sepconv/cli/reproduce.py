"""``sepconv reproduce``: the accuracy-against-cost sweep of a config file, resumable."""

from __future__ import annotations

import argparse
import shlex


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
        "--device", default="cpu", help="where to train: cpu or cuda (latency: always CPU)"
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
    ):
        if value is not None:
            words += [flag, str(value)]
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.only:
        words += ["--only", *args.only]
    return shlex.join(words)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from sepconv.cli._console import console
    from sepconv.reproduce import dry_run, load_config, run_sweep
    from sepconv.reproduce.sweep import split_threads

    config = load_config(args.config)
    runs_dir = Path(args.runs_dir or f"runs/reproduce/{config.name}")
    out_dir = Path(args.out or f"results/{config.name}")
    if args.dry_run:
        jobs, threads = split_threads(config, args.threads, args.jobs, args.device)
        if args.time_steps < 0:
            raise ValueError(
                "Invalid value for argument `--time-steps`: expected an integer >= 0, "
                f"received {args.time_steps}."
            )
        entries = dry_run(
            config,
            runs_dir,
            only=args.only,
            seeds=args.seeds,
            threads=threads,
            time_steps=args.time_steps,
            device=args.device,
        )
        table = Table(
            title=f"{config.name}: plan ({runs_dir}), step times measured at {threads} "
            f"thread(s) on {args.device}"
        )
        for column in (
            "row",
            "params",
            "MACs",
            "runs (done/partial/todo)",
            "epochs",
            "steps/run",
            "s/step",
            "eval s",
            "min/run",
            "min pending",
            "changes",
        ):
            table.add_column(column, justify="left" if column in ("row", "changes") else "right")
        total = 0.0
        for entry in entries:
            counts = "/".join(str(entry.statuses.count(s)) for s in ("done", "partial", "todo"))
            changes = ", ".join(f"{k}={v}" for k, v in entry.row.changes.items())
            table.add_row(
                entry.row.name + (f" ({entry.row.twin} twin)" if entry.row.twin else ""),
                f"{entry.cost.params:,}",
                f"{entry.cost.macs / 1e6:,.1f}M",
                counts,
                str(entry.row.recipe.epochs),
                str(entry.steps_per_run),
                "-" if entry.step_s is None else f"{entry.step_s:.3f}",
                "-" if entry.eval_s is None else f"{entry.eval_s:.1f}",
                _minutes(entry.run_s),
                _minutes(entry.pending_s),
                changes or "-",
            )
            total += entry.pending_s or 0.0
        out = console()
        out.print(table)
        if args.time_steps:
            out.print(
                f"Estimated training time of the pending runs: {total / 60:.1f} min at "
                f"{threads} thread(s) (steps x measured step time + one test-set evaluation per "
                "epoch; latency measurement after training not included)."
            )
            if jobs > 1:
                out.print(
                    f"With {jobs} runs at a time: about {total / jobs / 60:.1f} min of wall time "
                    "if the runs keep their step times when they share the machine (each was "
                    "timed alone; parallel runs share memory bandwidth, so expect more)."
                )
        return 0
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
    )
    out = console()
    statuses = list(outcome.statuses.values())
    tally = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    out.print(f"runs: {tally}")
    if not outcome.complete:
        out.print("Some runs stopped at --max-steps; run the same command again to continue.")
        return 0
    out.print(f"results written to {out_dir}")
    return 0
