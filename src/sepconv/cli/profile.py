"""``sepconv profile``: per-op params, MACs, bytes moved and arithmetic intensity of a model."""

from __future__ import annotations

import argparse
import io
import sys
from typing import TYPE_CHECKING, Protocol

from sepconv.utils.validation import invalid

if TYPE_CHECKING:
    from rich.console import RenderableType

FORMATS = ("table", "json", "csv", "markdown")


class Renderable(Protocol):
    """What ``emit`` prints: a report that renders itself in every format."""

    def to_json(self, indent: int | None = 2) -> str: ...
    def to_csv(self) -> str: ...
    def to_markdown(self) -> str: ...
    def to_rich(self) -> RenderableType: ...


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--output``, shared by ``profile`` and ``compare``."""
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="per-layer params, MACs, bytes moved and arithmetic intensity of a model",
        description="Run one forward pass and cost every op: params, MACs (1 MAC = one "
        "multiply-add, FLOPs = 2 x MACs; headline = conv + linear), bytes moved and FLOPs per "
        "byte. MODEL is a registered name (see `sepconv zoo`) or `module:attr`, where attr "
        "is an nn.Module or a callable returning one, e.g. `torchvision.models:mobilenet_v2` "
        "or `mynet:build` for mynet.py in the current directory.",
    )
    parser.add_argument("model", metavar="MODEL", help="registry name or module:attr")
    parser.add_argument(
        "--input-size",
        help="CxHxW, NxCxHxW, N,C,H,W or a single side S for 1x3xSxS "
        "(default: the registered model's resolution, else 3x224x224)",
    )
    add_output_arguments(parser)
    parser.set_defaults(func=run)


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3x224x224"`` -> (1, 3, 224, 224); ``"1,3,224,224"`` as is; ``"600"`` -> (1, 3, 600, 600).

    Example:
        >>> parse_input_size("3x600x600")
        (1, 3, 600, 600)
    """
    parts = text.replace(",", "x").lower().split("x")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts) or len(parts) not in (1, 3, 4):
        expected = "CxHxW, NxCxHxW, N,C,H,W or a single side such as 224, with positive integers"
        raise invalid("--input-size", expected, text)
    dims = tuple(int(p) for p in parts)
    if len(dims) == 1:
        return (1, 3, dims[0], dims[0])
    return dims if len(dims) == 4 else (1, *dims)


def emit(result: Renderable, fmt: str, output: str | None) -> None:
    """Print ``result`` in ``fmt`` to stdout, or write it atomically to ``output``."""
    from rich.console import Console

    from sepconv.cli._console import console
    from sepconv.utils.files import write_text

    if fmt == "table":
        if output is None:
            console().print(result.to_rich())
            return
        buffer = io.StringIO()
        Console(file=buffer, width=200, no_color=True).print(result.to_rich())
        text = buffer.getvalue()
    else:
        text = {"json": result.to_json, "csv": result.to_csv, "markdown": result.to_markdown}[fmt]()
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        write_text(output, text)


def run(args: argparse.Namespace) -> int:
    from sepconv.analysis import analyze
    from sepconv.cli._model import resolve_model
    from sepconv.utils.files import check_writable

    if args.output is not None:
        check_writable(args.output, "--output")
    model, side = resolve_model(args.model)
    side = side or 224
    size = parse_input_size(args.input_size) if args.input_size else (1, 3, side, side)
    emit(analyze(model, size), args.format, args.output)
    return 0
