"""Inference latency side by side: PyTorch eager, torch.compile, ONNX Runtime, OpenVINO, sepconv's
inference path, and int8 ONNX Runtime / OpenVINO, at batch 1, 224x224, on the CPU.

For MobileNetV1, MobileNetV2, EfficientNet-B0 and ResNet-50, a randomly initialised torchvision
or timm model provides the weights and the sepconv model of the same architecture loads them,
so every row computes the same function (outputs are compared); all rows of a model are timed
in interleaved rounds (``peers.interleaved``). The rows, the ratio each sepconv row is judged by
(``inference_ratios.py``) and why the benchmark is set up as it is are described in
results/benchmarks/README.md.

``--reruns N`` runs the whole benchmark N times, each in a fresh process with the same
arguments, and reports every rerun's ratios with their median and worst; the single-run tables
are the last rerun's, and every rerun's data is kept in the JSON. ``--self-control`` also times
a second session of each plain fp32 runtime: the runtime against itself.

Run:
    .venv/bin/python benchmarks/inference.py [--threads 2] [--no-compile] [--no-int8] [--reruns 3]
    .venv/bin/python benchmarks/inference.py --smoke   # 2 models at 64x64, about a minute each

Writes results/benchmarks/inference.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort
import openvino as ov
import timm
import torch
import torchvision
from harness import Run, add_output_flags, add_smoke_flag, positive_int, rerun
from inference_profile import F32_ROW, INT8_ROW, openvino_profile
from inference_ratios import (
    INT8_CROSS_ROW,
    OV_DEFAULT_ROW,
    REFERENCE_ROWS,
    SECOND_SESSION_ROWS,
    SEPCONV_BF16_ROW,
    SEPCONV_ROW,
    current_names,
    over_reruns,
)
from inference_report import report
from peers import Runner, eager, interleaved, plain_onnxruntime, plain_openvino
from torch import nn

import sepconv
from sepconv.bench.roofline import measure_peak_gflops
from sepconv.bench.timing import bf16_native
from sepconv.data import load_fashion_mnist
from sepconv.deploy import compile_for_inference, load_onnx, prepare_images, quantize
from sepconv.deploy.onnx_check import relative_error
from sepconv.deploy.runtime import Precision
from sepconv.train import update_bn_statistics

# sepconv name -> (library, its name for the same architecture)
MODELS: dict[str, tuple[str, str]] = {
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "resnet50": ("torchvision", "resnet50"),
}
SIZE = (3, 224, 224)
SMOKE_SIZE = (3, 64, 64)
SMOKE_MODELS = ("mobilenet_v1", "mobilenet_v2")


def reference_model(library: str, name: str) -> nn.Module:
    if library == "timm":
        return timm.create_model(name, pretrained=False).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


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
    """Build every row of one model, check it against the reference, time them all."""
    library, ref_name = MODELS[name]
    torch.manual_seed(0)
    reference = update_bn_statistics(reference_model(library, ref_name), calib.split(8))
    model = sepconv.load_weights(sepconv.create_model(name), reference.state_dict()).eval()
    with torch.inference_mode():
        expected = reference(x)
    size = tuple(x.shape[1:])
    rows: dict[str, Runner] = {f"{library} eager": eager(reference), "sepconv eager": eager(model)}
    build_s: dict[str, float] = {}
    extra: dict[str, Any] = {}

    def built(row: str, start: float) -> None:
        build_s[row] = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        if args.compile:
            rows["torch.compile"] = compile_for_inference(
                model, backend="compile", input_size=size, threads=args.threads, example=x
            )
            built("torch.compile", start)
        start = time.perf_counter()
        rows[REFERENCE_ROWS[0]] = plain_onnxruntime(reference, folder, args.threads, x)
        built(REFERENCE_ROWS[0], start)
        for row, f32 in ((REFERENCE_ROWS[1], True), (OV_DEFAULT_ROW, False)):
            start = time.perf_counter()
            rows[row], precision = plain_openvino(reference, x, args.threads, f32)
            built(row, start)
            extra.setdefault("openvino_precision", {})[row] = precision
        if args.self_control:
            second = folder / "second"
            second.mkdir()
            ort_second, ov_second = SECOND_SESSION_ROWS.values()
            rows[ort_second] = plain_onnxruntime(reference, second, args.threads, x)
            rows[ov_second] = plain_openvino(reference, x, args.threads, True)[0]
        auto_rows: list[tuple[str, Precision]] = [(SEPCONV_ROW, "fp32")]
        if bf16_native():
            auto_rows.append((SEPCONV_BF16_ROW, "bf16"))
        for row, precision in auto_rows:
            start = time.perf_counter()
            auto = compile_for_inference(
                model, input_size=size, threads=args.threads, precision=precision, example=x
            )
            rows[row] = auto
            built(row, start)
            extra.setdefault("auto", {})[row] = {
                "backend": auto.backend,
                "precision": auto.precision,
                "timings_ms": dict(auto.timings),
            }
        if args.int8:
            for row, backend, quantizer in (
                ("int8 ONNX Runtime", "onnxruntime", "onnxruntime"),
                (INT8_ROW, "openvino", "nncf"),
            ):
                start = time.perf_counter()
                path = folder / f"int8.{backend}.onnx"
                rows[row] = quantize(
                    model, calib, path, num_samples=len(calib), backend=backend,
                    quantizer=quantizer, threads=args.threads,
                )  # fmt: skip
                built(row, start)
                extra.setdefault("int8_file_bytes", {})[row] = path.stat().st_size
            rows[INT8_CROSS_ROW] = load_onnx(
                folder / "int8.onnxruntime.onnx", backend="openvino", threads=args.threads
            )
            f32_graph = ov.convert_model(copy.deepcopy(reference), example_input=x)
            int8_graph = ov.Core().read_model(str(folder / "int8.openvino.onnx"))
            extra["openvino_profile_ms"] = {
                F32_ROW: openvino_profile(f32_graph, x, args.threads, f32=True),
                INT8_ROW: openvino_profile(int8_graph, x, args.threads, f32=False),
            }

    errors = {row: relative_error(fn(x), expected) for row, fn in rows.items()}
    timings = interleaved(rows, x, rounds=args.rounds, repeats=args.repeats, threads=args.threads)
    return {
        "model": name,
        "reference": f"{library} {ref_name}",
        "macs": sepconv.analyze(model, tuple(x.shape)).macs,
        "rows": {
            row: {**timings[row].to_dict(), "max_rel_error_vs_reference": errors[row]}
            for row in rows
        },
        "build_s": build_s,
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
