"""int8 calibration recipes on trained models: which one keeps top-1 agreement with fp32 at
``precision="auto"``'s default bar (99.5%) on held-out test images.

``precision="auto"`` keeps int8 only where it agrees with eager fp32 on at least
``min_agreement`` of the user's images. On the trained Fashion-MNIST MobileNets
(``benchmarks/precision_auto.py``) sepconv's int8 file agrees on 99.3-99.6% of the test images,
around the bar. This script asks whether another post-training recipe gets over it. The
calibration images (``--calib-samples`` of the training split, the seeded draw of ``sepconv
evaluate --calib-data``) are split as ``precision="auto"`` splits them
(``sepconv.deploy.split_calibration``): every recipe but one sets its ranges on the
int8 part (256 images) of the same BatchNorm-folded export, and is scored by top-1 agreement
with eager fp32 and accuracy on every test image, plus the agreement on the held-out part of the
calibration images (what ``precision="auto"`` judges by):

- ``sepconv (ONNX Runtime)``, ``sepconv (OpenVINO)``: ``sepconv.deploy.quantize`` as
  ``precision="auto"`` builds it (ONNX Runtime's quantizer, MinMax ranges, per-channel int8
  weights, uint8 activations), run in each runtime.
- ``NNCF (OpenVINO)``: ``quantize(quantizer="nncf")``, OpenVINO's own quantizer, in OpenVINO.
- ``MinMax``: the script's own call of ONNX Runtime's quantizer with sepconv's settings, a
  check of the script: it must give the predictions of ``sepconv (ONNX Runtime)``.
- ``percentile``: the 99.999th percentile of a 2048-bin histogram instead of the extremes.
- ``entropy``: the range whose 128-level quantization loses least information (smallest KL
  divergence) over a 2048-bin histogram (512 with ``--smoke``), the setting of TensorRT's
  entropy calibration (Migacz 2017, "8-bit Inference with TensorRT").
  ``quantize_static(calibrate_method=Entropy)`` cannot be used as it is: it builds the
  calibrator with its defaults, 128 bins and 128 quantized bins, which leave one candidate
  range, the full one, so its file equals MinMax's.
  The script computes the ranges with ``create_calibrator`` and hands them to the quantizer as
  a calibration cache.
- ``MinMax, all images``: ranges set on all calibration images, the held-out part included
  (its held-out agreement is then not held out).
- ``first conv fp32``, ``classifier fp32``, ``first conv + classifier fp32``: MinMax, with those
  layers left out of quantization (the usual mixed-precision remedy).
- ``depthwise fp32``: MinMax with every depthwise convolution left in float, the remedy for the
  int8 depthwise layers of MobileNets (Sheng et al. 2018, "A Quantization-Friendly Separable
  Convolution Architecture for MobileNets"), run in both runtimes. ONNX Runtime's own level-1
  graph optimisations quantize the weights of a float Conv that sits between a
  DequantizeLinear and a QuantizeLinear again (its ``WeightBiasQuantization`` transform,
  microsoft/onnxruntime#24537 narrows when it applies), so in ONNX Runtime the depthwise layers
  run in int8 after all, with per-tensor weight scales; OpenVINO runs them in float as written.

The other ONNX Runtime recipes run in ONNX Runtime. Run:
    .venv/bin/python benchmarks/int8_recipes.py --runs runs/fm_auto
    .venv/bin/python benchmarks/int8_recipes.py --smoke   # a 2-step model, 250/250 images, 512 bins

Writes results/benchmarks/int8_recipes.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from onnxruntime import quantization
from ort_int8 import CHUNK, quantize_file, reader
from precision_auto import add_model_flags, model_files
from rich.console import Console

import sepconv
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.data import load_dataset
from sepconv.deploy import (
    calibration_images,
    compare_top1,
    export_onnx,
    load_onnx,
    prepare_images,
    quantize,
    split_calibration,
    top1_classes,
)
from sepconv.deploy.precision import DEFAULT_MIN_AGREEMENT
from sepconv.modelfile import read_model_file

HEADERS = [
    "model", "recipe", "runtime", "test agreement", "test top-1", "held-out calib. agreement"
]  # fmt: skip


def ort_recipes(graph: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """ONNX Runtime ``quantize_static`` options per recipe (on top of sepconv's: QDQ, MinMax,
    per-channel int8 weights, uint8 activations)."""
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    depthwise = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    first = [convs[0].name]
    heads = [n.name for n in graph.graph.node if n.op_type in ("Gemm", "MatMul")]
    method = quantization.CalibrationMethod
    return {
        "MinMax": {},
        "percentile": {"calibrate_method": method.Percentile},
        "entropy": {"calibrate_method": method.Entropy},  # ranges from entropy_cache
        "MinMax, all images": {},
        "first conv fp32": {"nodes_to_exclude": first},
        "classifier fp32": {"nodes_to_exclude": heads},
        "first conv + classifier fp32": {"nodes_to_exclude": [*first, *heads]},
        "depthwise fp32": {"nodes_to_exclude": depthwise},
    }


ENTROPY_BINS = 2048
"""TensorRT's entropy calibration histogram: 2048 bins, thresholds tried in steps of 128."""
SMOKE_ENTROPY_BINS = 512
"""``--smoke``'s histogram: ONNX Runtime's search over thresholds takes time quadratic in the
bins (half a minute for 2048 on a 2-step MobileNetV1-0.25); 512 still leaves 192 candidates."""


def entropy_cache(
    prepared: Path, images: torch.Tensor, folder: Path, bins: int = ENTROPY_BINS
) -> Path:
    """Write the entropy method's activation ranges over a histogram of ``bins`` bins
    (thresholds in steps of 128) where ``quantize_static(calibration_cache_path=...)`` reads
    them (module docstring)."""
    calibrator = quantization.create_calibrator(
        prepared,
        augmented_model_path=str(folder / "entropy.augmented.onnx"),
        calibrate_method=quantization.CalibrationMethod.Entropy,
        extra_options={"num_bins": bins, "num_quantized_bins": 128},
    )
    calibrator.collect_data(reader(images))
    cache = folder / "entropy.ranges.json"
    quantization.save_tensors_data(calibrator.compute_data(), cache)
    return cache


def scorer(
    model: torch.nn.Module, judged: torch.Tensor, test: torch.Tensor, labels: torch.Tensor
) -> Callable[[Any], dict[str, Any]]:
    """``score(int8)``: its top-1 agreement with eager fp32 on the test and the held-out
    calibration images, eager fp32's classes computed once for every recipe."""
    on_test, on_judged = (top1_classes(model, x, batch_size=CHUNK) for x in (test, judged))

    def score(int8: Any) -> dict[str, Any]:
        test_agreement = compare_top1(on_test, int8, test, labels, batch_size=CHUNK)
        judged_agreement = compare_top1(on_judged, int8, judged, batch_size=CHUNK).agreement
        return {"test": test_agreement.to_dict(), "calibration_agreement": judged_agreement}

    return score


def bench(weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    record = read_model_file(weights).record
    model = sepconv.load_model(weights).eval()
    mean, std = list(record.mean), list(record.std)
    split = load_dataset(args.data, "test")
    test = prepare_images(split.images[: args.test_images], mean=mean, std=std)
    labels = split.labels[: args.test_images]
    size = tuple(int(v) for v in test.shape[1:])
    calib = calibration_images(
        args.data, args.calib_samples, image_size=size[2], in_chans=size[0], mean=mean, std=std
    )
    part, judged = split_calibration(calib)
    score = scorer(model, judged, test, labels)
    common = {"batch_size": CHUNK, "threads": args.threads, "num_samples": len(part)}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sepconv-int8-recipes-") as tmp:
        folder = Path(tmp)
        print(f"{weights}: sepconv's recipe ...", flush=True)
        path = folder / "sepconv.onnx"
        int8 = quantize(model, part, path, **common)
        rows["sepconv (ONNX Runtime)"] = score(int8)
        ov = load_onnx(path, backend="openvino", batch_size=CHUNK, threads=args.threads)
        rows["sepconv (OpenVINO)"] = score(ov)
        nncf = quantize(
            model, part, folder / "nncf.onnx", quantizer="nncf", backend="openvino", **common
        )
        rows["NNCF (OpenVINO)"] = score(nncf)
        fp32, prepared = folder / "fp32.onnx", folder / "fp32.pre.onnx"
        export_onnx(model, fp32, input_size=size, check_batches=(1,), check_inputs=calib[:1])
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        for name, options in ort_recipes(onnx.load(str(prepared))).items():
            print(f"{weights}: {name} ...", flush=True)
            out = folder / "recipe.onnx"
            images = calib if name == "MinMax, all images" else part
            if name == "entropy":
                cache = entropy_cache(prepared, part, folder, args.entropy_bins)
                options = {**options, "calibration_cache_path": cache}
            quantize_file(prepared, out, reader(images), **options)
            loaded = {"batch_size": CHUNK, "threads": args.threads}
            if name == "depthwise fp32":  # in both runtimes (module docstring)
                for runtime, label in (("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")):
                    run = load_onnx(out, backend=runtime, **loaded)  # type: ignore[arg-type]
                    rows[f"{name} ({label})"] = score(run)
                continue
            rows[name] = score(load_onnx(out, **loaded))
    for name, row in rows.items():
        row["runtime"] = "OpenVINO" if "OpenVINO" in name else "ONNX Runtime"
    return {
        "model": record.arch,
        "weights": str(weights),
        "int8_calibration_images": len(part),
        "held_out_images": len(judged),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_flags(parser)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--calib-samples", type=positive_int, default=1000)
    parser.add_argument("--test-images", type=positive_int, default=10000)
    add_smoke_flag(
        parser,
        f"a model trained for 2 steps, {CHUNK} calibration and test images, "
        f"{SMOKE_ENTROPY_BINS} entropy bins",
    )
    add_output_flags(parser)
    args = parser.parse_args()
    for flag in ("calib_samples", "test_images"):
        if getattr(args, flag) % CHUNK:
            parser.error(f"--{flag.replace('_', '-')}: expected a positive multiple of {CHUNK}")
    run = Run.start(__file__, args)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sepconv-int8-recipes-smoke-") as tmp:
        if args.smoke:
            args.calib_samples = args.test_images = CHUNK
        args.entropy_bins = SMOKE_ENTROPY_BINS if args.smoke else ENTROPY_BINS
        results = [bench(path, args) for path in model_files(args, parser, Path(tmp))]
    data = {
        **run.record(args.threads),
        "calibration_images": args.calib_samples,
        "test_images": args.test_images,
        "min_agreement": DEFAULT_MIN_AGREEMENT,
        "entropy_bins": args.entropy_bins,
        "results": results,
    }
    report(data, run)


def report(data: dict[str, Any], run: Run) -> None:
    rows = [
        [
            result["model"],
            name,
            row["runtime"],
            f"{row['test']['agreement']:.4f}",
            f"{row['test']['candidate_accuracy']:.4f}",
            f"{row['calibration_agreement']:.4f}",
        ]
        for result in data["results"]
        for name, row in result["rows"].items()
    ]
    bar = data["min_agreement"]
    lines = []
    for result in data["results"]:
        best_name, best = max(result["rows"].items(), key=lambda kv: kv[1]["test"]["agreement"])
        agreement, reference = best["test"]["agreement"], best["test"]["reference_accuracy"]
        verdict = "reached" if agreement >= bar else "not reached"
        lines.append(
            f"- {result['model']}: best recipe {best_name}, {agreement:.2%} test agreement "
            f"(bar {bar:.1%}: {verdict}); fp32 top-1 {reference:.4f}"
        )
    first = data["results"][0]
    Console(width=160).print(terminal_table("int8 recipes on trained models", HEADERS, rows))
    for line in lines:
        print(line)
    text = "\n\n".join(
        [
            header("int8 calibration recipes on trained models", data),
            f"{data['calibration_images']} calibration images (training split), "
            f"{data['test_images']} held-out test images; the recipes are defined in the "
            "docstring of `benchmarks/int8_recipes.py` (the entropy histogram here: "
            f"{data['entropy_bins']} bins); every recipe but *MinMax, all images* "
            f"sets its ranges on {first['int8_calibration_images']} of the calibration images. "
            "*test agreement*: top-1 agreement with eager fp32 on the test images; *held-out "
            f"calib. agreement*: the same on the other {first['held_out_images']} calibration "
            "images, which is what `precision='auto'` judges by.",
            markdown_table(HEADERS, rows),
            "\n".join(lines),
            clock_line(data),
        ]
    )
    run.write(data, text + "\n")


if __name__ == "__main__":
    main()
