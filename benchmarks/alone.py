"""Interleaved against alone: each plain runtime timed in a process of its own, and in the
process that holds every runtime (how ``inference.py`` and ``precision_auto.py`` timed their
rows before they moved to the alone method, ``turns.apart``), block for block at the same moments.

Timing every runtime in one process is only a fair stand-in if a runtime times the same there as
on its own: this benchmark measures by how much it does not.
Comparing a fresh process per runtime with a later interleaved process cannot show a 5% difference
on a virtual machine: the host slows the cores for seconds at a time, with nothing inside the
machine to show it, and one runtime's alone figure moved by 1.71x from one process to the next (the
run this benchmark made before, at commit 02f6ab2). So the two methods take turns instead
(``turns.Workers``). Each repetition starts one *alone* worker process per row (it builds only that
runtime) and one *shared* worker (it builds every row, as the benchmarks did before); only one
worker times at any moment while the others wait on their pipe. Each worker times each of its rows
once untimed first (a fresh process's first calls ran up to 10x slow). In each round the rows come
in ``interleaved_order``, and for each row the shared worker and the row's alone worker each time
one turn (``--repeats`` blocks after 2 warm-up calls and the ``RUNTIME_SETTLE_S`` pause, as
every benchmark's turns are), back to back; which of the two goes first alternates from one pair
of the row to the next. A slow spell that outlasts a pair falls on both of its turns, and their
ratio cancels it; one that starts or ends inside a pair does not, so single pairs stay noisy.

Reported per row: the median over turns of each method's turn median; the median of the paired
ratios shared / alone, with a two-level bootstrap 90% interval (repetitions drawn, then pairs
within them: the pairs of one repetition share their processes), and the median of the pairs in
each order; each method's own spread (interquartile range of its turn medians over their median).
The verdict per row: the methods agree when the interval lies within 5% of 1, differ when it lies
wholly outside, and otherwise the run cannot tell; fewer than 8 pairs or 3 repetitions give none.
Rows: ONNX Runtime with its defaults, OpenVINO at f32, OpenVINO's default (bf16 on a CPU with
native bf16) and eager PyTorch, on sepconv's model (random weights, seeded) at batch 1.

Every worker keeps freed memory in the allocator (``sepconv.bench.allocator``): without it,
eager PyTorch alone in a fresh process faulted its activations' pages in at every call, and ran
up to 1.75x slower than in the shared process, whose ONNX export had already changed glibc's
thresholds (``results/benchmarks/alone_default_malloc.md``, the earlier method).

Run:
    .venv/bin/python benchmarks/alone.py [--model mobilenet_v2] [--size 224] [--processes 5]
    .venv/bin/python benchmarks/alone.py --smoke   # MobileNetV1-0.25 at 64x64, 1 repetition

Writes results/benchmarks/alone.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from peers import Runner, eager, plain_onnxruntime, plain_openvino
from rich.console import Console
from turns import Built, Workers

import sepconv
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.timing import RUNTIME_SETTLE_S, interleaved_order

ROWS = ("ONNX Runtime (plain)", "OpenVINO (plain, f32)", "OpenVINO (plain, default)", "eager")
METHODS = ("alone", "shared")
HEADERS = [
    "row", "alone ms", "shared ms", "shared / alone", "90% interval", "alone first",
    "shared first", "alone spread", "shared spread", "verdict",
]  # fmt: skip
# How far the two methods may differ; the bootstrap's resamples and interval.
AGREE = 0.05
RESAMPLES = 2000
INTERVAL = (5.0, 95.0)
# Fewer paired turns, or repetitions, than this give no interval worth a verdict.
MIN_PAIRS = 8
MIN_REPETITIONS = 3


def build(name: str, model: torch.nn.Module, x: torch.Tensor, threads: int, folder: Path) -> Runner:
    """The runner of row ``name`` (``ROWS``), built as ``inference.py`` builds it."""
    if name == ROWS[0]:
        return plain_onnxruntime(model, folder, threads, x)
    if name in ROWS[1:3]:
        runner, _ = plain_openvino(model, x, threads, f32=name == ROWS[1])
        return runner
    return eager(model)


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """In a worker process: sepconv's model (seeded) and its input, and the runners of the
    rows ``names``."""
    threads = settings["threads"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = sepconv.create_model(settings["model"]).eval()
    size = settings["size"]
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    return Built({name: build(name, model, x, threads, folder) for name in names}, x)


def repetition(rows: list[str], settings: dict[str, Any], rounds: int) -> dict[str, Any]:
    """One repetition: by row, every turn's blocks by method and which method went first in
    each pair (each row's pairs alternate, so each order comes equally often)."""
    turns: dict[str, Any] = {
        name: {"blocks_ms": {method: [] for method in METHODS}, "first": []} for name in rows
    }
    groups = {**{name: [name] for name in rows}, "shared": rows}
    with Workers(groups, settings, setup) as workers:
        for name in rows:  # a first, untimed turn: a fresh process's first calls run cold
            workers.turn(name, name)
            workers.turn("shared", name)
        for r in range(rounds):
            for index in interleaved_order(len(rows), r):
                name = rows[index]
                pairs = len(turns[name]["first"])
                order = METHODS if pairs % 2 == 0 else METHODS[::-1]
                for method in order:
                    key = "shared" if method == "shared" else name
                    t = workers.turn(key, name)
                    turns[name]["blocks_ms"][method].append([s * 1e3 for s in t.samples_s])
                turns[name]["first"].append(order[0])
    return turns


def interval(ratios: np.ndarray, repetitions: np.ndarray) -> tuple[float, float]:
    """A two-level bootstrap interval (:data:`INTERVAL` percentiles) of the median of
    ``ratios``: repetitions drawn with replacement, then pairs within each, since pairs of one
    repetition share its worker processes and are not independent of each other."""
    rng = np.random.default_rng(0)
    groups = [ratios[repetitions == g] for g in np.unique(repetitions)]
    medians = np.empty(RESAMPLES)
    for b in range(RESAMPLES):
        drawn = [groups[g] for g in rng.integers(0, len(groups), len(groups))]
        medians[b] = np.median(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in drawn]))
    low, high = np.percentile(medians, INTERVAL)
    return float(low), float(high)


def verdict(low: float, high: float, pairs: int, repetitions: int) -> str:
    """Whether an interval of the ratio lies within :data:`AGREE` of 1, wholly outside, or
    neither (the run cannot tell); from fewer than :data:`MIN_PAIRS` pairs or
    :data:`MIN_REPETITIONS` repetitions, no verdict."""
    if pairs < MIN_PAIRS or repetitions < MIN_REPETITIONS:
        return "too few turns"
    if low >= 1 - AGREE and high <= 1 + AGREE:
        return "agree"
    if high < 1 - AGREE or low > 1 + AGREE:
        return "differ"
    return "cannot tell"


def spread(values: np.ndarray) -> float:
    """Interquartile range over median."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / median)


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    """One row's figures from its turns: ``row["blocks_ms"]`` by method, every repetition's in
    order, with each pair's ``repetition`` and the method that went ``first``."""
    medians = {m: np.array([np.median(b) for b in row["blocks_ms"][m]]) for m in METHODS}
    ratios = medians["shared"] / medians["alone"]
    repetitions = np.asarray(row["repetition"])
    first = np.asarray(row["first"])
    low, high = interval(ratios, repetitions)
    by_order = {
        m: float(np.median(ratios[first == m])) if (first == m).any() else float("nan")
        for m in METHODS
    }
    count = len(np.unique(repetitions))
    return {
        **{f"{method}_turn_ms": medians[method].tolist() for method in METHODS},
        **{f"{method}_ms": float(np.median(medians[method])) for method in METHODS},
        **{f"{method}_spread": spread(medians[method]) for method in METHODS},
        "ratios": ratios.tolist(),
        "median_ratio": float(np.median(ratios)),
        "median_ratio_by_first": by_order,
        "interval": [low, high],
        "verdict": verdict(low, high, len(ratios), count),
    }


def conclusion(summary: dict[str, dict[str, Any]]) -> str:
    """The run's verdict over every row."""
    by_verdict: dict[str, list[str]] = {}
    for name, row in summary.items():
        by_verdict.setdefault(row["verdict"], []).append(
            f"{name} {row['median_ratio']:.3f} [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}]"
        )
    if set(by_verdict) == {"agree"}:
        return (
            f"Every row times the same in the shared process as alone, within {100 * AGREE:.0f}% "
            "(90% interval of the median paired ratio)."
        )
    lead = {
        "differ": f"Shared over alone outside {100 * AGREE:.0f}%",
        "cannot tell": f"Cannot tell whether within {100 * AGREE:.0f}%",
        "too few turns": (
            f"Fewer than {MIN_PAIRS} paired turns or {MIN_REPETITIONS} repetitions, no verdict"
        ),
        "agree": f"Within {100 * AGREE:.0f}%",
    }
    parts = [f"{lead[v]}: " + "; ".join(by_verdict[v]) for v in lead if v in by_verdict]
    return ". ".join(parts) + "."


def cells(name: str, summary: dict[str, Any]) -> list[str]:
    """Row ``name``'s table cells from its ``summary``."""
    low, high = summary["interval"]
    by_first = summary["median_ratio_by_first"]
    return [
        name, f"{summary['alone_ms']:.3f}", f"{summary['shared_ms']:.3f}",
        f"{summary['median_ratio']:.3f}", f"{low:.3f}-{high:.3f}", f"{by_first['alone']:.3f}",
        f"{by_first['shared']:.3f}", f"{100 * summary['alone_spread']:.0f}%",
        f"{100 * summary['shared_spread']:.0f}%", summary["verdict"],
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--processes", type=positive_int, default=5, help="repetitions")
    parser.add_argument("--rounds", type=positive_int, default=12, help="rounds per repetition")
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed blocks per turn")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    add_smoke_flag(parser, "MobileNetV1-0.25 at 64x64, ONNX Runtime and eager, 1 repetition")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.smoke:
        args.model, args.size, args.processes, args.rounds, args.repeats = (
            "mobilenet_v1_025", 64, 1, 1, 3,
        )  # fmt: skip
        args.rows = [ROWS[0], ROWS[3]]
    settings = {
        "model": args.model, "size": args.size, "threads": args.threads, "repeats": args.repeats,
    }  # fmt: skip
    turns: dict[str, Any] = {
        name: {"blocks_ms": {m: [] for m in METHODS}, "first": [], "repetition": []}
        for name in args.rows
    }
    for index in range(args.processes):
        print(f"repetition {index + 1}/{args.processes} ...", flush=True)
        for name, done in repetition(args.rows, settings, args.rounds).items():
            for method, blocks in done["blocks_ms"].items():
                turns[name]["blocks_ms"][method].extend(blocks)
            turns[name]["first"].extend(done["first"])
            turns[name]["repetition"].extend([index] * len(done["first"]))
    summary = {name: {**summarise(turns[name]), **turns[name]} for name in args.rows}
    rows = [cells(name, row) for name, row in summary.items()]
    text = conclusion(summary)
    print(text)
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
        "conclusion": text,
    }
    run.write(
        data,
        header("Interleaved against alone: each runtime in its own process", data)
        + f"\n\nsepconv {args.model}, random weights (seed 0), batch 1, {args.size}x"
        f"{args.size}; {args.processes} repetition(s) of {args.rounds} round(s). In each "
        "repetition every row has an *alone* worker process (only that runtime built) and all "
        "share a *shared* worker (every runtime built, as the interleaved benchmarks run them); "
        "after one untimed turn of each worker on each of its rows, per round, for each row in "
        "turn, the two time one turn each "
        f"({args.repeats} blocks after 2 warm-up calls and a {RUNTIME_SETTLE_S} s pause), "
        "back to back, while the other workers wait; which of the two goes first alternates "
        "from one pair of a row to the next. *alone ms*, *shared ms*: median of the turns' "
        "medians; *shared / alone*: median of the paired turns' ratios, with a two-level "
        "bootstrap 90% interval (repetitions, then pairs within them); *alone first*, *shared "
        "first*: the median ratio of the pairs in each order; *spread*: interquartile range "
        "of a method's turn medians, over all repetitions, over their median (what an unpaired "
        "comparison would face; the *Noisy timings* rule of other results does not apply to "
        f"a paired ratio). *verdict*: the interval within {100 * AGREE:.0f}% of 1 (agree), "
        f"wholly outside (differ), or neither (cannot tell); none from fewer than {MIN_PAIRS} "
        f"pairs or {MIN_REPETITIONS} repetitions."
        f"\n\n{markdown_table(HEADERS, rows)}\n\n{text}\n",
    )


if __name__ == "__main__":
    main()
