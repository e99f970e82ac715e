"""``sepconv export``: write a model as a checked ONNX file (BatchNorms folded, dynamic batch)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMATS = ("onnx",)
CHECK_IMAGES = 8  # test images of --check-data; batch b is checked on the first b


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX, checked against PyTorch in ONNX Runtime",
        description="Fold every BatchNorm into its convolution, export the model to ONNX with a "
        "dynamic batch axis, validate the file with the ONNX checker and run it in ONNX Runtime "
        "at batch 1 and 8 against the eager model; the file is written only when every check "
        "passes. MODEL is a registered name (see `sepconv zoo`) or `module:attr`, where attr is "
        "an nn.Module or a callable returning one.",
    )
    parser.add_argument("model", metavar="MODEL", help="registry name or module:attr")
    parser.add_argument(
        "--format", choices=FORMATS, required=True, help="output format (only onnx for now)"
    )
    parser.add_argument("--output", type=Path, help="output file (default: ./MODEL.onnx)")
    parser.add_argument("--weights", type=Path, help=".safetensors/.pt/.pth weights to load")
    parser.add_argument(
        "--input-size", type=int, metavar="S",
        help="input side in pixels (default: the registered model's resolution, else 224)",
    )  # fmt: skip
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (default: 3)")
    parser.add_argument(
        "--num-classes", type=int, help="classes of a registered model (default: its own, 1000)"
    )
    parser.add_argument(
        "--small-input", action="store_true",
        help="build a registered model for 28-64 px inputs (overall stride 8)",
    )  # fmt: skip
    parser.add_argument(
        "--no-fold-bn", dest="fold_bn", action="store_false", help="keep BatchNorms as such"
    )
    parser.add_argument(
        "--static-batch", dest="dynamic_batch", action="store_false",
        help="fix the batch axis to 1 instead of leaving it dynamic",
    )  # fmt: skip
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18 (default: 18)")
    parser.add_argument(
        "--check-data", metavar="SPEC",
        help="check on the first 8 test images of fashion-mnist[:DIR] | cifar10:DIR | "
        "cifar100:DIR | imagefolder:DIR instead of random noise, normalised as in the weights' "
        "training (`sepconv train` records it) or by the images' own statistics: for trained "
        "models, on which noise can be ill-conditioned",
    )  # fmt: skip
    parser.set_defaults(func=run)


def _build(args: argparse.Namespace) -> tuple[nn.Module, str, int | None]:
    """The model, its display name and its registered input side (``None`` for user models)."""
    from sepconv.cli._model import resolve_model
    from sepconv.models import create_model, get_model_info

    if ":" in args.model:
        if args.num_classes is not None or args.small_input:
            raise ValueError(
                "Invalid value for arguments `--num-classes`/`--small-input`: they configure "
                f"registered models, but {args.model!r} is built by your own code; set them "
                "there."
            )
        model, size = resolve_model(args.model)
        return model, args.model.rpartition(":")[2].rpartition(".")[2], size
    options: dict[str, Any] = {"in_chans": args.in_chans}
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    if args.small_input:
        options["small_input"] = True
    return create_model(args.model, **options), args.model, get_model_info(args.model).input_size


def _check_images(args: argparse.Namespace, size: int) -> torch.Tensor:
    """The first 8 test images of ``--check-data``, as the model takes them."""
    from sepconv.data import channel_stats, load_dataset
    from sepconv.deploy import prepare_images

    test = load_dataset(args.check_data, "test", image_size=size)
    channels = int(test.images.shape[1])
    if channels != args.in_chans:
        raise ValueError(
            f"Invalid value for argument `--check-data`: {args.check_data!r} has images of "
            f"{channels} channel(s), the model takes {args.in_chans} (`--in-chans`)."
        )
    normalization = _trained_normalization(args.weights)
    mean, std = normalization or channel_stats(test.images)
    return prepare_images(
        test.images[:CHECK_IMAGES], input_size=(channels, size, size), mean=mean, std=std
    )


def _trained_normalization(weights: Path | None) -> tuple[list[float], list[float]] | None:
    """The mean and std a ``sepconv train`` weights file records, else ``None``."""
    if weights is None or weights.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    from sepconv.train.checkpoint import META_KEY

    with safe_open(str(weights), framework="pt") as fh:
        header = fh.metadata() or {}
    norm = json.loads(header.get(META_KEY, "{}")).get("normalization", {})
    return (norm["mean"], norm["std"]) if "mean" in norm and "std" in norm else None


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sepconv.cli._console import console
    from sepconv.deploy import ExportError, export_onnx, fuse
    from sepconv.models import load_weights
    from sepconv.utils.validation import positive_int

    positive_int("--in-chans", args.in_chans)
    if args.input_size is not None:
        positive_int("--input-size", args.input_size)
    model, name, default_size = _build(args)
    if args.weights is not None:
        load_weights(model, args.weights)
    size = args.input_size or default_size or 224
    output = args.output if args.output is not None else Path(f"{name}.onnx")
    check_inputs = _check_images(args, size) if args.check_data is not None else None

    start = time.perf_counter()
    try:
        result = export_onnx(
            model,
            output,
            input_size=(args.in_chans, size, size),
            dynamic_batch=args.dynamic_batch,
            fold_bn=args.fold_bn,
            opset=args.opset,
            check_inputs=check_inputs,
        )
    except (ExportError, ImportError) as err:
        print(f"sepconv export: error: {err}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start

    params = sum(p.numel() for p in model.parameters())
    folded = sum(p.numel() for p in fuse(model).parameters()) if args.fold_bn else params
    table = Table(title=f"{name} exported to ONNX", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("file", str(result.path))
    table.add_row("size", f"{result.path.stat().st_size / 2**20:.2f} MiB")
    table.add_row("opset", str(result.opset))
    batch = "dynamic" if result.dynamic_batch else str(result.input_shape[0])
    table.add_row("input", f"{batch} x {args.in_chans} x {size} x {size}")
    table.add_row("params", f"{params:,}")
    table.add_row(
        "params after BN folding" if args.fold_bn else "params (BN not folded)", f"{folded:,}"
    )
    for b, error in result.max_rel_error.items():
        table.add_row(f"max rel error, batch {b}", f"{error:.2e}")
    checked = (
        "random normal inputs" if args.check_data is None else f"test images of {args.check_data}"
    )
    table.add_row("checked on", checked)
    table.add_row("export + check time", f"{seconds:.1f} s")
    out = console()
    out.print(table)
    out.print("relative error = max|onnx - eager| / max|eager|, ONNX Runtime vs PyTorch eager")
    return 0
