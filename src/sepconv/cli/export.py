"""``sepconv export``: write a model as a checked ONNX file (BatchNorms folded, dynamic batch)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepconv.cli._calibration import add_flags

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sepconv.modelfile.record import ModelRecord

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
        "--input-size",
        type=int,
        metavar="S",
        help="input side in pixels (default: the registered model's resolution, else 224)",
    )
    parser.add_argument(
        "--in-chans",
        type=int,
        help="input channels (default: the weights' own when sepconv wrote them, else 3)",
    )
    parser.add_argument(
        "--num-classes", type=int, help="classes of a registered model (default: its own, 1000)"
    )
    parser.add_argument(
        "--small-input",
        action="store_true",
        help="build a registered model for 28-64 px inputs (overall stride 8)",
    )
    parser.add_argument(
        "--no-fold-bn", dest="fold_bn", action="store_false", help="keep BatchNorms as such"
    )
    parser.add_argument(
        "--static-batch",
        dest="dynamic_batch",
        action="store_false",
        help="fix the batch axis to 1 instead of leaving it dynamic",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18 (default: 18)")
    parser.add_argument(
        "--check-data",
        metavar="SPEC",
        help="check on the first 8 test images of fashion-mnist[:DIR] | cifar10:DIR | "
        "cifar100:DIR | imagefolder:DIR instead of random noise, normalised as in the weights' "
        "training (`sepconv train` records it) or by the images' own statistics: for trained "
        "models, on which noise can be ill-conditioned",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "auto"),
        default="fp32",
        help="auto: after the export, build the model for CPU inference in fp32, bf16 (where "
        "the CPU has it) and int8, measure each one's top-1 agreement with eager fp32 on "
        "--calib-data and report the fastest that reaches --min-agreement; when that is int8, "
        "also write its file, OUTPUT with .int8.onnx",
    )
    add_flags(parser)
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="with --precision auto: CPU threads the candidates are built and timed with, as "
        "the model will run (default: PyTorch's intra-op thread count)",
    )
    parser.set_defaults(func=run)


def _build(args: argparse.Namespace) -> tuple[nn.Module, str, int | None, ModelRecord | None]:
    """The model, its display name, its registered input side (``None`` for user models) and,
    for weights sepconv wrote, their record (the model is then built from it, weights loaded)."""
    from sepconv.cli._model import is_model_file, resolve_model, trained_model
    from sepconv.modelfile.weights import load_weights
    from sepconv.models import create_model, get_model_info
    from sepconv.utils.validation import invalid

    if ":" in args.model and (args.num_classes is not None or args.small_input):
        raise ValueError(
            "Invalid value for arguments `--num-classes`/`--small-input`: they configure "
            f"registered models, but {args.model!r} is built by your own code; set them there."
        )
    if args.weights is not None and is_model_file(args.weights):
        model, record = trained_model(args.model, args.weights)
        for flag, key, value in (
            ("--num-classes", "num_classes", args.num_classes),
            ("--small-input", "small_input", args.small_input or None),
            ("--in-chans", "in_chans", args.in_chans),
        ):
            if value is not None and key in record.kwargs and record.kwargs[key] != value:
                raise invalid(
                    flag,
                    f"{record.kwargs[key]!r} as in the weights {args.weights}, or nothing",
                    value,
                )
        name = args.model.rpartition(":")[2].rpartition(".")[2]
        size = None if ":" in args.model else get_model_info(args.model).input_size
        return model, name, size, record
    if ":" in args.model:
        model, size = resolve_model(args.model)
        name = args.model.rpartition(":")[2].rpartition(".")[2]
    else:
        options: dict[str, Any] = {"in_chans": args.in_chans or 3}
        if args.num_classes is not None:
            options["num_classes"] = args.num_classes
        if args.small_input:
            options["small_input"] = True
        model = create_model(args.model, **options)
        name, size = args.model, get_model_info(args.model).input_size
    if args.weights is not None:
        load_weights(model, args.weights)
    return model, name, size, None


def _check_images(
    args: argparse.Namespace, size: int, in_chans: int, record: ModelRecord | None
) -> torch.Tensor:
    """The first 8 test images of ``--check-data``, as the model takes them: normalised as in
    the weights' training when their file records it, else by the images' own statistics."""
    from sepconv.data import channel_stats, load_dataset
    from sepconv.deploy import prepare_images

    test = load_dataset(args.check_data, "test", image_size=size)
    channels = int(test.images.shape[1])
    if channels != in_chans:
        # The wording names the mismatch first: the data, not the flag, is usually the mistake.
        raise ValueError(
            f"Invalid value for argument `--check-data`: {args.check_data!r} has images of "
            f"{channels} channel(s), the model takes {in_chans} (`--in-chans`)."
        )
    if record is not None and record.mean is not None and record.std is not None:
        mean, std = record.mean, record.std
    else:
        mean, std = channel_stats(test.images)
    return prepare_images(
        test.images[:CHECK_IMAGES], input_size=(channels, size, size), mean=mean, std=std
    )


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sepconv.cli._calibration import check_flags
    from sepconv.cli._console import console
    from sepconv.deploy import ExportError, calibration_images, export_onnx, fuse
    from sepconv.deploy.onnx import check_opset
    from sepconv.utils.files import check_writable, existing_file
    from sepconv.utils.validation import (
        MAX_SIDE,
        bounded_int,
        invalid,
        positive_int,
        thread_count,
    )

    if args.in_chans is not None:
        positive_int("--in-chans", args.in_chans)
    if args.input_size is not None:
        bounded_int("--input-size", args.input_size, 1, MAX_SIDE)
    display = args.model.rpartition(":")[2].rpartition(".")[2]
    if args.weights is not None:
        existing_file(args.weights, "--weights", (".safetensors", ".pt", ".pth"))
    output = check_writable(
        args.output if args.output is not None else Path(f"{display}.onnx"),
        "--output",
        inputs={"--weights": args.weights},
    )
    check_opset(args.opset)
    min_agreement = check_flags(args)
    if args.threads is not None:
        if args.precision != "auto":
            raise invalid("--threads", "nothing unless --precision auto", args.threads)
        thread_count("--threads", args.threads)
    int8_output = output.with_suffix(".int8.onnx")
    if args.precision == "auto":
        check_writable(int8_output, "--output", inputs={"--weights": args.weights})
    model, name, default_size, record = _build(args)
    recorded_chans = record.kwargs.get("in_chans") if record is not None else None
    in_chans = int(args.in_chans or recorded_chans or 3)
    size = args.input_size or default_size or 224
    check_inputs = None
    if args.check_data is not None:
        check_inputs = _check_images(args, size, in_chans, record)
    calibration = None
    if args.precision == "auto":
        calibration = calibration_images(
            args.calib_data,
            args.calib_samples,
            image_size=size,
            in_chans=in_chans,
            mean=None if record is None else record.mean,
            std=None if record is None else record.std,
        )

    start = time.perf_counter()
    try:
        with console().status(f"exporting {name} to {output} and checking it in ONNX Runtime"):
            result = export_onnx(
                model,
                output,
                input_size=(in_chans, size, size),
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
    table.add_row("input", f"{batch} x {in_chans} x {size} x {size}")
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
    if calibration is not None:
        return _choose_precision(args, model, calibration, min_agreement, int8_output)
    return 0


def _choose_precision(
    args: argparse.Namespace,
    model: nn.Module,
    calibration: torch.Tensor,
    min_agreement: float,
    int8_output: Path,
) -> int:
    """``--precision auto``: compile for batch-1 CPU inference in every precision, print each
    candidate and the choice, and write the int8 file when int8 wins."""
    from rich.table import Table

    from sepconv.cli._calibration import candidate_rows, chosen_line
    from sepconv.cli._console import console
    from sepconv.deploy import (
        BackendMismatchError,
        compile_for_inference,
        quantize,
        split_calibration,
    )

    size = (int(calibration.shape[1]), int(calibration.shape[2]), int(calibration.shape[3]))
    try:
        with console().status("building fp32, bf16 and int8 candidates and measuring them"):
            fast = compile_for_inference(
                model,
                precision="auto",
                calibration=calibration,
                min_agreement=min_agreement,
                input_size=size,
                threads=args.threads,
            )
            if fast.precision == "int8":
                # The same split of the same images gives the same ranges, so the file judged.
                int8_images, _ = split_calibration(calibration)
                quantize(
                    model,
                    int8_images,
                    int8_output,
                    input_size=size,
                    num_samples=len(int8_images),
                )
    except (ImportError, BackendMismatchError) as err:
        print(f"sepconv export: error: {err}", file=sys.stderr)
        return 1
    table = Table(
        title=f"precision auto: batch 1, CPU, {fast.threads} thread(s)", show_header=False
    )
    table.add_column(justify="left")
    table.add_column(justify="left")
    for row in candidate_rows(fast):
        table.add_row(*row)
    out = console()
    out.print(table)
    out.print(chosen_line(fast, args.calib_data, min_agreement))
    if fast.precision == "int8":
        out.print(f"int8 file: {int8_output}")
    return 0
