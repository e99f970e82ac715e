"""``sepconv quantize``: int8 post-training quantization calibrated on real images, then checked
against the fp32 model on the test split."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn


def register(subparsers: argparse._SubParsersAction) -> None:
    from sepconv.deploy.quantize import DEFAULT_QUANTIZER, QUANTIZERS
    from sepconv.deploy.registry import DEFAULT_ONNX_BACKEND, int8_runtimes

    parser = subparsers.add_parser(
        "quantize",
        help="int8 post-training quantization with calibration on real images",
        description="Export MODEL to ONNX (BatchNorms folded), quantize it statically to int8 "
        "(QDQ format: int8 per-channel weights, activation ranges calibrated on images of the "
        "training split of --calib-data) with ONNX Runtime's quantizer or OpenVINO's NNCF "
        "(--quantizer), write the file, and compare the int8 model's "
        "top-1 predictions with the fp32 model's on the test split. MODEL is a registered name "
        "(weights from `sepconv train` carry their architecture and normalisation) or "
        "`module:attr`.",
    )
    parser.add_argument("model", metavar="MODEL", help="registry name or module:attr")
    parser.add_argument(
        "--calib-data",
        required=True,
        help="calibration images: fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | "
        "imagefolder:DIR (the training split; the test split is used for the check)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="weights: model.safetensors from `sepconv train`, or torchvision/timm/sepconv "
        "weights for a registered model",
    )
    parser.add_argument("--output", type=Path, help="int8 ONNX file (default: ./MODEL.int8.onnx)")
    parser.add_argument(
        "--num-samples", type=int, default=256, help="calibration images (default: 256)"
    )
    parser.add_argument(
        "--per-tensor",
        dest="per_channel",
        action="store_false",
        help="one weight scale per tensor instead of per output channel",
    )
    parser.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="7-bit weights (with --quantizer nncf: its overflow fix on every layer); auto: on "
        "for x86 CPUs without VNNI, whose int8 kernels saturate 8-bit weights (default: auto)",
    )
    parser.add_argument(
        "--backend",
        choices=[row.name for row in int8_runtimes()],
        default=DEFAULT_ONNX_BACKEND,
        help=f"runtime the file is for and the check runs on (default: {DEFAULT_ONNX_BACKEND})",
    )
    parser.add_argument(
        "--quantizer",
        choices=QUANTIZERS,
        default=DEFAULT_QUANTIZER,
        help="who places the int8 ops: ONNX Runtime's quantize_static, or NNCF, whose file "
        f"OpenVINO runs faster on EfficientNet (default: {DEFAULT_QUANTIZER})",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="test images of the check (default: all; 0 skips the check)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="batch of the check")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="read images at this side (default: the side the weights' file records they were "
        "trained at, else the set's own size, image folders 32)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--json", type=Path, help="write the summary and the check here")
    parser.set_defaults(func=run)


def _load(
    args: argparse.Namespace,
) -> tuple[nn.Module, Sequence[float] | None, Sequence[float] | None, int | None]:
    """The fp32 model in eval mode, the normalisation it was trained with (if known) and the
    image side to read data at (``--image-size``, else the one its file records, else none)."""
    from sepconv.cli._model import is_model_file, resolve_model, trained_model, trained_side
    from sepconv.modelfile.weights import load_weights
    from sepconv.utils.files import existing_file

    weights: Path | None = args.weights
    if weights is not None:
        existing_file(weights, "--weights", (".safetensors", ".pt", ".pth"))
    if weights is not None and is_model_file(weights):
        # Written by sepconv: it knows its architecture and, from training, its normalisation.
        model, record = trained_model(args.model, weights)
        side = trained_side(record, weights, args.image_size)
        return model.eval(), record.mean, record.std, side
    model, _ = resolve_model(args.model)
    if weights is not None:
        load_weights(model, weights)
    return model.eval(), None, None, args.image_size


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sepconv.bench.timing import environment
    from sepconv.cli._console import console
    from sepconv.data import channel_stats, load_dataset
    from sepconv.deploy import ExportError
    from sepconv.deploy.agreement import compare_top1
    from sepconv.deploy.quantize import Quantizer, needs_reduce_range, prepare_images, quantize
    from sepconv.deploy.registry import int8_report
    from sepconv.utils.files import check_writable, write_json
    from sepconv.utils.validation import (
        MAX_SIDE,
        bounded_int,
        non_negative_int,
        positive_int,
        thread_count,
    )

    report = int8_report(args.backend, argument="--backend")
    positive_int("--num-samples", args.num_samples)
    positive_int("--batch-size", args.batch_size)
    if args.image_size is not None:
        bounded_int("--image-size", args.image_size, 1, MAX_SIDE)
    if args.threads is not None:
        thread_count("--threads", args.threads)
    if args.eval_samples is not None:
        non_negative_int("--eval-samples", args.eval_samples)
    output = check_writable(
        args.output or Path(f"{args.model.rpartition(':')[2]}.int8.onnx"),
        "--output",
        inputs={"--weights": args.weights},
    )
    if args.json is not None:
        check_writable(args.json, "--json", inputs={"--weights": args.weights, "--output": output})
    model, mean, std, side = _load(args)
    # Image folders are decoded at the side; a set of a fixed size keeps its own, and the images
    # picked from it are resized to the side (`quantize`'s and `prepare_images`' input_size).
    train = load_dataset(args.calib_data, "train", image_size=side)
    size = None if side is None else (train.num_channels, side, side)
    if mean is None or std is None:
        mean, std = channel_stats(train.images)  # what `sepconv train` normalises with
    quantizer: Quantizer = args.quantizer
    reduce_range = {"on": True, "off": False}.get(args.reduce_range)  # auto: None
    seven_bit = needs_reduce_range() if reduce_range is None else reduce_range

    start = time.perf_counter()
    try:
        with console().status(f"quantizing {args.model} to int8 ({output})"):
            int8 = quantize(
                model,
                train,
                output,
                input_size=size,
                mean=mean,
                std=std,
                num_samples=args.num_samples,
                per_channel=args.per_channel,
                reduce_range=reduce_range,
                backend=args.backend,
                quantizer=quantizer,
                batch_size=args.batch_size,
                threads=args.threads,
            )
    except (ExportError, ImportError) as err:
        print(f"sepconv quantize: error: {err}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    # What the backend runs (ONNX Runtime's fused ops, OpenVINO's layers and precisions).
    ops = report.count(output)

    summary: dict[str, Any] = {
        "command": " ".join(["sepconv", *sys.argv[1:]]),
        "environment": environment(int8.threads),
        "model": args.model,
        "weights": None if args.weights is None else str(args.weights),
        "calibration": {"data": args.calib_data, "split": "train", "images": args.num_samples},
        "quantizer": quantizer,
        "backend": args.backend,
        "file": str(output),
        "file_bytes": output.stat().st_size,
        "per_channel": args.per_channel,
        "reduce_range": seven_bit,
        "normalization": {"mean": list(mean), "std": list(std)},
        report.key: ops,
        "max_rel_error_first_batch": int8.max_rel_error,
        "seconds": seconds,
    }
    table = Table(title=f"{args.model} quantized to int8", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("file", f"{output} ({output.stat().st_size / 2**20:.2f} MiB)")
    table.add_row("calibration", f"{args.num_samples} images of {args.calib_data} (train)")
    table.add_row("quantizer", f"{quantizer}, for {args.backend}")
    weights = "per channel" if args.per_channel else "per tensor"
    table.add_row("weights", f"int8, {weights}" + (", 7-bit range" if seven_bit else ""))
    is_int8 = {op: report.is_int8(op) for op in ops}
    int8_ops = ", ".join(f"{op} x{n}" for op, n in ops.items() if is_int8[op])
    table.add_row(f"int8 kernels ({args.backend})", int8_ops or "none")
    float_ops = {k: v for k, v in ops.items() if not is_int8[k]}
    table.add_row("other ops", ", ".join(f"{k} x{v}" for k, v in float_ops.items()) or "none")
    table.add_row("quantize time", f"{seconds:.1f} s")

    if args.eval_samples != 0:
        test = load_dataset(args.calib_data, "test", image_size=side)
        count = len(test) if args.eval_samples is None else min(args.eval_samples, len(test))
        inputs = prepare_images(test.images[:count], input_size=size, mean=mean, std=std)
        result = compare_top1(model, int8, inputs, test.labels[:count], batch_size=args.batch_size)
        summary["check"] = {"split": "test", "backend": args.backend, **result.to_dict()}
        table.add_row(
            f"fp32 top-1 ({result.samples} test images)", f"{result.reference_accuracy:.4f}"
        )
        table.add_row(f"int8 top-1 ({args.backend})", f"{result.candidate_accuracy:.4f}")
        table.add_row("accuracy drop", f"{result.accuracy_drop:.2f} points")
        table.add_row("top-1 agreement with fp32", f"{result.agreement:.4f}")
    console().print(table)
    if args.json is not None:
        write_json(args.json, summary)
    return 0
