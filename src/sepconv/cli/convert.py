"""``sepconv convert``: decouple a model's standard convolutions and optionally fine-tune it."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn a model's standard KxK convs into depthwise separable ones (network decoupling)",
        description="Replace every standard KxK convolution of a registered model by a depthwise "
        "separable one initialised from its per-channel SVD (Guo et al., BMVC 2018), print the "
        "per-layer rank, error, params and MACs, optionally recover accuracy by distillation from "
        "the original on Fashion-MNIST, and save the converted state dict as safetensors.",
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
        "--input-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"),
        help="image size at which MACs are counted",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="write the converted state dict here")
    parser.add_argument("--report", type=Path, help="write the conversion report as JSON here")
    parser.add_argument(
        "--finetune-epochs", type=int, default=0,
        help="epochs of distillation from the original on Fashion-MNIST (needs --in-chans 1)",
    )  # fmt: skip
    parser.add_argument("--data-root", type=Path, help="Fashion-MNIST folder")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.set_defaults(func=run)


def _write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so no half-written file remains."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from sepconv.cli._console import console
    from sepconv.convert import separabilize
    from sepconv.models import create_model, load_weights

    for path in (args.output, args.report):
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"Output folder {path.parent} of {path} does not exist.")
    if args.finetune_epochs < 0:
        raise ValueError(
            "Invalid value for argument `--finetune-epochs`: expected a non-negative integer, "
            f"received {args.finetune_epochs}."
        )
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

    if args.finetune_epochs:
        _finetune(model, original, args)

    summary = report.to_dict()
    summary.update(model=args.model, finetune_epochs=args.finetune_epochs)
    if args.report is not None:
        text = json.dumps(summary, indent=2) + "\n"
        _write_atomic(args.report, lambda tmp: Path(tmp).write_text(text))
    if args.output is not None:
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        # The ranks let a reader rebuild the architecture: separabilize(create_model(...), ...).
        meta = {"sepconv.convert": json.dumps({k: summary[k] for k in ("model", "layers")})}
        _write_atomic(args.output, lambda tmp: save_file(tensors, tmp, metadata=meta))
        out.print(f"wrote {args.output}")
    return 0


def _finetune(model: nn.Module, teacher: nn.Module, args: argparse.Namespace) -> None:
    """Distil ``teacher`` into ``model`` on the Fashion-MNIST training split."""
    from sepconv.convert.distill import NormalizedBatches, distill
    from sepconv.data.dataset import BatchLoader, channel_stats
    from sepconv.data.idx import load_fashion_mnist

    train = load_fashion_mnist("train", args.data_root)
    if args.in_chans != train.num_channels or args.num_classes != train.num_classes:
        raise ValueError(
            "Invalid value for arguments `--in-chans`/`--num-classes`: fine-tuning runs on "
            f"Fashion-MNIST, which needs {train.num_channels} and {train.num_classes}, received "
            f"{args.in_chans} and {args.num_classes}."
        )
    mean, std = channel_stats(train.images)
    loader = BatchLoader(train, args.batch_size)
    distill(
        model,
        teacher,
        lambda epoch: NormalizedBatches(loader, mean, std, epoch=epoch),
        epochs=args.finetune_epochs,
        lr=args.lr,
        progress=True,
    )
