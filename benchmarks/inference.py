"""Inference latency side by side: PyTorch eager, torch.compile, ONNX Runtime, OpenVINO, sepconv's
inference path, and int8 ONNX Runtime / OpenVINO, at batch 1, 224x224, on the CPU.

For MobileNetV1, MobileNetV2, EfficientNet-B0 and ResNet-50, a randomly initialised torchvision
or timm model provides the weights and the sepconv model of the same architecture loads them,
so every row computes the same function (outputs are compared). Each row of a model is built
and timed in a process of its own, the rows taking turns in interleaved rounds
(``turns.apart``). The rows, the ratio each sepconv row is judged by
(``inference_ratios.py``) and why the benchmark is set up as it is are described in
results/benchmarks/README.md.

``--reruns N`` runs the whole benchmark N times, each in a fresh process with the same
arguments, and reports every rerun's ratios with their median and worst; the single-run tables
are the last rerun's, and every rerun's data is kept in the JSON. ``--self-control`` also times
a second session of each plain fp32 runtime: the runtime against itself.

Run:
    .venv/bin/python benchmarks/inference.py [--threads 2] [--no-compile] [--no-int8] [--reruns 3]
    .venv/bin/python benchmarks/inference.py --smoke   # 2 models at 64x64, a few minutes

Writes results/benchmarks/inference.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

import onnxruntime as ort
import openvino as ov
import timm
import torch
import torchvision
from harness import Run, add_output_flags, add_smoke_flag, positive_int, rerun
from inference_ratios import (
    INT8_CROSS_ROW,
    INT8_ORT_ROW,
    current_names,
    over_reruns,
)
from inference_report import report
from inference_rows import MODELS, reference_pair, row_names, setup
from turns import METHOD, apart, overall_max

import sepconv
from sepconv.bench.roofline import measure_peak_gflops
from sepconv.data import load_fashion_mnist
from sepconv.deploy import prepare_images
from sepconv.deploy.onnx_check import relative_error

SIZE = (3, 224, 224)
SMOKE_SIZE = (3, 64, 64)
SMOKE_MODELS = ("mobilenet_v1", "mobilenet_v2")


def real_images(count: int, size: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
    """``count + 1`` real images of ``size`` (calibration, then the held-out timed input), and
    what they are."""
    try:
        test = load_fashion_mnist("test")
    except FileNotFoundError:
        noise = torch.randn(count + 1, *size, generator=torch.Generator().manual_seed(0))
        return noise, f"{count} standard-normal images (Fashion-MNIST not found)"
    grey = test.images[: count + 1]
    images = prepare_images(grey.expand(-1, 3, -1, -1).contiguous(), input_size=size)
    return images, (
        f"{count} Fashion-MNIST test images, resized to {size[1]}x{size[2]}, grey repeated x3"
    )


def bench_model(
    name: str, args: argparse.Namespace, calib: torch.Tensor, x: torch.Tensor
) -> dict[str, Any]:
    """Every row of one model, each built and timed in its own process (``turns.apart``), its
    output checked against the reference's."""
    library, ref_name = MODELS[name]
    reference, model = reference_pair(name, calib)
    with torch.inference_mode():
        expected = reference(x)
    settings = {
        "model": name, "threads": args.threads, "repeats": args.repeats, "x": x, "calib": calib,
    }  # fmt: skip
    timed = apart(row_names(name, args), settings, setup, rounds=args.rounds)
    extra: dict[str, Any] = {}
    if args.int8:  # each row's process quantized the file itself: the same bytes?
        digests = {timed[row].info["int8_file_sha256"] for row in (INT8_CROSS_ROW, INT8_ORT_ROW)}
        extra["int8_cross_same_file"] = len(digests) == 1
        if len(digests) > 1:
            print(f"{name}: the {INT8_CROSS_ROW} row quantized a file that differs from the "
                  f"{INT8_ORT_ROW} row's (seeded calibration, another process)")  # fmt: skip
    for row, t in timed.items():
        for key, value in t.info.items():
            if key == "openvino_profile_ms":
                extra[key] = value
            else:
                extra.setdefault(key, {})[row] = value
    return {
        "model": name,
        "reference": f"{library} {ref_name}",
        "macs": sepconv.analyze(model, tuple(x.shape)).macs,
        "rows": {
            row: {
                **t.timing.to_dict(),
                "max_rel_error_vs_reference": relative_error(t.output, expected),
                "waiting_cpu_share": t.waiting_cpu_share,
            }
            for row, t in timed.items()
        },
        **extra,
    }


def measure_all(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """One run of the benchmark in this process: the data of OUT.json."""
    torch.set_num_threads(args.threads)
    # A ceiling is a maximum: measured before and after the models, the higher one is kept.
    peak_size = 512 if args.smoke else 2048
    peak_start, _ = measure_peak_gflops(size=peak_size, threads=args.threads)
    images, calib_text = real_images(args.calib_samples, args.size)
    calib, x = images[:-1], images[-1:]
    results = []
    for name in args.models:
        print(f"{name} ...", flush=True)
        results.append(bench_model(name, args, calib, x))
    peak_end, _ = measure_peak_gflops(size=peak_size, threads=args.threads)
    return {
        **run.record(args.threads),
        "versions": {
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "onnxruntime": ort.__version__,
            "openvino": ov.__version__,
            "sepconv": sepconv.__version__,
        },
        "input_shape": [1, *args.size],
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "timing_method": METHOD,
        "waiting_cpu_share_max": overall_max(
            [row["waiting_cpu_share"] for m in results for row in m["rows"].values()]
        ),
        "matmul_peak_gflops": max(peak_start, peak_end),
        "matmul_peak_gflops_start_end": [peak_start, peak_end],
        "matmul_peak_size": peak_size,
        "calibration": calib_text,
        "models": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed blocks per round")
    parser.add_argument("--calib-samples", type=positive_int, default=32)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument(
        "--self-control", action="store_true",
        help="also time a second session of each plain fp32 runtime, and report the faster "
        "one's second session over the best plain fp32 runtime (the runtime against itself: "
        "the noise floor of sepconv's fp32 ratio)",
    )  # fmt: skip
    parser.add_argument(
        "--reruns", type=positive_int, default=1,
        help="run the benchmark this many times, each in a fresh process, and report every "
        "rerun's ratios with their median and worst",
    )  # fmt: skip
    add_smoke_flag(
        parser,
        f"{' and '.join(SMOKE_MODELS)} at {SMOKE_SIZE[1]}x{SMOKE_SIZE[2]}, 1 round, "
        "4 calibration images, no torch.compile",
    )
    add_output_flags(parser, report_only=True)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.report_only:
        report(current_names(run.read()), run)
        return
    args.size = SMOKE_SIZE if args.smoke else SIZE
    if args.smoke:
        args.rounds, args.repeats, args.calib_samples, args.compile = 1, 3, 4, False
    args.models = args.models or list(SMOKE_MODELS if args.smoke else MODELS)
    if args.reruns == 1:
        data = measure_all(args, run)
    else:
        folder = run.folder / f"{run.name}_runs"
        runs = rerun(__file__, args.reruns, folder)
        summary = {"count": args.reruns, "ratios": over_reruns(runs), "runs": runs}
        data = {**runs[-1], "command": run.command, "reruns": summary}
    run.write_json(data)
    report(data, run)
    if args.reruns > 1:  # every run's data is in OUT.json now
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
