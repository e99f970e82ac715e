"""The host's slow spells: which probe sees them, next to a runtime that suffers them.

On a virtual machine the host can slow the machine for seconds with nothing inside it to show
it (no steal time, no run delay, no other process). A probe that saw the spells could leave
out the timings taken in them. This benchmark runs ONNX Runtime's MobileNetV2 (sepconv's,
random weights, batch 1, 224x224, on ``--threads`` threads) in a loop for ``--seconds``; each
step times ``CALLS`` calls (their median is the step's model time), pauses ``RUNTIME_SETTLE_S``
so that ONNX Runtime's spinning threads leave the cores, times three probes (each the median of
three runs of about a millisecond, so that a slowdown inside a run shows), and pauses again
before the next step, so that the probes' threads leave the cores too:

- *SHA-256 on CPU k*: hashing a 128 KiB buffer (in cache) 16 times on one core, the thread
  pinned to it; single-threaded work at the core's own speed.
- *copy 16 MiB*: a memory-bound copy (NumPy), one thread.
- *N-thread matmul*: four 192x192 products on PyTorch's intra-op threads: work spread over the
  cores, which waits for the slowest.

Reported: each probe's correlation with the model time (of their logarithms, over all steps),
the steps in a spell (model time above ``SPELL`` times its 10th percentile) and each probe's
median inside and outside the spells, and every step (JSON).

Run:
    .venv/bin/python benchmarks/host_spells.py [--seconds 180] [--threads 2]
    .venv/bin/python benchmarks/host_spells.py --smoke   # MobileNetV1-0.25 at 64x64, 5 s

Writes results/benchmarks/host_spells.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from peers import Runner, plain_onnxruntime

import sepconv
from sepconv.bench.output import markdown_table
from sepconv.bench.timing import RUNTIME_SETTLE_S

CALLS = 10  # model calls per step
SPELL = 1.25  # a step in a spell: model time over its 10th percentile above this
HEADERS = ["probe", "correlation with model time", "median in spells", "median outside", "ratio"]


def median_run_s(fn: Callable[[], object], runs: int = 3) -> float:
    """The median time of ``runs`` runs of ``fn``."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def probes(threads: int) -> dict[str, Callable[[], float]]:
    """Each probe by name: a function giving its time now (s)."""
    buffer = bytes(range(256)) * 512
    source = np.ones(4 << 20, dtype=np.float32)
    target = np.empty_like(source)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(192, 192, generator=generator) for _ in range(2))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def hashing() -> None:
        for _ in range(16):
            hashlib.sha256(buffer).digest()

    def pinned(cpu: int) -> float:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            return median_run_s(hashing)
        finally:
            os.sched_setaffinity(0, before)

    def matmul() -> float:
        torch.set_num_threads(threads)
        return median_run_s(lambda: [torch.mm(a, b) for _ in range(4)])

    found: dict[str, Callable[[], float]] = {
        f"SHA-256 on CPU {cpu}": (lambda cpu=cpu: pinned(cpu)) for cpu in cpus
    }
    found["copy 16 MiB"] = lambda: median_run_s(lambda: np.copyto(target, source))
    found[f"{threads}-thread matmul"] = matmul
    return found


def run_steps(
    runner: Runner, x: torch.Tensor, named: dict[str, Callable[[], float]], seconds: float
) -> list[dict[str, float]]:
    """Steps for ``seconds``: each the model's median ms over :data:`CALLS` calls, then every
    probe's ms, each after a pause."""
    for _ in range(20):
        runner(x)
    steps = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            runner(x)
            times.append(time.perf_counter() - start)
        step = {"t_s": time.perf_counter() - began, "model_ms": 1e3 * float(np.median(times))}
        time.sleep(RUNTIME_SETTLE_S)
        step.update({probe: 1e3 * fn() for probe, fn in named.items()})
        steps.append(step)
        time.sleep(RUNTIME_SETTLE_S)
    return steps


def split_median(values: np.ndarray, spell: np.ndarray) -> tuple[float, float]:
    """The median of ``values`` in the spell steps and outside them (NaN where none)."""
    inside = float(np.median(values[spell])) if spell.any() else float("nan")
    outside = float(np.median(values[~spell])) if (~spell).any() else float("nan")
    return inside, outside


def ratio(inside: float, outside: float) -> str:
    return f"{inside / outside:.2f}"


def summarise(steps: list[dict[str, float]], names: list[str]) -> tuple[dict[str, Any], list]:
    """Per probe: its correlation with the model time and its medians in and out of the
    spells; and the table's rows (the model's first)."""
    model_ms = np.array([s["model_ms"] for s in steps])
    spell = model_ms > SPELL * np.percentile(model_ms, 10)
    inside, outside = split_median(model_ms, spell)
    rows = [
        ["model (ONNX Runtime)", "1.00", f"{inside:.3f}", f"{outside:.3f}", ratio(inside, outside)]
    ]
    summary: dict[str, Any] = {"steps_in_spells": int(spell.sum()), "probes": {}}
    for probe in names:
        values = np.array([s[probe] for s in steps])
        ok = len(steps) > 2 and np.ptp(values) > 0
        correlation = float(np.corrcoef(np.log(model_ms), np.log(values))[0, 1]) if ok else 0.0
        p_in, p_out = split_median(values, spell)
        summary["probes"][probe] = {
            "correlation": correlation,
            "median_in_spells_ms": p_in,
            "median_outside_ms": p_out,
        }
        rows.append(
            [probe, f"{correlation:.2f}", f"{p_in:.4f}", f"{p_out:.4f}", ratio(p_in, p_out)]
        )
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_int, default=180)
    parser.add_argument("--threads", type=positive_int, default=2)
    add_smoke_flag(parser, "MobileNetV1-0.25 at 64x64, 5 s")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)  # keeps freed memory, as every benchmark does
    name, side, seconds = (
        ("mobilenet_v1_025", 64, 5) if args.smoke else ("mobilenet_v2", 224, args.seconds)
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = sepconv.create_model(name).eval()
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    named = probes(args.threads)
    with tempfile.TemporaryDirectory(prefix="sepconv-spells-") as tmp:
        runner = plain_onnxruntime(model, Path(tmp), args.threads, x)
        steps = run_steps(runner, x, named, seconds)
    summary, rows = summarise(steps, list(named))
    data = {
        **run.record(args.threads),
        "model": name,
        "input_shape": [1, 3, side, side],
        "seconds": seconds,
        **summary,
        "steps": steps,
    }
    text = (
        f"{len(steps)} steps over {seconds} s, {summary['steps_in_spells']} of them in a spell "
        f"(model time above {SPELL}x its 10th percentile)."
    )
    print(text)
    print(markdown_table(HEADERS, rows))
    run.write(
        data,
        header("The host's slow spells, and the probes that see them", data)
        + f"\n\nONNX Runtime, sepconv {name} (random weights), batch 1, {side}x{side}, "
        f"{args.threads} thread(s); each step: the median of {CALLS} calls, a "
        f"{RUNTIME_SETTLE_S} s pause, then each probe (median of 3 runs, ms), and another "
        f"pause. {text}\n\n{markdown_table(HEADERS, rows)}\n",
    )


if __name__ == "__main__":
    main()
