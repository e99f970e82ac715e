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
    from rich.table import Table
    from torch import nn

    from sepconv.cli._console import console
    from sepconv.layers import DepthwiseSeparableConv2d

    k = args.kernel_size
    table = Table(
        title=f"Standard vs depthwise-separable {k}x{k} conv, stride 1",
        caption="MACs: multiply-adds (FLOPs = 2 x MACs); weights only, no bias or norm",
    )
    columns = ("layer", "std params", "sep params", "std MACs", "sep MACs", "ratio", "1/C_out+1/K²")
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for c_in, c_out, size in EXAMPLE_LAYERS:
        standard = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        separable = DepthwiseSeparableConv2d(c_in, c_out, k, norm=None, act=None)
        std_params = standard.weight.numel()
        sep_params = separable.conv_dw.weight.numel() + separable.conv_pw.weight.numel()
        # at stride 1 with "same" padding every weight is used once per output position
        positions = size * size
        table.add_row(
            f"{c_in}->{c_out} @{size}",
            f"{std_params:,}",
            f"{sep_params:,}",
            f"{std_params * positions / 1e6:,.1f}M",
            f"{sep_params * positions / 1e6:,.1f}M",
            f"{std_params / sep_params:.1f}x",
            f"1/{1 / (1 / c_out + 1 / k**2):.2f}",
        )
    console().print(table)
    return 0
