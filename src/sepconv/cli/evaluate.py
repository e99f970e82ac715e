"""``sepconv evaluate``: accuracy, per-class accuracy and confusion matrix of trained weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepconv.cli._calibration import add_flags

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sepconv.data import ImageDataset
    from sepconv.modelfile.record import ModelRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    from sepconv.deploy.runtime import backend_choices, precision_choices

    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix of trained weights",
        description="Evaluate a model file written by sepconv (`sepconv train`'s "
        "model.safetensors, or a checkpoint, whose EMA is used when present; save_model's or "
        "`sepconv convert`'s files) on a dataset split. With --backend, also "
        "run the split through `sepconv.deploy.compile_for_inference` and report the deployed "
        "model's accuracy and its top-1 agreement with eager fp32.",
    )
    parser.add_argument("model", help="registered model name the weights belong to")
    parser.add_argument("--weights", required=True, help="model.safetensors or last.safetensors")
    parser.add_argument("--data", required=True, help="same spec as `sepconv train --data`")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="resize every image to this side (default: the side the weights were trained "
        "at, as their file records, else the set's own size, image folders 32)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--plot", default=None, help="write the confusion matrix image here")
    parser.add_argument("--json", default=None, help="write the metrics as JSON here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backend",
        choices=backend_choices("cpu"),
        default=None,
        help="also evaluate the model compiled for inference on this backend (CPU)",
    )
    parser.add_argument(
        "--precision",
        choices=precision_choices("cpu"),
        default="fp32",
        help="with --backend: what it may compute in (bf16 where the CPU has it natively); "
        "auto: build fp32, bf16 and int8, measure each one's top-1 agreement with eager fp32 "
        "on --calib-data and keep the fastest that reaches --min-agreement",
    )
    add_flags(parser)
    parser.add_argument("--threads", type=int, default=None, help="with --backend: threads")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from sepconv.cli._calibration import check_flags
    from sepconv.cli._console import console
    from sepconv.cli._model import trained_model, trained_side
    from sepconv.data import channel_stats, load_dataset
    from sepconv.deploy import calibration_images
    from sepconv.models.options import small_input_for
    from sepconv.train import evaluate, plot_confusion_matrix
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable, write_json
    from sepconv.utils.tables import Column, FitTable
    from sepconv.utils.validation import (
        MAX_SIDE,
        bounded_int,
        invalid,
        positive_int,
        thread_count,
    )

    inputs = {"--weights": args.weights}
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path is not None:
            check_writable(path, flag, inputs=inputs)
            inputs[flag] = path
    check_device(args.device, "--device")
    positive_int("--batch-size", args.batch_size)
    if args.threads is not None:
        thread_count("--threads", args.threads)
    if args.image_size is not None:
        bounded_int("--image-size", args.image_size, 1, MAX_SIDE)
    min_agreement = check_flags(args)
    if args.precision == "auto" and args.backend is None:
        raise invalid("--precision", "'auto' only with --backend", args.precision)
    if args.backend is not None and args.device != "cpu":
        raise invalid(
            "--device",
            "cpu with --backend (it compiles for the CPU)",
            args.device,
            note="; drop --device or --backend",
        )
    dataset: ImageDataset | None = None

    side: int | None = args.image_size

    def load(split_name: str) -> ImageDataset:
        # At `side` when known (every set resized to it), else at the data's own size.
        return load_dataset(args.data, split_name, image_size=side, resize=True)

    def split() -> ImageDataset:
        nonlocal dataset
        if dataset is None:
            dataset = load(args.split)
        return dataset

    def fallback() -> dict[str, Any]:
        """Builder arguments for files of models built by user code, which record none."""
        images = split()
        return {
            "num_classes": images.num_classes,
            "in_chans": images.num_channels,
            "small_input": small_input_for(int(images.images.shape[-1])),
        }

    model, record = trained_model(args.model, Path(args.weights), fallback)
    trained = trained_side(record, Path(args.weights), args.image_size)
    if trained != side:  # the side the weights were trained at, as their file records
        side, dataset = trained, None
    dataset = split()
    _check_data_fits(args, record, dataset)
    if record.mean is not None and record.std is not None:
        norm = {"mean": list(record.mean), "std": list(record.std)}
    else:  # e.g. save_model's files: the statistics `sepconv train` normalises with
        train = dataset if args.split == "train" else load("train")
        mean, std = channel_stats(train.images)
        norm = {"mean": list(mean), "std": list(std)}
    calibration = None
    if args.precision == "auto":  # a bad --calib-data fails here, before the evaluation
        calibration = calibration_images(
            args.calib_data,
            args.calib_samples,
            image_size=int(dataset.images.shape[-1]),
            in_chans=dataset.num_channels,
            mean=norm["mean"],
            std=norm["std"],
        )
    result = evaluate(
        model,
        dataset,
        mean=norm["mean"],
        std=norm["std"],
        batch_size=args.batch_size,
        device=args.device,
        progress=True,
    )
    read_at = int(dataset.images.shape[-1])
    rows = [
        [name, f"{acc:.4f}", str(count)]
        for name, acc, count in zip(
            result.classes, result.per_class_accuracy, result.confusion.sum(1).tolist(), strict=True
        )
    ]
    console().print(
        FitTable(
            "accuracy per class",
            [Column("class", "left"), Column("accuracy"), Column("images")],
            rows,
            caption=f"{args.model} on {args.data} ({args.split}, {read_at}x{read_at}): accuracy "
            f"{result.accuracy:.4f}",
        )
    )
    if args.plot:
        plot_confusion_matrix(result, args.plot)
    metrics: dict[str, Any] = {**result.to_dict(), "image_size": read_at}
    if args.backend is not None:
        from sepconv.deploy import BackendMismatchError

        try:
            metrics["deployed"] = _deployed(
                args, model, dataset, norm["mean"], norm["std"], calibration, min_agreement
            )
        except (ImportError, BackendMismatchError) as err:
            print(f"sepconv evaluate: error: {err}", file=sys.stderr)
            return 1
    if args.json:
        write_json(args.json, metrics)
    return 0


def _check_data_fits(args: argparse.Namespace, record: ModelRecord, data: ImageDataset) -> None:
    """Refuse a dataset the weights were not trained for (channels, classes), before the run."""
    from sepconv.utils.validation import invalid

    chans = record.kwargs.get("in_chans")
    if chans is not None and chans != data.num_channels:
        raise invalid(
            "--data",
            f"images of {chans} channel(s), as the weights {args.weights} take",
            args.data,
            note=f", whose images have {data.num_channels}",
        )
    classes = record.classes
    num_classes = record.kwargs.get("num_classes")
    if (classes is not None and tuple(classes) != tuple(data.classes)) or (
        classes is None and num_classes is not None and num_classes != data.num_classes
    ):
        wanted = ", ".join(classes[:10]) if classes is not None else f"{num_classes} classes"
        raise invalid(
            "--data",
            f"the classes the weights {args.weights} were trained on ({wanted})",
            args.data,
            note=f", whose classes are {', '.join(data.classes[:10])}",
        )


def _deployed(
    args: argparse.Namespace,
    model: nn.Module,
    dataset: ImageDataset,
    mean: list[float],
    std: list[float],
    calibration: torch.Tensor | None,
    min_agreement: float,
) -> dict[str, Any]:
    """Run ``dataset`` through ``model`` compiled for ``args.backend`` and print and return how
    it compares with eager fp32 (accuracies, agreement, the first batch's relative error); with
    ``--precision auto`` (``calibration`` given), also every candidate measured on the held-out
    calibration images."""
    from rich.table import Table

    from sepconv.bench.timing import environment
    from sepconv.cli._calibration import candidate_rows, chosen_interval, chosen_line
    from sepconv.cli._console import console
    from sepconv.deploy import compare_top1, compile_for_inference, prepare_images

    inputs = prepare_images(dataset, mean=mean, std=std)
    batch = min(args.batch_size, len(inputs))
    size = (int(inputs.shape[1]), int(inputs.shape[2]), int(inputs.shape[3]))
    with console().status(f"compiling the model for {args.backend} and checking it"):
        fast = compile_for_inference(
            model,
            backend=args.backend,
            input_size=size,
            batch_size=batch,
            threads=args.threads,
            precision=args.precision,
            calibration=calibration,
            min_agreement=min_agreement,
            example=inputs[:batch] if calibration is None else None,
        )
    check = compare_top1(model, fast, inputs, dataset.labels, batch_size=batch)
    table = Table(title=f"deployed: {fast.backend} ({fast.precision})", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    if fast.timings:
        table.add_row(
            "auto measured (ms)", ", ".join(f"{k} {v:.2f}" for k, v in fast.timings.items())
        )
    if fast.race_busy_share is not None:
        table.add_row("other processes during auto's race", f"{fast.race_busy_share:.0%}")
    if calibration is not None:
        for row in candidate_rows(fast):
            table.add_row(*row)
    else:
        for name, why in fast.skipped.items():
            table.add_row(f"left out: {name}", why)
        table.add_row("max relative error (first batch)", f"{fast.max_rel_error:.2e}")
    table.add_row("eager fp32 top-1", f"{check.reference_accuracy:.4f}")
    table.add_row(f"{fast.backend} {fast.precision} top-1", f"{check.candidate_accuracy:.4f}")
    table.add_row("accuracy drop", f"{check.accuracy_drop:.2f} points")
    low, high = check.interval
    table.add_row(
        "top-1 agreement with eager fp32",
        f"{check.agreement:.4f} (95% interval {low:.4f}-{high:.4f}, {check.samples} images)",
    )
    console().print(table)
    auto: dict[str, Any] = {}
    if calibration is not None:
        console().print(chosen_line(fast, args.calib_data, min_agreement))
        judged = fast.candidates[f"{fast.backend}/{fast.precision}"].samples
        auto = {
            "calibration": {
                "data": args.calib_data,
                "split": "train",
                "images": len(calibration),
                "judged_on": judged,  # the held-out part; int8 was calibrated on the others
            },
            "min_agreement": min_agreement,
            "calibration_agreement": fast.agreement,
            "calibration_agreement_interval_95": list(chosen_interval(fast)),
            "max_rel_error_first_batch": None,  # measured on the calibration images instead
            "max_rel_error_calibration": fast.max_rel_error,
            "candidates": {name: r.to_dict() for name, r in fast.candidates.items()},
            "why": fast.why,
        }
    return {
        "command": " ".join(["sepconv", *sys.argv[1:]]),
        "environment": environment(fast.threads),
        "backend": fast.backend,
        "precision": fast.precision,
        "threads": fast.threads,
        "batch_size": batch,
        "max_rel_error_first_batch": fast.max_rel_error,
        "auto_timings_ms": dict(fast.timings),
        "auto_race_busy_share": fast.race_busy_share,
        "skipped": dict(fast.skipped),
        **auto,
        **check.to_dict(),
    }
