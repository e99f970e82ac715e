"""What every benchmark script shares: the flags that say where it writes, the command line and
the machine it records, the two files it writes, and reruns of itself in fresh processes.

A script writes ``RESULTS_DIR/OUT.json`` (every number, with the command that repeats the run
and the machine it ran on) and ``RESULTS_DIR/OUT.md`` (the tables a reader looks at), each
atomically (:mod:`sepconv.utils.files`): a run that stops part-way leaves the previous files
whole. ``RESULTS_DIR`` is ``results/benchmarks`` unless ``--results-dir`` says otherwise;
``OUT`` is the script's name, ``NAME_smoke`` with ``--smoke``, unless ``--out`` names it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepconv.bench import environment
from sepconv.bench.allocator import keep_freed_memory
from sepconv.bench.load import BUSY_SHARE, OtherLoad
from sepconv.bench.output import markdown_environment
from sepconv.bench.timing import NOISY_SPREAD
from sepconv.utils.files import write_json, write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmarks"


def positive_int(text: str) -> int:
    """An argparse ``type``: a positive integer, else a usage error that echoes ``text``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def add_output_flags(parser: argparse.ArgumentParser, *, report_only: bool = False) -> None:
    """``--results-dir`` and ``--out`` (and, if ``report_only``, ``--report-only``)."""
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS,
        help="folder the results are written to (default: results/benchmarks)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None,
        help="writes OUT.json and OUT.md (default: the script's name, NAME_smoke with --smoke)",
    )  # fmt: skip
    if report_only:
        parser.add_argument(
            "--report-only", action="store_true",
            help="measure nothing: rewrite OUT.md (and print the tables) from OUT.json",
        )  # fmt: skip


def add_smoke_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--smoke``: ``what`` it runs, at sizes that check the script and measure nothing."""
    parser.add_argument(
        "--smoke", action="store_true", help=f"{what}: checks the script, measures nothing useful"
    )


def command_line(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The command that repeats this run from the repository root, as results record it.

    Example:
        >>> command_line("/repo/benchmarks/settle.py", ["--rounds", "4"])
        'python benchmarks/settle.py --rounds 4'
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


@dataclass
class Run:
    """One run of a benchmark script: the command that repeats it, the files it writes, and the
    clock and load average at its start.

    Example:
        >>> run = Run("python benchmarks/settle.py", Path("/tmp"), "settle")
        >>> run.json_path
        PosixPath('/tmp/settle.json')
    """

    command: str
    folder: Path
    name: str
    started: float = field(default_factory=time.perf_counter)
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    others: OtherLoad = field(default_factory=OtherLoad)

    @classmethod
    def start(cls, script: str, args: argparse.Namespace, *, name: str | None = None) -> Run:
        """The run of ``script`` (its ``__file__``) that ``args`` of :func:`add_output_flags`
        ask for; ``name`` is the default file name (default: the script's)."""
        keep_freed_memory()  # every row times without the allocator's page faults (allocator.py)
        stem = name or Path(script).stem
        out = args.out or (f"{stem}_smoke" if getattr(args, "smoke", False) else stem)
        return cls(command_line(script), args.results_dir, out)

    @property
    def json_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def md_path(self) -> Path:
        return self.folder / f"{self.name}.md"

    def clock(self) -> dict[str, Any]:
        """The load average (1, 5, 15 min) at the start and now, the seconds since the start,
        and the share of the machine other processes used meanwhile (:class:`OtherLoad`)."""
        return {
            "loadavg_start": list(self.load_start),
            "loadavg_end": list(os.getloadavg()),
            "elapsed_s": time.perf_counter() - self.started,
            # Other processes' share of the machine's CPU time during the run (None: unknown);
            # above BUSY_SHARE the run's ratios are those of a busy machine.
            "other_cpu_share": self.others.share(),
            "busy": self.others.note(),
        }

    def record(self, threads: int | None = None) -> dict[str, Any]:
        """What every results JSON starts with: the command, the machine (with ``threads``, the
        pinned thread count; default PyTorch's) and :meth:`clock`."""
        return {"command": self.command, "environment": environment(threads), **self.clock()}

    def write(self, data: Mapping[str, Any], markdown: str | None = None) -> None:
        """Write ``data`` to OUT.json and ``markdown`` to OUT.md, each atomically."""
        self.write_json(data)
        if markdown is not None:
            self.write_markdown(markdown)

    def write_json(self, data: Mapping[str, Any]) -> None:
        """Write ``data`` to OUT.json, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.json_path, data)
        print(f"wrote {self.json_path}", flush=True)

    def write_markdown(self, text: str) -> None:
        """Write ``text`` to OUT.md, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self.md_path, text)
        print(f"wrote {self.md_path}", flush=True)

    def read(self) -> dict[str, Any]:
        """The data of OUT.json (for ``--report-only``); a missing file ends the script with a
        message that says which and what to do."""
        if not self.json_path.is_file():
            raise SystemExit(
                f"--report-only: no results file {self.json_path}; run the benchmark first, or "
                "name its folder and file with --results-dir and --out."
            )
        return json.loads(self.json_path.read_text(encoding="utf-8"))


def _mappings(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping inside ``data`` (a results record), with its path: keys joined by " / ",
    a list's items named by the ``model`` of the record there is one."""
    if isinstance(data, Mapping):
        yield " / ".join(path), data
        for key, value in data.items():
            yield from _mappings(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            name = value.get("model") if isinstance(value, Mapping) else None
            yield from _mappings(value, (*path[:-1], str(name)) if name else (*path, str(index)))


def noisy_timings(data: Any) -> list[str]:
    """Where ``data`` (a results record) holds a timing (a mapping with ``median_ms`` and
    ``iqr_ms``) whose blocks spread by more than ``NOISY_SPREAD`` of its median: the path to
    each, named by the ``model`` of the record it sits in where there is one.

    Example:
        >>> noisy_timings({"models": [{"model": "m", "rows": {
        ...     "a": {"median_ms": 2.0, "iqr_ms": 0.1}, "b": {"median_ms": 2.0, "iqr_ms": 1.0}}}]})
        ['m / rows / b']
    """
    found: list[str] = []
    for path, record in _mappings(data):
        median, iqr = record.get("median_ms"), record.get("iqr_ms")
        timed = isinstance(median, int | float) and isinstance(iqr, int | float) and median > 0
        if timed and iqr / median > NOISY_SPREAD:
            found.append(path)
    return found


def busy_races(data: Any) -> list[str]:
    """Where ``data`` (a results record) holds a choice ``compile_for_inference`` made by
    timing its candidates on a busy machine (``race_busy_share`` above ``BUSY_SHARE``): the
    path to each, with the share.

    Example:
        >>> busy_races({"models": [{"model": "m", "auto": {"race_busy_share": 0.4}}]})
        ['m / auto (40%)']
    """
    found: list[str] = []
    for path, record in _mappings(data):
        share = record.get("race_busy_share")
        if isinstance(share, int | float) and share > BUSY_SHARE:
            found.append(f"{path} ({100 * share:.0f}%)")
    return found


def header(title: str, data: Mapping[str, Any]) -> str:
    """The start of every results Markdown: the title, the command and the machine, and what
    makes the run's figures no result: other processes busy (:class:`OtherLoad`) during the
    run or during a backend choice it records (:func:`busy_races`), or timings whose blocks
    spread too far (:func:`noisy_timings`: the machine's speed changed under them,
    which a virtual machine's host can do with nothing inside it to show)."""
    text = f"# {title}\n\n{markdown_environment(data['environment'], data['command'])}"
    if data.get("busy"):
        text += f"\n\n**Not a result: {data['busy']}.** Rerun on a quiet machine."
    races = busy_races(data)
    if races:
        text += (
            f"\n\n**Chosen on a busy machine: {'; '.join(races)}.** Other processes used more "
            f"than {100 * BUSY_SHARE:.0f}% of the machine while `compile_for_inference` timed "
            "its candidates there; its choice need not be the fastest on a quiet machine."
        )
    noisy = noisy_timings({k: v for k, v in data.items() if k != "environment"})
    if noisy:
        shown = "; ".join(noisy[:6]) + (f"; and {len(noisy) - 6} more" if len(noisy) > 6 else "")
        text += (
            f"\n\n**Noisy timings: {len(noisy)} timing(s) whose blocks spread by more than "
            f"{100 * NOISY_SPREAD:.0f}% of their median (interquartile range): {shown}.** The "
            "machine's speed changed while they were timed; a ratio that involves one of them "
            "is not a result."
        )
    return text


def clock_line(data: Mapping[str, Any]) -> str:
    """The load averages and the run's length, from the fields of :meth:`Run.clock`."""
    start, end = (", ".join(f"{v:.2f}" for v in data[k]) for k in ("loadavg_start", "loadavg_end"))
    line = (
        f"Load average (1, 5, 15 min) at start: {start}; at end: {end}. "
        f"Whole run: {data['elapsed_s'] / 60:.1f} min."
    )
    return line


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--x v`` and ``--x=v``).

    Example:
        >>> without_options(["--reruns", "3", "--smoke", "--out=a"], ("--reruns", "--out"))
        ['--smoke']
    """
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg.split("=", 1)[0] in names:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return kept


def rerun(script: str, count: int, folder: Path) -> list[dict[str, Any]]:
    """Run ``script`` ``count`` times, each in a fresh process with this process's arguments
    (less ``--reruns``, ``--results-dir`` and ``--out``); every run's data, in order.

    Run K writes ``folder/runK.json`` as it finishes, so a long series that stops part-way
    keeps its finished runs: started again with the same arguments, it reuses them and runs
    only the missing ones. The caller removes ``folder`` once it has written its summary.
    """
    arguments = without_options(sys.argv[1:], ("--reruns", "--results-dir", "--out"))
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(count):
        out = f"run{index + 1}"
        path = folder / f"{out}.json"
        if path.exists():
            done = json.loads(path.read_text(encoding="utf-8"))
            if done.get("rerun_arguments") == arguments:
                print(f"rerun {index + 1}/{count}: reusing {path}", flush=True)
                runs.append(done)
                continue
        print(f"rerun {index + 1}/{count}, in a fresh process ...", flush=True)
        subprocess.run(
            [sys.executable, script, *arguments, "--results-dir", str(folder), "--out", out],
            check=True,
        )
        done = json.loads(path.read_text(encoding="utf-8"))
        done["rerun_arguments"] = arguments
        write_json(path, done)
        runs.append(done)
    return runs
