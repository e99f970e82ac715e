"""Inference latency side by side: PyTorch eager, torch.compile, ONNX Runtime, OpenVINO, sepconv's
inference path, and int8 ONNX Runtime / OpenVINO, at batch 1, 224x224, on the CPU.

For each model (MobileNetV1, MobileNetV2, EfficientNet-B0 and ResNet-50 for reference), one
randomly initialised torchvision / timm model provides the weights, and the sepconv model of the
same architecture loads them (``sepconv.load_weights``), so every row computes the same function
(outputs are compared). Its BatchNorm statistics are first measured on the calibration images
(``sepconv.train.update_bn_statistics``): with the initial running statistics (mean 0,
variance 1) a random network's activations shrink stage by stage, to outputs near 1e-14 for
EfficientNet-B0, a scale no trained network computes at, at which int8 calibration and
relative errors mean nothing. Every row is timed on one held-out real image. Rows:

- ``torchvision eager`` / ``timm eager``: the reference model as users run it, eval mode,
  ``inference_mode``, NCHW.
- ``sepconv eager``: the sepconv model, likewise.
- ``torch.compile``: ``compile_for_inference(backend="compile")``: inductor with freezing on the
  BatchNorm-folded model (compilation not timed).
- ``ONNX Runtime (plain)``: the reference model exported as is (``export_onnx(fold_bn=False)``,
  dynamic batch) in a default ``InferenceSession`` with only the thread count set.
- ``OpenVINO (plain, f32)``: ``openvino.convert_model`` on the reference PyTorch model, compiled
  for the CPU with only the thread count and f32 inference precision set. Without the latter,
  OpenVINO computes in bf16 on a CPU with native bf16, which is not an fp32 result:
- ``OpenVINO (plain, default)``: the same with only the thread count set; the precision OpenVINO
  chose is recorded (bf16 on a bf16-capable CPU, else f32).
- ``sepconv compile_for_inference``: ``backend="auto"``: the fastest of its eager, ONNX Runtime
  and OpenVINO backends on this machine (the one chosen is named), fp32.
- ``sepconv compile_for_inference (bf16)``: the same with ``precision="bf16"``, only on a CPU
  with native bf16; compared with the best plain row of any precision. A bf16 backend that
  differs from fp32 by more than ``BF16_RTOL`` is left out, so this row can end on fp32.
- ``int8 ONNX Runtime`` / ``int8 OpenVINO``: ``sepconv.deploy.quantize`` (static QDQ, per-channel
  weights) for each backend, by its own quantizer (ONNX Runtime's ``quantize_static``;
  ``quantizer="nncf"`` for OpenVINO), calibrated on Fashion-MNIST test images resized to
  224x224 and repeated to three channels: real images, though not ImageNet (the weights are
  random, so only speed is measured).
- ``int8 OpenVINO (ORT's file)``: OpenVINO running ONNX Runtime's int8 file, to show what the
  quantizer's placement of the int8 ops costs.
- ``ONNX Runtime (plain, twin)`` / ``OpenVINO (plain, f32, twin)`` (``--twins``): a second
  session of each plain fp32 runtime, built the same way. sepconv's fp32 path runs one of the two
  runtimes with their default settings, so the best it can do is what the faster runtime's twin
  does: the twin's time over the best plain fp32 runtime (*twin control*) is what the same
  runtime with the same settings measures against itself in that run, the noise floor of
  sepconv's fp32 ratio.

Where the time goes: OpenVINO's own per-layer counters (``PERF_COUNT``) for the f32 and the int8
(NNCF) model, summed by layer type and the precision it ran in, so that a missed int8 target
shows which layers int8 does not speed up.

All rows of a model are timed in interleaved rounds, the order changing from round to round
(``peers.interleaved``), so that load from other processes spreads over all of them, each after
a 0.1 s pause: ONNX Runtime's worker threads keep spinning after a call and slow the row timed
next (``benchmarks/settle.py``). MACs
are counted by ``sepconv.analyze``; the matmul peak is measured at the same thread count
(``sepconv.bench.roofline``).

Reruns: the choice ``compile_for_inference`` makes, and the plain runtimes' times, can differ
from one process to the next (thread placement, memory layout). ``--reruns N`` runs the whole
benchmark N times, each in a fresh process with the same arguments, and reports per model the
ratio of each sepconv row to its baseline (sepconv fp32 / best plain fp32 runtime, bf16 / best
plain runtime of any precision, int8 / best fp32 row) in every rerun, with their median and
worst; the single-run tables shown are the last rerun's, and every rerun's data is kept in the
JSON.

Run:
    .venv/bin/python benchmarks/inference.py [--threads 2] [--no-compile] [--no-int8] [--reruns 3]
    .venv/bin/python benchmarks/inference.py --smoke   # 2 models at 64x64, about a minute each

Writes results/benchmarks/inference.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
import timm
import torch
import torchvision
from peers import eager, interleaved, plain_onnxruntime, plain_openvino
from rich.console import Console
from rich.table import Table
from torch import nn

import sepconv
from sepconv.bench.output import markdown_environment, markdown_table, terminal_table
from sepconv.bench.roofline import measure_peak_gflops
from sepconv.bench.timing import bf16_native, environment
from sepconv.data import load_fashion_mnist
from sepconv.deploy import compile_for_inference, load_onnx, prepare_images, quantize
from sepconv.deploy.onnx import relative_error
from sepconv.deploy.runtime import Precision
from sepconv.train import update_bn_statistics
from sepconv.utils.files import write_json, write_text

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
RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
OV_DEFAULT_ROW = "OpenVINO (plain, default)"
REFERENCE_ROWS = ("ONNX Runtime (plain)", "OpenVINO (plain, f32)")  # the fp32 runtimes
SEPCONV_ROW = "sepconv compile_for_inference"
SEPCONV_BF16_ROW = "sepconv compile_for_inference (bf16)"
INT8_CROSS_ROW = "int8 OpenVINO (ORT's file)"
INT8_ROWS = ("int8 ONNX Runtime", "int8 OpenVINO", INT8_CROSS_ROW)
# Plain fp32 runtime -> its twin (``--twins``), and the ratio the twins give.
TWIN_ROWS = {row: row[:-1] + ", twin)" for row in REFERENCE_ROWS}
TWIN_CONTROL = "twin control"
RUNTIME_NAMES = dict(zip(REFERENCE_ROWS, ("onnxruntime", "openvino"), strict=True))


def reference_model(library: str, name: str) -> nn.Module:
    if library == "timm":
        return timm.create_model(name, pretrained=False).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def calibration_images(count: int, size: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
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


def openvino_profile(graph: Any, x: torch.Tensor, threads: int, f32: bool) -> dict[str, float]:
    """OpenVINO's per-layer times on ``x``, summed by ``"<layer type> <precision>"``, in ms
    (the median over 20 calls of each key's sum, after 10 warm-up calls)."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    request = ov.Core().compile_model(graph, "CPU", config).create_infer_request()
    calls: list[dict[str, float]] = []
    for call in range(30):
        request.infer({0: x.numpy()})
        if call < 10:
            continue
        sums: dict[str, float] = {}
        for layer in request.profiling_info:
            if layer.status == layer.Status.EXECUTED:
                key = f"{layer.node_type} {layer.exec_type.rsplit('_', 1)[-1].lower()}"
                sums[key] = sums.get(key, 0.0) + layer.real_time.total_seconds() * 1e3
        calls.append(sums)
    keys = sorted({k for sums in calls for k in sums})
    medians = {k: float(np.median([sums.get(k, 0.0) for sums in calls])) for k in keys}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def bench_model(
    name: str, args: argparse.Namespace, calib: torch.Tensor, x: torch.Tensor
) -> dict[str, Any]:
    library, ref_name = MODELS[name]
    torch.manual_seed(0)
    reference = update_bn_statistics(reference_model(library, ref_name), calib.split(8))
    model = sepconv.load_weights(sepconv.create_model(name), reference.state_dict()).eval()
    with torch.inference_mode():
        expected = reference(x)
    size = tuple(x.shape[1:])
    macs = sepconv.analyze(model, tuple(x.shape)).macs
    rows: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        f"{library} eager": eager(reference),
        "sepconv eager": eager(model),
    }
    build_s: dict[str, float] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sepconv-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        if args.compile:
            rows["torch.compile"] = compile_for_inference(
                model, backend="compile", input_size=size, threads=args.threads, example=x
            )
            build_s["torch.compile"] = time.perf_counter() - start
        start = time.perf_counter()
        rows["ONNX Runtime (plain)"] = plain_onnxruntime(reference, folder, args.threads, x)
        build_s["ONNX Runtime (plain)"] = time.perf_counter() - start
        for row, f32 in (("OpenVINO (plain, f32)", True), (OV_DEFAULT_ROW, False)):
            start = time.perf_counter()
            rows[row], precision = plain_openvino(reference, x, args.threads, f32)
            build_s[row] = time.perf_counter() - start
            extra.setdefault("openvino_precision", {})[row] = precision
        if args.twins:
            twin_folder = folder / "twin"
            twin_folder.mkdir()
            ort_twin, ov_twin = TWIN_ROWS.values()
            rows[ort_twin] = plain_onnxruntime(reference, twin_folder, args.threads, x)
            rows[ov_twin] = plain_openvino(reference, x, args.threads, True)[0]
        auto_rows: list[tuple[str, Precision]] = [(SEPCONV_ROW, "fp32")]
        if bf16_native():
            auto_rows.append((SEPCONV_BF16_ROW, "bf16"))
        for row, precision in auto_rows:
            start = time.perf_counter()
            auto = compile_for_inference(
                model, input_size=size, threads=args.threads, precision=precision, example=x
            )
            rows[row] = auto
            build_s[row] = time.perf_counter() - start
            extra.setdefault("auto", {})[row] = {
                "backend": auto.backend,
                "precision": auto.precision,
                "timings_ms": dict(auto.timings),
            }
        if args.int8:
            for row, backend, quantizer in (
                ("int8 ONNX Runtime", "onnxruntime", "onnxruntime"),
                ("int8 OpenVINO", "openvino", "nncf"),
            ):
                start = time.perf_counter()
                path = folder / f"int8.{backend}.onnx"
                rows[row] = quantize(
                    model,
                    calib,
                    path,
                    num_samples=len(calib),
                    backend=backend,
                    quantizer=quantizer,
                    threads=args.threads,
                )
                build_s[row] = time.perf_counter() - start
                extra.setdefault("int8_file_bytes", {})[row] = path.stat().st_size
            rows[INT8_CROSS_ROW] = load_onnx(
                folder / "int8.onnxruntime.onnx", backend="openvino", threads=args.threads
            )
            f32_graph = ov.convert_model(copy.deepcopy(reference), example_input=x)
            int8_graph = ov.Core().read_model(str(folder / "int8.openvino.onnx"))
            extra["openvino_profile_ms"] = {
                "OpenVINO (plain, f32)": openvino_profile(f32_graph, x, args.threads, f32=True),
                "int8 OpenVINO": openvino_profile(int8_graph, x, args.threads, f32=False),
            }

    errors = {row: relative_error(fn(x), expected) for row, fn in rows.items()}
    timings = interleaved(rows, x, rounds=args.rounds, repeats=args.repeats, threads=args.threads)
    return {
        "model": name,
        "reference": f"{library} {ref_name}",
        "macs": macs,
        "rows": {
            row: {**timings[row].to_dict(), "max_rel_error_vs_reference": errors[row]}
            for row in rows
        },
        "build_s": build_s,
        **extra,
    }


def precisions(result: dict[str, Any]) -> dict[str, str]:
    """Row -> what it computes in: fp32, bf16 or int8."""
    out = {}
    for row in result["rows"]:
        if row in INT8_ROWS:
            out[row] = "int8"
        elif row in result["auto"]:
            out[row] = result["auto"][row]["precision"]
        elif row in result["openvino_precision"]:
            out[row] = "bf16" if result["openvino_precision"][row] == "bf16" else "fp32"
        else:
            out[row] = "fp32"
    return out


def baselines(result: dict[str, Any]) -> dict[str, float]:
    """The medians each ratio is taken against: eager, best fp32 runtime, best plain runtime of
    any precision, best fp32 row."""
    ms = {row: r["median_ms"] for row, r in result["rows"].items()}
    kind = precisions(result)
    return {
        "eager": next(v for k, v in ms.items() if k.endswith(" eager") and k != "sepconv eager"),
        "fp32 runtime": min(ms[r] for r in REFERENCE_ROWS),
        "any runtime": min(ms[r] for r in (*REFERENCE_ROWS, OV_DEFAULT_ROW)),
        "fp32": min(v for k, v in ms.items() if kind[k] == "fp32" and k not in TWIN_ROWS.values()),
    }


# Row -> the baseline its ratio is taken against (a key of `baselines`) and how it is named.
RATIO_BASELINES = {
    SEPCONV_ROW: ("fp32 runtime", "best fp32 runtime"),
    TWIN_CONTROL: ("fp32 runtime", "best fp32 runtime"),  # not a row: see `ratios`
    SEPCONV_BF16_ROW: ("any runtime", "best plain runtime"),
    **{row: ("fp32", "best fp32") for row in INT8_ROWS},
}


def faster_plain(result: dict[str, Any]) -> str:
    """The plain fp32 runtime with the lower median in this run."""
    return min(REFERENCE_ROWS, key=lambda row: result["rows"][row]["median_ms"])


def chosen_backend(result: dict[str, Any], row: str) -> str | None:
    """The backend sepconv's ``row`` chose, or for `TWIN_CONTROL` the faster plain runtime."""
    if row == TWIN_CONTROL:
        return RUNTIME_NAMES[faster_plain(result)]
    return result["auto"][row]["backend"] if row in result["auto"] else None


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Row -> its median over its baseline's (`RATIO_BASELINES`), for the rows measured, and,
    with twins, `TWIN_CONTROL`: the faster plain runtime's twin over the best plain runtime."""
    base = baselines(result)
    out = {
        row: result["rows"][row]["median_ms"] / base[baseline]
        for row, (baseline, _) in RATIO_BASELINES.items()
        if row in result["rows"]
    }
    twin = TWIN_ROWS[faster_plain(result)]
    if twin in result["rows"]:
        out[TWIN_CONTROL] = result["rows"][twin]["median_ms"] / base["fp32 runtime"]
    return out


def summarise(result: dict[str, Any], peak_gmacs: float) -> list[list[str]]:
    base = baselines(result)
    kind = precisions(result)
    ratio = ratios(result)
    table = []
    for row, r in result["rows"].items():
        ms = r["median_ms"]
        gmacs = result["macs"] / 1e9 / (ms / 1e3)
        note = f"{ratio[row]:.2f} vs {RATIO_BASELINES[row][1]}" if row in ratio else ""
        if row in result["auto"]:
            note += f" ({result['auto'][row]['backend']})"
        table.append(
            [
                result["model"],
                row,
                kind[row],
                f"{ms:.2f}",
                f"{r['iqr_ms']:.2f}",
                f"{base['eager'] / ms:.2f}x",
                note,
                f"{gmacs:.1f}",
                f"{100 * gmacs / peak_gmacs:.0f}%",
                f"{r['max_rel_error_vs_reference']:.1e}",
            ]
        )
    return table


HEADERS = [
    "model",
    "backend",
    "precision",
    "median ms",
    "IQR ms",
    "speed-up vs eager",
    "ratio",
    "GMAC/s",
    "% of matmul peak",
    "rel. error",
]


def targets(results: list[dict[str, Any]], peak_gmacs: float) -> list[str]:
    """One line per model: the issue's targets, computed from the measurements."""
    lines = []
    for result in results:
        ms = {row: r["median_ms"] for row, r in result["rows"].items()}
        base = baselines(result)
        ratio = ms[SEPCONV_ROW] / base["fp32 runtime"]
        speedup = base["eager"] / ms[SEPCONV_ROW]
        eager_share = result["macs"] / 1e9 / (base["eager"] / 1e3) / peak_gmacs
        line = (
            f"- {result['model']}, fp32: sepconv path / best of (ONNX Runtime, OpenVINO f32) = "
            f"{ratio:.2f} (target <= 1.00: {'met' if ratio <= 1.0 else 'missed'}); speed-up over "
            f"{result['reference'].split()[0]} eager {speedup:.1f}x (target >= 3: "
            f"{'met' if speedup >= 3 else 'missed'}; eager runs at {100 * eager_share:.0f}% of "
            f"the matmul peak, so 3x means {300 * eager_share:.0f}% of it)"
        )
        twin = ratios(result).get(TWIN_CONTROL)
        if twin is not None:
            line += (
                f"; twin control (the faster plain runtime's second session) {twin:.2f} of the "
                "best plain fp32 runtime"
            )
        if SEPCONV_BF16_ROW in ms:
            bf16 = ms[SEPCONV_BF16_ROW]
            line += (
                f"; bf16 allowed: {bf16 / base['any runtime']:.2f} of the best plain runtime of "
                f"any precision, {base['eager'] / bf16:.1f}x over eager"
            )
        int8 = [ms[r] for r in INT8_ROWS if r in ms]
        if int8:
            gain = base["fp32"] / min(int8)
            line += (
                f"; best int8 {gain:.2f}x faster than best fp32 (target >= 2: "
                f"{'met' if gain >= 2 else 'missed'})"
            )
        lines.append(line)
    return lines


def profile_section(results: list[dict[str, Any]]) -> str:
    """Markdown: per model, OpenVINO's layer time by layer type and precision, f32 beside int8."""
    parts = [
        "## Where the time goes (OpenVINO's per-layer counters)\n\n"
        "Per model: the summed time of OpenVINO's CPU layers by layer type and the precision "
        "it ran in (`PERF_COUNT`, median over 20 calls, each model compiled once more for this), "
        "f32 model beside the int8 (NNCF) one. The layers' sum is below the call's latency "
        "(the rest is the runtime's own overhead). Convolution is the 1x1 and the dense convs, "
        "GroupConvolution the depthwise ones; ReduceMean and Multiply are squeeze-excite's pool "
        "and scaling in EfficientNet.\n"
    ]
    for result in results:
        profile = result.get("openvino_profile_ms")
        if not profile:
            continue
        f32, int8 = profile["OpenVINO (plain, f32)"], profile["int8 OpenVINO"]
        layers = sorted({k.split()[0] for k in (*f32, *int8)})

        def by_layer(sums: dict[str, float]) -> dict[str, tuple[float, str]]:
            out: dict[str, tuple[float, str]] = {}
            for key, ms in sums.items():
                layer, precision = key.split()
                total, names = out.get(layer, (0.0, ""))
                out[layer] = (total + ms, f"{names}, {precision}" if names else precision)
            return out

        a, b = by_layer(f32), by_layer(int8)
        rows = sorted(layers, key=lambda k: -a.get(k, (0.0, ""))[0])
        table = [
            [
                layer,
                f"{a.get(layer, (0.0, ''))[0]:.2f}",
                f"{b.get(layer, (0.0, ''))[0]:.2f}",
                b.get(layer, (0.0, "-"))[1],
                # a layer OpenVINO fused away in one model has no time of its own there
                f"{a[layer][0] / b[layer][0]:.2f}x"
                if a.get(layer, (0,))[0] and b.get(layer, (0,))[0]
                else "",
            ]
            for layer in rows
        ]
        f32_ms, int8_ms = sum(f32.values()), sum(int8.values())
        total_ratio = f"{f32_ms / int8_ms:.2f}x" if int8_ms else ""
        table.append(["total", f"{f32_ms:.2f}", f"{int8_ms:.2f}", "", total_ratio])
        parts.append(
            f"\n### {result['model']}\n\n"
            + markdown_table(["layer", "f32 ms", "int8 ms", "int8 run in", "f32 / int8"], table)
            + "\n"
        )
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per row per round")
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument(
        "--twins", action="store_true",
        help="also time a second session of each plain fp32 runtime, and report the faster "
        "one's twin over the best plain fp32 runtime (the noise floor of sepconv's fp32 ratio)",
    )  # fmt: skip
    parser.add_argument(
        "--reruns", type=int, default=1,
        help="run the benchmark this many times, each in a fresh process, and report every "
        "rerun's ratios with their median and worst",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true",
        help=f"{' and '.join(SMOKE_MODELS)} at {SMOKE_SIZE[1]}x{SMOKE_SIZE[2]}, 1 round, "
        "4 calibration images, no torch.compile: checks the script, measures nothing useful",
    )  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--out", default=None, help="writes OUT.{json,md} (default inference, inference_smoke)"
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="measure nothing: rewrite OUT.md (and print the table) from OUT.json",
    )  # fmt: skip
    args = parser.parse_args()
    if args.reruns < 1:
        parser.error(f"--reruns: expected a positive integer, received {args.reruns}")
    args.out = args.out or ("inference_smoke" if args.smoke else "inference")
    args.size = SMOKE_SIZE if args.smoke else SIZE
    if args.smoke:
        args.rounds, args.repeats, args.calib_samples, args.compile = 1, 3, 4, False
    args.models = args.models or list(SMOKE_MODELS if args.smoke else MODELS)
    json_path = args.results_dir / f"{args.out}.json"
    if args.report_only:
        report(json.loads(json_path.read_text(encoding="utf-8")), args.results_dir, args.out)
        return
    command = " ".join(["python", "benchmarks/inference.py", *sys.argv[1:]])
    data = rerun(args, command) if args.reruns > 1 else measure_all(args, command)
    write_json(json_path, data)
    report(data, args.results_dir, args.out)
    if args.reruns > 1:  # every run's data is in OUT.json now
        shutil.rmtree(args.results_dir / f"{args.out}_runs")


def measure_all(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """One run of the benchmark in this process: the data of OUT.json."""
    load_start, started = os.getloadavg(), time.perf_counter()
    torch.set_num_threads(args.threads)

    # A ceiling is a maximum: measured before and after the models, the higher one is kept.
    peak_size = 512 if args.smoke else 2048
    peak_start, _ = measure_peak_gflops(size=peak_size, threads=args.threads)
    images, calib_text = calibration_images(args.calib_samples, args.size)
    calib, x = images[:-1], images[-1:]
    results = []
    for name in args.models:
        print(f"{name} ...", flush=True)
        results.append(bench_model(name, args, calib, x))
    peak_end, _ = measure_peak_gflops(size=peak_size, threads=args.threads)
    load_end, elapsed = os.getloadavg(), time.perf_counter() - started
    return {
        "command": command,
        "environment": environment(args.threads),
        "versions": {
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "onnxruntime": ort.__version__,
            "openvino": ov.__version__,
            "sepconv": sepconv.__version__,
        },
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "elapsed_s": elapsed,
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


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--x v`` and ``--x=v``).

    Example:
        >>> without_options(["--reruns", "3", "--smoke", "--out=a"], ("--reruns", "--out"))
        ['--smoke']
    """
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg.split("=", 1)[0] in names:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return kept


def rerun(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run the benchmark ``args.reruns`` times in fresh processes (same arguments): the last
    run's data, plus ``"reruns"`` with every run's ratios, their median and worst, and every
    run's data.

    Each run writes ``RESULTS_DIR/OUT_runs/runK.json`` as it finishes, so a long series that
    stops part-way keeps its finished runs: started again with the same arguments, it reuses
    them and runs only the missing ones. The folder is removed once the summary is written.
    """
    arguments = without_options(sys.argv[1:], ("--reruns", "--results-dir", "--out"))
    folder = args.results_dir / f"{args.out}_runs"
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(args.reruns):
        out = f"run{index + 1}"
        path = folder / f"{out}.json"
        if path.exists():
            done = json.loads(path.read_text(encoding="utf-8"))
            if done.get("rerun_arguments") == arguments:
                print(f"rerun {index + 1}/{args.reruns}: reusing {path}", flush=True)
                runs.append(done)
                continue
        print(f"rerun {index + 1}/{args.reruns}, in a fresh process ...", flush=True)
        subprocess.run(
            [sys.executable, __file__, *arguments, "--results-dir", str(folder), "--out", out],
            check=True,
        )
        done = json.loads(path.read_text(encoding="utf-8"))
        done["rerun_arguments"] = arguments
        write_json(path, done)
        runs.append(done)
    summary: dict[str, dict[str, Any]] = {}
    for result in runs[-1]["models"]:
        model = result["model"]
        per_run = [next(r for r in run["models"] if r["model"] == model) for run in runs]
        summary[model] = {}
        for row in ratios(result):
            values = [ratios(r)[row] for r in per_run]
            chosen = (chosen_backend(r, row) for r in per_run)
            summary[model][row] = {
                "baseline": RATIO_BASELINES[row][1],
                "per_run": values,
                "median": float(np.median(values)),
                "worst": max(values),
                "backends": [backend for backend in chosen if backend is not None],
            }
    return {
        **runs[-1],
        "command": command,
        "reruns": {"count": args.reruns, "ratios": summary, "runs": runs},
    }


def reruns_section(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the reruns table: per model and sepconv row, every rerun's ratio."""
    count = data["reruns"]["count"]
    headers = ["model", "row", "ratio vs", *(f"run {i + 1}" for i in range(count))]
    headers += ["median", "worst", "chosen"]
    rows = []
    for model, by_row in data["reruns"]["ratios"].items():
        for row, r in by_row.items():
            chosen = ", ".join(f"{n}x {b}" for b, n in Counter(r["backends"]).most_common())
            per_run = [f"{v:.2f}" for v in r["per_run"]]
            median, worst = f"{r['median']:.2f}", f"{r['worst']:.2f}"
            rows.append([model, row, r["baseline"], *per_run, median, worst, chosen])
    return headers, rows


def report(data: dict[str, Any], folder: Path, out: str) -> None:
    """Print the tables and the targets, and write FOLDER/OUT.md, from the data."""
    results, threads = data["models"], data["threads"]
    height, width = data["input_shape"][2:]
    peak_size = data.get("matmul_peak_size", 2048)  # absent from files written before it
    peak_gflops = data["matmul_peak_gflops"]
    peak_gmacs = peak_gflops / 2  # 1 MAC = 2 FLOPs
    table_rows = [row for result in results for row in summarise(result, peak_gmacs)]
    console = Console(width=180)
    table = Table(title=f"batch 1, {height}x{width}, {threads} thread(s), CPU")
    for h in HEADERS:
        table.add_column(h)
    for row in table_rows:
        table.add_row(*row)
    console.print(table)
    goal_lines = targets(results, peak_gmacs)
    for line in goal_lines:
        console.print(line)
    reruns = ""
    if "reruns" in data:
        rerun_headers, rerun_rows = reruns_section(data)
        console.print(terminal_table("ratios over reruns", rerun_headers, rerun_rows))
        reruns = (
            f"## Over {data['reruns']['count']} reruns, each in a fresh process\n\n"
            "Each sepconv row's ratio to its baseline (as in the *ratio* column below) in every "
            "rerun, their median and worst (highest), and the backends sepconv's path chose. "
            "*twin control* (with `--twins`): a second session of the faster plain fp32 runtime "
            "(built the same way) over the best plain fp32 runtime, that is, the runtime with "
            "its default settings against itself; *chosen* then names the faster runtime. "
            "The tables after this one are the last rerun's; every rerun's data is in the "
            "JSON.\n\n" + markdown_table(rerun_headers, rerun_rows) + "\n\n"
        )
    loads = (", ".join(f"{v:.2f}" for v in data[key]) for key in ("loadavg_start", "loadavg_end"))
    write_text(
        folder / f"{out}.md",
        "# Inference backends side by side\n\n"
        f"{markdown_environment(data['environment'], data['command'])}  \n"
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + f"  \nLoad average (1, 5, 15 min) at start: {next(loads)}; at end: {next(loads)}. "
        f"Whole run: {data['elapsed_s'] / 60:.1f} min.\n\n"
        + reruns
        + f"Batch 1, {height}x{width}, randomly initialised weights (the same in every row: "
        "the sepconv model loads the reference model's), BatchNorm statistics measured on the "
        "calibration images (with the initial ones a random network's activations shrink, to "
        "outputs near 1e-14 for EfficientNet-B0), timed on one held-out image of the "
        "same kind. *precision*: what the row computes "
        "in (OpenVINO's default is bf16 on a CPU with native bf16). Median and interquartile "
        f"range of {data['rounds']} interleaved rounds x {data['repeats']} timed blocks. *speed-up "
        "vs eager*: against the torchvision/timm model in eager PyTorch. *ratio*: for sepconv's "
        "fp32 path, its time over the best of the two plain fp32 runtimes (ONNX Runtime, "
        "OpenVINO f32; target <= 1); for its bf16 path, over the best plain runtime of any "
        "precision; for int8, over the best fp32 row (target <= 0.5); the backend sepconv's "
        "path chose is in brackets; a bf16 backend whose output differs from fp32 by more "
        "than 5e-2 fails the path's check and is left out, so the bf16 path can end on a fp32 "
        "backend (its precision column says so). GMAC/s: MACs counted by `sepconv.analyze` "
        f"(1 MAC = one multiply-add) per second; matmul peak measured here: "
        f"{peak_gmacs:.1f} GMAC/s ({peak_gflops:.1f} GFLOP/s, {peak_size}x{peak_size} fp32 matmul, "
        f"{threads} threads). *rel. error*: max|out - reference| / max|reference| on the "
        "timed image; int8 accuracy is measured on trained models "
        "(results/deploy/int8_fashion_mnist). "
        f"int8 calibration: {data['calibration']}.\n\n"
        f"{markdown_table(HEADERS, table_rows)}\n\n"
        "Targets:\n\n" + "\n".join(goal_lines) + "\n\n" + profile_section(results),
    )


if __name__ == "__main__":
    main()
