"""``sepconv compare``: standard vs grouped vs depthwise separable cost of one conv layer."""

from __future__ import annotations

import argparse

from sepconv.cli.profile import add_output_arguments
from sepconv.utils.validation import invalid


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="standard vs grouped vs depthwise separable conv: params, MACs, bytes, intensity",
        description="Closed-form cost of one KxK conv layer, standard vs grouped vs depthwise "
        "separable (1 MAC = one multiply-add, FLOPs = 2 x MACs, batch 1, no bias), with the "
        "ratio next to 1/C_out + 1/K^2.",
    )
    parser.add_argument("--in", dest="in_channels", type=int, required=True, help="C_in")
    parser.add_argument("--out", dest="out_channels", type=int, required=True, help="C_out")
    parser.add_argument("--size", default="56", help="input H (square) or HxW; default 56")
    parser.add_argument("-k", "--kernel-size", type=int, default=3, help="K; default 3")
    parser.add_argument("--stride", type=int, default=1, help="default 1")
    parser.add_argument(
        "--groups", type=int, nargs="+", default=[2, 4], help="grouped variants; default 2 4"
    )
    add_output_arguments(parser)
    parser.set_defaults(func=run)


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise invalid("--size", "H or HxW with positive integers", text)
    return int(parts[0]), int(parts[-1])


def run(args: argparse.Namespace) -> int:
    from sepconv.analysis import compare_conv
    from sepconv.cli.profile import emit
    from sepconv.utils.files import check_writable

    if args.output is not None:
        check_writable(args.output, "--output")
    height, width = _parse_size(args.size)
    result = compare_conv(
        args.in_channels,
        args.out_channels,
        args.kernel_size,
        height,
        width,
        groups=args.groups,
        stride=args.stride,
    )
    emit(result, args.format, args.output)
    return 0
