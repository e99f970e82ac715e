"""``sepconv evaluate``: accuracy, per-class accuracy and confusion matrix of trained weights."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix of trained weights",
        description="Evaluate weights written by `sepconv train` (model.safetensors, or a "
        "checkpoint, whose EMA is used when present) on a dataset split.",
    )
    parser.add_argument("model", help="registered model name the weights belong to")
    parser.add_argument("--weights", required=True, help="model.safetensors or last.safetensors")
    parser.add_argument("--data", required=True, help="same spec as `sepconv train --data`")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--image-size", type=int, default=32, help="image-folder resize side")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--plot", default=None, help="write the confusion matrix image here")
    parser.add_argument("--json", default=None, help="write the metrics as JSON here")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sepconv.bench.output import write_json
    from sepconv.cli._console import console
    from sepconv.data import load_dataset
    from sepconv.models import create_model
    from sepconv.train import evaluate, load_tensors, plot_confusion_matrix
    from sepconv.train.checkpoint import unprefixed

    tensors, meta = load_tensors(args.weights)
    if meta.get("model") not in (None, args.model):
        raise ValueError(
            f"Invalid value for argument `model`: weights {args.weights} were trained for "
            f"{meta['model']!r}, received {args.model!r}."
        )
    if meta.get("kind") == "checkpoint":
        tensors = unprefixed(
            "ema." if any(k.startswith("ema.") for k in tensors) else "model.", tensors
        )
    dataset = load_dataset(args.data, args.split, image_size=args.image_size)
    kwargs = meta.get("model_kwargs") or {
        "num_classes": dataset.num_classes,
        "in_chans": dataset.num_channels,
        "small_input": dataset.images.shape[-1] <= 64,
    }
    model = create_model(args.model, **kwargs)
    model.load_state_dict(tensors)
    norm = meta["normalization"]
    result = evaluate(
        model,
        dataset,
        mean=norm["mean"],
        std=norm["std"],
        batch_size=args.batch_size,
        device=args.device,
    )
    table = Table(
        title=f"{args.model} on {args.data} ({args.split}): accuracy {result.accuracy:.4f}"
    )
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    table.add_column("images", justify="right")
    for name, acc, count in zip(
        result.classes, result.per_class_accuracy, result.confusion.sum(1).tolist(), strict=True
    ):
        table.add_row(name, f"{acc:.4f}", str(count))
    console().print(table)
    if args.plot:
        plot_confusion_matrix(result, args.plot)
    if args.json:
        write_json(args.json, result.to_dict())
    return 0
