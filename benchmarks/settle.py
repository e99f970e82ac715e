"""Does timing one runtime right after another need a pause? OpenVINO timed after ONNX Runtime.

sepconv's MobileNetV1 (random init) at batch 1, 224x224, is built on three backends with
``compile_for_inference``: ONNX Runtime, eager PyTorch and OpenVINO. In each round the OpenVINO
model is timed right after a block of ONNX Runtime calls, and right after a block of eager
calls, once with ``settle_s=0`` and once with ``settle_s=RUNTIME_SETTLE_S`` (the pause sepconv's
``auto`` and ``benchmarks/inference.py`` use). ONNX Runtime's intra-op worker threads keep
spinning for a while after a call; if they still hold the cores, the OpenVINO time after ONNX
Runtime is higher than after eager. Medians over ``--rounds`` rounds of 5 timed blocks.

Run:
    .venv/bin/python benchmarks/settle.py [--threads 2] [--rounds 4] [--precision bf16]

Writes results/benchmarks/settle.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import sepconv
from sepconv.bench.output import markdown_environment, markdown_table
from sepconv.bench.timing import RUNTIME_SETTLE_S, bf16_native, environment, measure
from sepconv.deploy import compile_for_inference
from sepconv.deploy.runtime import Precision
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
SIZE = (3, 224, 224)
HEADERS = ["OpenVINO timed after", "settle s", "median ms", "IQR ms", "vs after eager"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    default_precision = "bf16" if bf16_native() else "fp32"
    parser.add_argument("--precision", choices=get_args(Precision), default=default_precision)
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/settle.py", *sys.argv[1:]])
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = sepconv.create_model("mobilenet_v1").eval()
    x = torch.randn(1, *SIZE, generator=torch.Generator().manual_seed(1))
    build = functools.partial(compile_for_inference, model, input_size=SIZE, threads=args.threads)
    before = {"ONNX Runtime": build(backend="onnxruntime"), "eager": build(backend="eager")}
    openvino = build(backend="openvino", precision=args.precision)

    settles = (0.0, RUNTIME_SETTLE_S)
    samples: dict[tuple[str, float], list[float]] = {
        (name, s): [] for s in settles for name in before
    }
    for _ in range(args.rounds):
        for settle in settles:
            for name, previous in before.items():
                measure(functools.partial(previous, x), warmup=2, repeats=5, threads=args.threads)
                timing = measure(
                    functools.partial(openvino, x),
                    warmup=2,
                    repeats=5,
                    threads=args.threads,
                    settle_s=settle,
                )
                samples[(name, settle)].extend(timing.samples_s)

    medians = {key: float(np.median(s)) * 1e3 for key, s in samples.items()}
    rows = []
    for (name, settle), s in samples.items():
        q1, q3 = np.percentile(s, [25, 75]) * 1e3
        ratio = medians[(name, settle)] / medians[("eager", settle)]
        rows.append([name, f"{settle:g}", f"{medians[(name, settle)]:.2f}", f"{q3 - q1:.2f}",
                     f"{ratio:.2f}x"])  # fmt: skip

    table = Table(
        title=f"OpenVINO MobileNetV1 ({openvino.precision}), batch 1, {args.threads} threads"
    )
    for h in HEADERS:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)

    env = environment(args.threads)
    write_json(
        RESULTS / "settle.json",
        {
            "command": command,
            "environment": env,
            "openvino_precision": openvino.precision,
            "median_ms": {f"after {n}, settle {s:g} s": v for (n, s), v in medians.items()},
        },
    )
    write_text(
        RESULTS / "settle.md",
        "# OpenVINO timed right after ONNX Runtime, with and without a pause\n\n"
        f"{markdown_environment(env, command)}\n\n"
        f"sepconv MobileNetV1, random weights, batch 1, 224x224; OpenVINO in "
        f"{openvino.precision}. Each round times a block of the previous backend, then "
        f"OpenVINO; {args.rounds} rounds x 5 timed blocks. *vs after eager*: the OpenVINO time "
        "over its time after eager PyTorch at the same pause.\n\n"
        f"{markdown_table(HEADERS, rows)}\n",
    )


if __name__ == "__main__":
    main()
