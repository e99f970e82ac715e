"""Sweep wall time: runs one after the other on all threads against parallel runs (``jobs``).

The same small sweep (the compact table's twins and its MobileNetV2 row, each on the first
``--train-images`` Fashion-MNIST training images for one epoch, ``--seeds`` seeds, evaluated on
the first ``--test-images`` test images) goes through :func:`sepconv.reproduce.run_sweep`
twice per round: with ``jobs=1`` (each run on all ``--threads`` threads, in this process) and
with ``jobs=--jobs`` (that many runs at a time, each in a worker process with
``threads // jobs`` threads), in fresh run folders, alternating for ``--repeats`` rounds.
Reported: median wall time of the whole sweep (latency measurement after training kept to a
few calls, the same for both), training images per second over the sweep, and the ratio.

Run:
    .venv/bin/python benchmarks/sweep_jobs.py [--threads 2] [--jobs 2] [--repeats 2]
    .venv/bin/python benchmarks/sweep_jobs.py --smoke   # 256 images, 1 seed, 1 round

Writes results/benchmarks/sweep_jobs.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console

from sepconv.bench.output import markdown_table, terminal_table
from sepconv.reproduce import load_config, run_sweep

SWEEP = """\
data = "fashion-mnist"
test_images = {test_images}

[recipe]
epochs = 1
batch_size = 128
lr = 0.1
weight_decay = 4e-5
warmup_epochs = 0.25
label_smoothing = 0.1
channels_last = true

[latency]
batch_sizes = [1]
warmup = 1
repeats = 3
max_time_s = 0.5

[[row]]
name = "mobilenet_v1_025"
model = "mobilenet_v1"
model_kwargs = {{ width_mult = 0.25 }}
seeds = {seeds}
train_images = {train_images}

[[row]]
name = "conv_mobilenet_v1_025"
model = "mobilenet_v1"
model_kwargs = {{ width_mult = 0.25 }}
twin = "standard"
seeds = {seeds}
train_images = {train_images}

[[row]]
name = "mobilenet_v2_035"
model = "mobilenet_v2"
model_kwargs = {{ width_mult = 0.35 }}
seeds = {seeds}
train_images = {train_images}
"""


def time_sweep(config_path: Path, work: Path, *, threads: int, jobs: int) -> float:
    """Seconds :func:`run_sweep` takes from scratch in a fresh folder under ``work``."""
    folder = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    outcome = run_sweep(
        load_config(config_path),
        runs_dir=folder / "runs",
        out_dir=folder / "out",
        threads=threads,
        jobs=jobs,
        command="benchmarks/sweep_jobs.py",
    )
    seconds = time.perf_counter() - start
    if set(outcome.statuses.values()) != {"trained"}:
        raise RuntimeError(f"sweep in {folder} did not train every run: {outcome.statuses}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--jobs", type=positive_int, default=2)
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--train-images", type=positive_int, default=7680)
    parser.add_argument("--test-images", type=positive_int, default=2000)
    parser.add_argument("--repeats", type=positive_int, default=2)
    add_smoke_flag(parser, "256 training and test images, 1 seed, 1 round")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.smoke:
        args.seeds, args.train_images, args.test_images, args.repeats = 1, 256, 256, 1
    contenders = {
        f"jobs=1 ({args.threads} threads per run)": 1,
        f"jobs={args.jobs} ({max(1, args.threads // args.jobs)} thread(s) per run)": args.jobs,
    }
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config_path = work / "sweep_jobs.toml"
        config_path.write_text(
            SWEEP.format(
                seeds=args.seeds, train_images=args.train_images, test_images=args.test_images
            ),
            encoding="utf-8",
        )
        for _ in range(args.repeats):
            for name, jobs in contenders.items():
                seconds[name].append(time_sweep(config_path, work, threads=args.threads, jobs=jobs))
    images = 3 * args.seeds * args.train_images
    serial = statistics.median(next(iter(seconds.values())))
    rows = [
        {
            "contender": name,
            "jobs": contenders[name],
            "median_s": statistics.median(values),
            "runs_s": values,
            "train_images_per_s": images / statistics.median(values),
            "speedup": serial / statistics.median(values),
        }
        for name, values in seconds.items()
    ]
    headers = ["contender", "median sweep s", "rounds (s)", "train img/s", "x jobs=1"]
    title = (
        f"Sweep wall time: 3 rows x {args.seeds} seeds, {args.train_images} training images, "
        f"1 epoch each, {args.threads} threads in all"
    )
    md_rows = [
        [
            row["contender"],
            f"{row['median_s']:.1f}",
            " / ".join(f"{v:.1f}" for v in row["runs_s"]),
            f"{row['train_images_per_s']:.0f}",
            f"{row['speedup']:.2f}",
        ]
        for row in rows
    ]
    Console().print(terminal_table(title, headers, md_rows))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    data = {**run.record(args.threads), "args": settings, "results": rows}
    run.write(
        data,
        header("Sweep wall time: jobs=1 against parallel runs", data)
        + f"\n\n{title}.\n\n"
        + markdown_table(headers, md_rows)
        + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
