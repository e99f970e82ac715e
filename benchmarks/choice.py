"""How often does ``backend="auto"`` choose a backend within 3% of the fastest, build after build?

For every model (default: MobileNetV1, MobileNetV2, EfficientNet-B0, ResNet-50, randomly
initialised with BatchNorm statistics measured on random images, batch 1, 224x224), the
candidates of ``compile_for_inference(backend="auto")`` are built once (eager PyTorch, ONNX
Runtime, OpenVINO), and their race (``sepconv.deploy.choose.keep_fastest``, its rule unchanged)
is run ``--builds`` times at each of two lengths, alternating so that both see the same machine:

- ``5 rounds``: sepconv's (``CHOICE_ROUNDS``);
- ``20 rounds``: four times as long, to see whether a longer race chooses better.

The reference for "fastest" is each candidate's median over all races of both lengths (each
race reports one median per candidate; eager, far behind, is timed in round one only).
*within 3%*: races whose winner's reference median is at most 1.03 times the fastest one's.
*OV/ORT per race*: the range of the ratio of OpenVINO's median to ONNX Runtime's over the races.
*race s*: median wall time of one race, which ``compile_for_inference`` adds to a build.

Run:
    .venv/bin/python benchmarks/choice.py [--threads 2] [--builds 10] [--models a,b]
    .venv/bin/python benchmarks/choice.py --smoke   # a small model at 64x64, 1 build

Writes results/benchmarks/choice.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from rich.console import Console

import sepconv
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.deploy import compile_for_inference
from sepconv.deploy.choose import CHOICE_ROUNDS, keep_fastest
from sepconv.deploy.runtime import AUTO_BACKENDS
from sepconv.train import update_bn_statistics

MODELS = ("mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "resnet50")
SMOKE_MODELS = ("mobilenet_v1_025",)
LENGTHS = {f"{CHOICE_ROUNDS} rounds": CHOICE_ROUNDS, "20 rounds": 20}  # race length -> rounds
TOLERANCE = 0.03
HEADERS = [
    "model", "fastest (ms)", "others (ms)", "race", "chosen", "within 3%", "OV/ORT per race",
    "race s",
]  # fmt: skip


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    size = (3, args.size, args.size)
    torch.manual_seed(0)
    images = torch.randn(16, *size, generator=torch.Generator().manual_seed(1))
    model = update_bn_statistics(sepconv.create_model(name), images.split(8))
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(2))
    built = {
        backend: compile_for_inference(
            model, backend=backend, input_size=size, threads=args.threads, example=x
        )
        for backend in AUTO_BACKENDS
    }
    races: list[dict[str, Any]] = []
    for build in range(args.builds):
        for length, rounds in LENGTHS.items():
            started = time.perf_counter()
            # A copy: keep_fastest empties what it is given (the candidates outlive the race).
            race = keep_fastest(dict(built), x, args.threads, rounds=rounds)
            seconds = time.perf_counter() - started
            races.append({"build": build, "length": length, "chosen": race.winner.backend,
                          "medians_ms": race.timings, "seconds": seconds,
                          "busy_share": race.busy_share})  # fmt: skip
    del built, race
    reference = {
        backend: float(np.median([race["medians_ms"][backend] for race in races]))
        for backend in AUTO_BACKENDS
    }
    fastest = min(reference, key=reference.__getitem__)
    lengths = {}
    for length in LENGTHS:
        mine = [race for race in races if race["length"] == length]
        ok = [r for r in mine if reference[r["chosen"]] <= (1 + TOLERANCE) * reference[fastest]]
        lengths[length] = {
            "chosen": dict(Counter(race["chosen"] for race in mine)),
            "within_tolerance": len(ok),
            "races": len(mine),
            "median_race_s": float(np.median([race["seconds"] for race in mine])),
            "openvino_over_onnxruntime": [
                race["medians_ms"]["openvino"] / race["medians_ms"]["onnxruntime"] for race in mine
            ],
        }
    return {"model": name, "reference_ms": reference, "fastest": fastest, "lengths": lengths,
            "races": races}  # fmt: skip


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for result in results:
        ref, fastest = result["reference_ms"], result["fastest"]
        others = ", ".join(
            f"{b} {ms:.2f} ({ms / ref[fastest]:.3f}x)" for b, ms in ref.items() if b != fastest
        )
        for length, stats in result["lengths"].items():
            chosen = ", ".join(f"{n}x {b}" for b, n in sorted(stats["chosen"].items()))
            ratios = stats["openvino_over_onnxruntime"]
            rows.append(
                [result["model"], f"{fastest} {ref[fastest]:.2f}", others, length, chosen,
                 f"{stats['within_tolerance']}/{stats['races']}",
                 f"{min(ratios):.2f}-{max(ratios):.2f}",
                 f"{stats['median_race_s']:.1f}"]
            )  # fmt: skip
    return rows


def report(data: dict[str, Any], run: Run) -> None:
    rows = table_rows(data["models"])
    Console().print(terminal_table("backend='auto': repeated choices", HEADERS, rows))
    text = (
        header("backend='auto': how often repeated builds choose within 3% of the fastest", data)
        + f"\n\nBatch {data['input_shape'][0]}, {data['input_shape'][2]}x"
        f"{data['input_shape'][3]}; {data['builds']} races per length per model, the lengths "
        "alternating; the race lengths, the reference medians and the columns are defined in the "
        "docstring of `benchmarks/choice.py`. *others*: the other candidates' reference medians "
        "and their ratio to the fastest's.\n\n"
        + markdown_table(HEADERS, rows)
        + f"\n\n{clock_line(data)}\n"
    )
    run.write(data, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument(
        "--builds", type=positive_int, default=10, help="races per length per model"
    )
    parser.add_argument(
        "--models", type=lambda s: s.split(","), default=None,
        help=f"comma-separated registry names (default: {','.join(MODELS)})",
    )  # fmt: skip
    add_smoke_flag(parser, "a small model at 64x64, 1 build")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    args.size = 64 if args.smoke else 224
    if args.smoke:
        args.models = args.models or list(SMOKE_MODELS)
        args.builds = 1
    models = args.models or list(MODELS)
    unknown = [m for m in models if m not in sepconv.list_models()]
    if unknown:
        parser.error(f"--models: unknown model(s) {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    results = []
    for name in models:
        print(f"{name} ...", flush=True)
        results.append(bench_model(name, args))
    data = {
        **run.record(args.threads),
        "input_shape": [1, 3, args.size, args.size],
        "threads": args.threads,
        "builds": args.builds,
        "lengths": {length: {"rounds": rounds} for length, rounds in LENGTHS.items()},
        "tolerance": TOLERANCE,
        "models": results,
    }
    report(data, run)


if __name__ == "__main__":
    main()
