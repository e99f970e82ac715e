"""The ``sepconv`` command line: one sub-command per module in this package.

Each module named in :data:`COMMANDS` exposes ``register(subparsers)``, which adds its
sub-parser and sets ``func`` to a callable taking the parsed arguments and returning an exit
code. Heavy imports happen inside those callables so that ``sepconv --help`` stays fast.

A user's mistake (a bad value, a missing file, a folder that cannot be written, memory that runs
out) ends the command with one line on stderr and exit code 2, never a traceback; the library's
"argument `batch_size`" becomes the flag the user typed, "`--batch-size`". ``--debug`` or
``SEPCONV_DEBUG=1`` shows the traceback instead, for bug reports. Anything else is a bug in
sepconv and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Mapping, Sequence

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
    "calibrate",
    "predict",
    "pick",
)

# What the user controls: bad values, paths and files, and the memory their sizes ask for.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, MemoryError)
OOM_HINT = "reduce --batch-size, --width-mult or the input size"


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="sepconv",
        description="Depthwise separable convolutions: build, measure, convert, train and ship.",
    )
    parser.add_argument("--version", action="version", version=f"sepconv {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also SEPCONV_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sepconv.cli.{name}").register(subparsers)
    for sub in subparsers.choices.values():
        sub.add_argument(
            "--wide",
            action="store_true",
            help="print every table column whatever the terminal's width (tables otherwise fit "
            "the terminal, or COLUMNS when the output is not one)",
        )
    return parser


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """The long option strings of sub-command ``command``, by the argument name the library
    would use for each: its own (``"batch_size": "--batch-size"``) and its destination where that
    differs (``"in_channels": "--in"``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            names: dict[str, str] = {}
            for sub_action in action.choices[command]._actions:
                long = [f for f in sub_action.option_strings if f.startswith("--")]
                for flag in long:
                    names[flag[2:].replace("-", "_")] = flag
                if long:
                    names.setdefault(sub_action.dest, long[0])
            return names
    return {}


def user_message(err: BaseException, flags: Mapping[str, str] | set[str]) -> str | None:
    """The one-line message for a user error, in the CLI's words; ``None`` for a bug."""
    is_oom = isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError)
        and ("out of memory" in str(err) or "can't allocate memory" in str(err))
    )
    if is_oom:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"out of memory ({first}); {OOM_HINT}"
    if not isinstance(err, USER_ERRORS):
        return None
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.strerror}: {err.filename!s}"
    message = str(err)

    names = flags if isinstance(flags, Mapping) else {f[2:].replace("-", "_"): f for f in flags}

    def as_flag(match: re.Match[str]) -> str:
        flag = names.get(match.group(1))
        return f"`{flag}`" if flag is not None else match.group(0)

    message = re.sub(r"argument `([A-Za-z_][A-Za-z0-9_]*)`", as_flag, message)
    # A check that already names the flag says it the same way.
    return re.sub(r"argument `(--[A-Za-z0-9-]+)`", r"`\1`", message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sepconv`` script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("SEPCONV_DEBUG", "") not in ("", "0")
    from sepconv.cli._console import set_wide

    set_wide(args.wide)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"\nsepconv {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = None if debug else user_message(err, _flags(parser, args.command))
        if message is None:
            raise
        # Start on a fresh line: a progress bar may have left the cursor mid-line.
        prefix = "\n" if sys.stderr.isatty() else ""
        print(f"{prefix}sepconv {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
