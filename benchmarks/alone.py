"""Interleaved against alone: each plain runtime timed in its own fresh process, and timed in
turn with the others in one process (``peers.interleaved``, what ``inference.py`` and
``precision_auto.py`` report).

The interleaved method is only a fair stand-in if a runtime times the same there as on its own.
For each of ``--processes`` repetitions, every row is timed *alone* (a fresh process that builds
only that runtime and times ``rounds x repeats`` blocks of it, with the same warm-up and pause
as the interleaved rounds) and then *interleaved* (one fresh process that builds every row and
times them with ``peers.interleaved``). Rows: ONNX Runtime with its defaults, OpenVINO at f32,
OpenVINO's default (bf16 on a CPU with native bf16) and eager PyTorch, on sepconv's model (random
weights, seeded) at batch 1. Reported per row, for two statistics of each process's blocks
(the median, and the 10th percentile: the machine's fast moments): the median over processes
of each method's figure, the ratio interleaved / alone in every repetition (its median and
worst) and the alone figures' own spread over processes; then whether the methods agree
within 5%, or that the alone figures moved more than that and the run cannot tell.

Every process keeps freed memory in the allocator (``sepconv.bench.allocator``): without it,
eager PyTorch alone in a fresh process faulted its activations' pages in at every call, and
ran up to 1.75x slower than in the interleaved process, whose ONNX export had already changed
glibc's thresholds.

Run:
    .venv/bin/python benchmarks/alone.py [--model mobilenet_v2] [--size 224] [--processes 3]
    .venv/bin/python benchmarks/alone.py --smoke   # MobileNetV1-0.25 at 64x64, 1 repetition

Writes results/benchmarks/alone.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from peers import Runner, eager, interleaved, plain_onnxruntime, plain_openvino
from rich.console import Console

import sepconv
from sepconv.bench import measure
from sepconv.bench.allocator import keep_freed_memory
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.timing import RUNTIME_SETTLE_S

ROWS = ("ONNX Runtime (plain)", "OpenVINO (plain, f32)", "OpenVINO (plain, default)", "eager")
# Statistic of a process's blocks -> its percentile: the median, and the 10th percentile, the
# time of the machine's fast moments (the host's speed changes in episodes of seconds that no
# counter inside the machine sees; an episode shifts a median but leaves the fast blocks).
STATISTICS = {"median": 50.0, "p10": 10.0}
HEADERS = [
    "row",
    *(
        f"{stat} {column}"
        for stat in STATISTICS
        for column in ("alone ms", "interleaved ms", "interleaved / alone", "worst", "alone spread")
    ),
]


def build(name: str, model: torch.nn.Module, x: torch.Tensor, threads: int, folder: Path) -> Runner:
    """The runner of row ``name`` (``ROWS``), built as ``inference.py`` builds it."""
    if name == ROWS[0]:
        return plain_onnxruntime(model, folder, threads, x)
    if name in ROWS[1:3]:
        runner, _ = plain_openvino(model, x, threads, f32=name == ROWS[1])
        return runner
    return eager(model)


def child(args: argparse.Namespace) -> dict[str, list[float]]:
    """In a fresh process: build ``args.child`` (one row, or ``interleaved`` for all) and time
    it; every block's per-call time (ms) by row."""
    keep_freed_memory()  # as Run.start does in the interleaved benchmarks
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = sepconv.create_model(args.model).eval()
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    names = args.rows if args.child == "interleaved" else [args.child]
    with tempfile.TemporaryDirectory(prefix="sepconv-alone-") as tmp:
        rows = {name: build(name, model, x, args.threads, Path(tmp)) for name in names}
        if args.child == "interleaved":
            timings = interleaved(
                rows, x, rounds=args.rounds, repeats=args.repeats, threads=args.threads
            )
            return {name: [s * 1e3 for s in t.samples_s] for name, t in timings.items()}
        (runner,) = rows.values()
        samples: list[float] = []
        for _ in range(args.rounds):  # as many blocks as a row gets interleaved
            t = measure(
                functools.partial(runner, x),
                warmup=2,
                repeats=args.repeats,
                threads=args.threads,
                settle_s=RUNTIME_SETTLE_S,
            )
            samples.extend(s * 1e3 for s in t.samples_s)
        return {args.child: samples}


# How far the two methods may differ, and how far one runtime's alone figures may differ from
# process to process for a run to tell that.
AGREE = 0.05


def agreement(summary: dict[str, dict[str, Any]]) -> str:
    """Whether the medians of the two methods agree within :data:`AGREE` for every row, or
    that the run cannot tell: one runtime alone differed by more than that between processes."""
    spread = {name: s["median"]["alone_spread"] for name, s in summary.items()}
    worst = max(spread, key=spread.__getitem__)
    if spread[worst] > 1 + AGREE:
        return (
            f"Cannot tell: {worst} alone differed by {spread[worst]:.2f}x from one process to "
            f"another, more than the {100 * AGREE:.0f}% the methods are checked to; the "
            "machine's speed changed during the run (the header says whether another process "
            "used it; a virtual machine's host can slow it with nothing inside to show)."
        )
    apart = {
        name: s["median"]["median_ratio"]
        for name, s in summary.items()
        if abs(s["median"]["median_ratio"] - 1) > AGREE
    }
    if not apart:
        return f"Every row's interleaved median is within {100 * AGREE:.0f}% of its alone one."
    listed = ", ".join(f"{name} {ratio:.2f}" for name, ratio in apart.items())
    return f"Interleaved over alone outside {100 * AGREE:.0f}%: {listed}."


def spawn(what: str, args: argparse.Namespace) -> dict[str, list[float]]:
    command = [sys.executable, __file__, "--child", what, "--model", args.model]
    command += ["--size", str(args.size), "--threads", str(args.threads)]
    command += ["--rounds", str(args.rounds), "--repeats", str(args.repeats)]
    command += ["--rows", *args.rows]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--processes", type=positive_int, default=3, help="repetitions")
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed blocks per round")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_smoke_flag(parser, "MobileNetV1-0.25 at 64x64, ONNX Runtime and eager, 1 repetition")
    add_output_flags(parser)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    run = Run.start(__file__, args)
    if args.smoke:
        args.model, args.size, args.processes, args.rounds, args.repeats = (
            "mobilenet_v1_025", 64, 1, 1, 3,
        )  # fmt: skip
        args.rows = [ROWS[0], ROWS[3]]
    alone: dict[str, list[float]] = {name: [] for name in args.rows}
    together: dict[str, list[float]] = {name: [] for name in args.rows}
    for index in range(args.processes):
        print(f"repetition {index + 1}/{args.processes} ...", flush=True)
        for name in args.rows:
            alone[name].append(spawn(name, args)[name])
        for name, ms in spawn("interleaved", args).items():
            together[name].append(ms)
    rows, summary = [], {}
    for name in args.rows:
        summary[name] = {"alone_blocks_ms": alone[name], "interleaved_blocks_ms": together[name]}
        cells = [name]
        for stat, quantile in STATISTICS.items():
            per_alone = [float(np.percentile(b, quantile)) for b in alone[name]]
            per_together = [float(np.percentile(b, quantile)) for b in together[name]]
            ratios = [t / a for t, a in zip(per_together, per_alone, strict=True)]
            worst = max(ratios, key=lambda r: abs(r - 1))
            spread = max(per_alone) / min(per_alone)
            summary[name][stat] = {
                "alone_ms": per_alone,
                "interleaved_ms": per_together,
                "ratios": ratios,
                "median_ratio": float(np.median(ratios)),
                "worst_ratio": worst,
                "alone_spread": spread,
            }
            cells += [
                f"{np.median(per_alone):.3f}", f"{np.median(per_together):.3f}",
                f"{np.median(ratios):.3f}", f"{worst:.3f}", f"{spread:.2f}",
            ]  # fmt: skip
        rows.append(cells)
    verdict = agreement(summary)
    print(verdict)
    title = f"{args.model} at {args.size}x{args.size}, batch 1, {args.threads} thread(s)"
    Console(width=160).print(terminal_table(title, HEADERS, rows))
    data = {
        **run.record(args.threads),
        "model": args.model,
        "input_shape": [1, 3, args.size, args.size],
        "processes": args.processes,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "rows": summary,
    }
    run.write(
        data,
        header("Interleaved against alone: each runtime in its own process", data)
        + f"\n\nsepconv {args.model}, random weights (seed 0), batch 1, {args.size}x"
        f"{args.size}; {args.processes} repetition(s), each: every row alone in a fresh "
        f"process ({args.rounds} x {args.repeats} timed blocks), then all rows interleaved in "
        f"one fresh process ({args.rounds} rounds x {args.repeats} blocks, "
        "`peers.interleaved`). Each process gives the median and the 10th percentile (*p10*) of "
        "its blocks; the table gives the median over processes; *worst*: the repetition whose "
        "ratio is furthest from 1; *alone spread*: the slowest process's alone figure over the "
        "fastest's, the method's own noise.\n\n"
        f"{markdown_table(HEADERS, rows)}\n\n{verdict}\n",
    )


if __name__ == "__main__":
    main()
