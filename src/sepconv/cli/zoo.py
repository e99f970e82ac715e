"""``sepconv zoo``: the registered models with their size and the accuracy they correspond to."""

from __future__ import annotations

import argparse

from sepconv.utils.validation import invalid


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="list the registered models: parameters, input size, published ImageNet top-1",
        description="List the registered models with their parameter count (1000 classes), "
        "default input size and the published ImageNet-1k top-1 accuracy of the architecture, "
        "with its source. sepconv ships no trained weights: the accuracy is what the "
        "architecture reaches when trained as in its source.",
    )
    parser.add_argument(
        "pattern", nargs="?", default=None, help="shell-style filter, e.g. 'efficientnet_*'"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sepconv.cli._console import console
    from sepconv.models import create_model, get_model_info, list_models
    from sepconv.utils.tables import Column, FitTable

    names = list_models(args.pattern)
    if not names:
        expected = "a pattern matching a registered model"
        note = "; run `sepconv zoo` for the full list"
        raise invalid("pattern", expected, args.pattern, note=note)
    rows = []
    for name in names:
        info = get_model_info(name)
        # the meta device allocates no memory: counting VGG-16's 138M parameters is instant
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append(
            [
                name,
                f"{params:,}",
                f"{info.input_size}x{info.input_size}",
                f"{info.top1:.1f}",
                info.source,
            ]
        )
    columns = [
        Column("model", "left"),
        Column("params"),
        Column("input", drop=2),
        Column("top-1 %"),
        Column("source", "left", drop=1),
    ]
    table = FitTable(
        "sepconv model zoo",
        columns,
        rows,
        caption="params at 1000 classes; top-1: ImageNet-1k, as published",
    )
    console().print(table)
    return 0
