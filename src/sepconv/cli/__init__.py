"""The ``sepconv`` command line: one sub-command per module in this package.

Each module named in :data:`COMMANDS` exposes ``register(subparsers)``, which adds its
sub-parser and sets ``func`` to a callable taking the parsed arguments and returning an exit
code. Heavy imports happen inside those callables so that ``sepconv --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sepconv.utils.version import __version__

# Module names under ``sepconv.cli``, in the order ``sepconv --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "zoo",
    "bench",
    "convert",
    "export",
    "quantize",
    "profile",
    "compare",
    "train",
    "evaluate",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="sepconv",
        description="Depthwise separable convolutions: build, measure, convert, train and ship.",
    )
    parser.add_argument("--version", action="version", version=f"sepconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sepconv.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sepconv`` script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as err:
        # User errors carry a message written for people: show it without a traceback.
        print(f"sepconv {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
