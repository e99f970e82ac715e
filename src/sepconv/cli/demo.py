"""``sepconv demo``: the building blocks side by side with their parameter counts."""

from __future__ import annotations

import argparse

# (C_in, C_out, H = W) of the separable layers of MobileNetV1 at 224x224 used as examples.
EXAMPLE_LAYERS: tuple[tuple[int, int, int], ...] = (
    (32, 64, 112),
    (64, 128, 56),
    (128, 128, 56),
    (256, 256, 56),
    (256, 512, 28),
    (512, 512, 14),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="standard vs depthwise-separable 3x3 convs: parameters and multiply-adds",
        description="Build standard and depthwise-separable 3x3 convolutions and count their "
        "weights and multiply-adds (1 MAC = one multiply-add; biases and norms excluded).",
    )
    parser.add_argument("-k", "--kernel-size", type=int, default=3, help="kernel size K (odd)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch import nn

    from sepconv.cli._console import console
    from sepconv.layers import DepthwiseSeparableConv2d
    from sepconv.utils.tables import Column, FitTable
    from sepconv.utils.validation import MAX_SIDE, bounded_int

    k = bounded_int("--kernel-size", args.kernel_size, 1, MAX_SIDE)
    columns = [
        Column("layer", "left"),
        Column("std params", short="std P", drop=1),
        Column("sep params", short="sep P", drop=1),
        Column("std MACs"),
        Column("sep MACs"),
        Column("ratio"),
        Column("1/C_out+1/K²", drop=2),
    ]
    rows = []
    for c_in, c_out, size in EXAMPLE_LAYERS:
        standard = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        separable = DepthwiseSeparableConv2d(c_in, c_out, k, norm=None, act=None)
        std_params = standard.weight.numel()
        # weights only, as the closed form counts them (the pointwise conv carries a bias
        # when there is no norm)
        sep_params = sum(p.numel() for n, p in separable.named_parameters() if n.endswith("weight"))
        # at stride 1 with "same" padding every weight is used once per output position
        positions = size * size
        rows.append(
            [
                f"{c_in}->{c_out} @{size}",
                f"{std_params:,}",
                f"{sep_params:,}",
                f"{std_params * positions / 1e6:,.1f}M",
                f"{sep_params * positions / 1e6:,.1f}M",
                f"{std_params / sep_params:.1f}x",
                f"1/{1 / (1 / c_out + 1 / k**2):.2f}",
            ]
        )
    console().print(
        FitTable(
            f"Standard vs depthwise-separable {k}x{k} conv, stride 1",
            columns,
            rows,
            caption="MACs: multiply-adds (FLOPs = 2 x MACs); weights only, no bias or norm",
        )
    )
    return 0
