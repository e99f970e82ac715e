"""Writing a sweep's results folder: table, plots, config, command, machine, run logs.

Every file is written atomically, so an interrupted write leaves no half-written table.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sepconv.bench.output import markdown_environment
from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.plots import plot_results
from sepconv.reproduce.render import render_markdown
from sepconv.reproduce.table import ResultsTable
from sepconv.utils.files import write_json, write_text
from sepconv.utils.version import __version__

RESULT_FILES = (
    "results.json",
    "results.md",
    "acc_vs_params.png",
    "acc_vs_macs.png",
    "acc_vs_latency.png",
    "config.toml",
    "command.txt",
    "environment.json",
)
"""The files :func:`write_results` writes at the top of a results folder (and ``runs/``)."""
RUN_RECORDS = ("result.json", "log.jsonl")
"""The files of each run it copies under ``runs/<row>/seed<k>/``."""


def _versions() -> dict[str, str]:
    """Versions of sepconv, Python and the libraries behind the results."""
    # matplotlib only when results are written; the others are loaded by then anyway.
    import matplotlib
    import numpy
    import torch
    import tqdm

    return {
        "sepconv": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "tqdm": tqdm.__version__,
    }


def write_results(
    table: ResultsTable,
    out_dir: str | Path,
    *,
    config: ReproduceConfig,
    command: str,
    context: Mapping[str, Any],
    run_files: Mapping[str, Mapping[str, Path]],
) -> list[Path]:
    """Write everything a committed sweep result holds, each file atomically.

    Files in ``out_dir``: ``results.json`` and ``results.md`` (the table), the three plots of
    :func:`plot_results`, ``config.toml`` (the config as run), ``command.txt``,
    ``environment.json`` (machine, versions, threads, load average at start and end) and
    ``runs/<row>/seed<k>/`` with each run's ``result.json`` and training log.

    Args:
        table: The summarized results.
        out_dir: Destination folder (created).
        config: The sweep config.
        command: The command line that produced the results.
        context: Machine and run facts: ``environment`` (:func:`sepconv.bench.environment`),
            threads, device, load averages.
        run_files: Per run key (``<row>/seed<k>``), the files to copy under their names.

    Returns:
        The paths written.

    Example:
        >>> write_results(table, "results/x", config=config, command="sepconv reproduce x.toml",
        ...               context={"environment": environment()}, run_files={})  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(context)
    env["versions"] = _versions()
    written = [
        write_json(out / "results.json", {**table.to_dict(), "command": command, "context": env}),
        write_text(
            out / "results.md",
            render_markdown(table, markdown_environment(context["environment"], command)),
        ),
        *plot_results(table, out),
        write_text(out / "config.toml", config.text),
        write_text(out / "command.txt", command + "\n"),
        write_json(out / "environment.json", env),
    ]
    for key, files in run_files.items():
        folder = out / "runs" / key
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            if source.is_file():
                written.append(write_text(folder / name, source.read_text(encoding="utf-8")))
    return written
