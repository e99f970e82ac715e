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
    .venv/bin/python benchmarks/settle.py --smoke   # MobileNetV1-0.25 at 64x64, 1 round

Writes results/benchmarks/settle.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import functools
from typing import get_args

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console

import sepconv
from sepconv.bench import measure
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.timing import RUNTIME_SETTLE_S, bf16_native
from sepconv.deploy import compile_for_inference
from sepconv.deploy.runtime import Precision

HEADERS = ["OpenVINO timed after", "settle s", "median ms", "IQR ms", "vs after eager"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--rounds", type=positive_int, default=4)
    default_precision = "bf16" if bf16_native() else "fp32"
    parser.add_argument("--precision", choices=get_args(Precision), default=default_precision)
    add_smoke_flag(parser, "MobileNetV1-0.25 at 64x64, 1 round")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    name, side = ("mobilenet_v1_025", 64) if args.smoke else ("mobilenet_v1", 224)
    size = (3, side, side)
    rounds = 1 if args.smoke else args.rounds
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = sepconv.create_model(name).eval()
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(1))
    build = functools.partial(compile_for_inference, model, input_size=size, threads=args.threads)
    before = {"ONNX Runtime": build(backend="onnxruntime"), "eager": build(backend="eager")}
    openvino = build(backend="openvino", precision=args.precision)

    settles = (0.0, RUNTIME_SETTLE_S)
    samples: dict[tuple[str, float], list[float]] = {
        (previous_name, s): [] for s in settles for previous_name in before
    }
    for _ in range(rounds):
        for settle in settles:
            for previous_name, previous in before.items():
                measure(functools.partial(previous, x), warmup=2, repeats=5, threads=args.threads)
                timing = measure(
                    functools.partial(openvino, x),
                    warmup=2,
                    repeats=5,
                    threads=args.threads,
                    settle_s=settle,
                )
                samples[(previous_name, settle)].extend(timing.samples_s)

    medians = {key: float(np.median(s)) * 1e3 for key, s in samples.items()}
    rows = []
    for (previous_name, settle), s in samples.items():
        q1, q3 = np.percentile(s, [25, 75]) * 1e3
        median = medians[(previous_name, settle)]
        ratio = median / medians[("eager", settle)]
        rows.append([previous_name, f"{settle:g}", f"{median:.2f}", f"{q3 - q1:.2f}",
                     f"{ratio:.2f}x"])  # fmt: skip

    title = f"OpenVINO {name} ({openvino.precision}), batch 1, {args.threads} threads"
    Console(width=120).print(terminal_table(title, HEADERS, rows))
    data = {
        **run.record(args.threads),
        "model": name,
        "input_shape": [1, *size],
        "openvino_precision": openvino.precision,
        "median_ms": {f"after {n}, settle {s:g} s": v for (n, s), v in medians.items()},
    }
    run.write(
        data,
        header("OpenVINO timed right after ONNX Runtime, with and without a pause", data)
        + f"\n\nsepconv {name}, random weights, batch 1, {side}x{side}; OpenVINO in "
        f"{openvino.precision}. Each round times a block of the previous backend, then "
        f"OpenVINO; {rounds} rounds x 5 timed blocks. *vs after eager*: the OpenVINO time "
        "over its time after eager PyTorch at the same pause.\n\n"
        f"{markdown_table(HEADERS, rows)}\n",
    )


if __name__ == "__main__":
    main()
