"""``sepconv convert``: decouple a model's standard convolutions and optionally fine-tune it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn a model's standard KxK convs into depthwise separable ones (network decoupling)",
        description="Replace every standard KxK convolution of a registered model by a depthwise "
        "separable one initialised from its per-channel SVD (Guo et al., BMVC 2018), print the "
        "per-layer rank, error, params and MACs, optionally recover accuracy by distillation from "
        "the original (sepconv's Trainer with the original as teacher; Fashion-MNIST by default), "
        "and save the converted state dict as safetensors.",
    )
    parser.add_argument("model", help="registered model name (see `sepconv zoo`)")
    parser.add_argument("--weights", type=Path, help=".safetensors/.pt weights of the original")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--in-chans", type=int, default=3)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--rank", type=int, help="depth multiplier kept in every layer")
    choice.add_argument("--energy", type=float, help="retained singular-value energy in (0, 1]")
    parser.add_argument("--skip", nargs="*", default=[], help="module-name patterns to keep")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=[224, 224],
        metavar=("H", "W"),
        help="image size at which MACs are counted",
    )
    parser.add_argument("--output", type=Path, help="write the converted state dict here")
    parser.add_argument("--report", type=Path, help="write the conversion report as JSON here")
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="epochs of distillation from the original through sepconv's Trainer (default: 0)",
    )
    parser.add_argument(
        "--data",
        default="fashion-mnist",
        help="fine-tuning data: fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | imagefolder:DIR"
        " (image folders are resized to --input-size; default: fashion-mnist)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning peak learning rate")
    parser.add_argument("--temperature", type=float, default=4.0, help="distillation T")
    parser.add_argument(
        "--alpha", type=float, default=0.9, help="weight of the teacher term in [0, 1]"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sepconv.cli._console import console
    from sepconv.convert import separabilize
    from sepconv.modelfile.format import write_model_file
    from sepconv.modelfile.record import ModelRecord
    from sepconv.modelfile.weights import load_weights
    from sepconv.models import create_model
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable, write_json
    from sepconv.utils.validation import (
        MAX_SIDE,
        bounded_int,
        finite_number,
        non_negative_int,
        positive_int,
    )

    inputs = {"--weights": args.weights}
    for flag, path in (("--output", args.output), ("--report", args.report)):
        if path is not None:
            check_writable(path, flag, inputs=inputs)
            inputs[flag] = path
    if args.device is not None:
        check_device(args.device, "--device")
    non_negative_int("--finetune-epochs", args.finetune_epochs)
    for side in args.input_size:
        bounded_int("--input-size", side, 1, MAX_SIDE)
    if args.finetune_epochs:
        # Named as typed: the training config would name them distill_temperature, ...
        finite_number("--temperature", args.temperature, low=0, low_inclusive=False)
        finite_number("--alpha", args.alpha, low=0, high=1)
        finite_number("--lr", args.lr, low=0, low_inclusive=False)
        positive_int("--batch-size", args.batch_size)
    original = create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)
    if args.weights is not None:
        load_weights(original, args.weights)
    original.eval()
    size = (1, args.in_chans, *args.input_size)
    model, report = separabilize(
        original, rank=args.rank, energy=args.energy, skip=args.skip, input_size=size
    )
    out = console()
    out.print(report.table())

    summary = report.to_dict()
    summary.update(model=args.model, finetune_epochs=args.finetune_epochs)
    trained: dict[str, Any] = {}
    if args.finetune_epochs:
        summary["accuracy"], trained = _finetune(model, original, args)
        out.print(
            "test accuracy: original {original:.4f}, converted {converted:.4f}, "
            "after fine-tuning {finetuned:.4f}".format(**summary["accuracy"])
        )
    if args.report is not None:
        write_json(args.report, summary)
    if args.output is not None:
        # The ranks let load_model rebuild the architecture: the original's, each listed
        # convolution decoupled at its rank.
        provenance = {
            "converted_from": args.model,
            "weights": None if args.weights is None else str(args.weights),
            "finetune_epochs": args.finetune_epochs,
        }
        if args.finetune_epochs:
            provenance["data"] = args.data
        record = ModelRecord.of(
            original,
            decoupled={layer.name: layer.rank for layer in report.layers},
            provenance=provenance,
            **trained,
        )
        write_model_file(args.output, model.state_dict(), record)
        out.print(f"wrote {args.output}")
    return 0


def _finetune(
    model: nn.Module, teacher: nn.Module, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, Any]]:
    """Distil ``teacher`` into ``model`` in place with the Trainer.

    Returns:
        The test accuracy before and after, and what the converted model's record keeps of the
        fine-tune, as ``sepconv train`` records its weights: the normalisation the model was
        trained with (the training images' :func:`~sepconv.data.channel_stats`, as the Trainer
        computes them), the classes, the config and which weights these are.
    """
    import torch

    from sepconv.data import default_augment, load_dataset
    from sepconv.data.dataset import channel_stats
    from sepconv.train import TrainConfig, Trainer, evaluate
    from sepconv.train.distributed import DistributedContext

    side = args.input_size[0]
    train = load_dataset(args.data, "train", image_size=side)
    test = load_dataset(args.data, "test", image_size=side)
    if args.in_chans != train.num_channels or args.num_classes != train.num_classes:
        raise ValueError(
            "Invalid value for arguments `--in-chans`/`--num-classes`: fine-tuning on "
            f"{args.data!r} needs {train.num_channels} and {train.num_classes}, received "
            f"{args.in_chans} and {args.num_classes}."
        )
    # A warm start: no warm-up, cosine decay from the (small) peak rate to zero.
    config = TrainConfig(
        epochs=args.finetune_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_epochs=0.0,
        distill_temperature=args.temperature,
        distill_alpha=args.alpha,
    )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    mean, std = channel_stats(train.images)

    def accuracy(net: nn.Module) -> float:
        return evaluate(net, test, mean=mean, std=std, device=device).accuracy

    before = {"original": accuracy(teacher.to(device)), "converted": accuracy(model.to(device))}
    trainer = Trainer(
        model,
        config,
        train,
        test,
        augment=default_augment(args.data, int(train.images.shape[-1])),
        context=DistributedContext(rank=0, world_size=1, device=device),
        teacher=teacher,
    )
    history = trainer.fit()
    trained = {
        "mean": tuple(mean),
        "std": tuple(std),
        "classes": tuple(train.classes),
        "config": config.to_dict(),
        "source": "model",  # the file holds the fine-tuned model itself (no weight average)
    }
    return {**before, "finetuned": float(history[-1]["test_acc"])}, trained
