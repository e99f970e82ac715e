"""Whether a sweep may write its results folder: it replaces nothing a user would lose.

A results folder (``results.json``, ``results.md``, the plots, ``config.toml``, ... and
``runs/<row>/seed<k>/``) is rewritten by a sweep only when its table keeps every run the folder
holds; a folder that holds files a sweep writes without being a results folder (a user's own
``results.md``, ``config.toml``...) is refused, and so is one where such a file is a directory, a
named pipe or a device. :func:`check_results_kept` is checked before any training.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sepconv.reproduce.config import ReproduceConfig
from sepconv.reproduce.results import RESULT_FILES, RUN_RECORDS
from sepconv.reproduce.runs import RESULT_NAME, RunSpec, read_result, run_identity
from sepconv.utils.files import file_kind
from sepconv.utils.validation import invalid

__all__ = ["check_results_kept", "check_results_writable", "table_runs"]


def table_runs(config: ReproduceConfig, runs_dir: Path, seeds: int | None) -> Iterator[RunSpec]:
    """Every run the sweep's table can list: each row's seeds up to its own or ``seeds``."""
    for row in config.rows:
        for seed in range(max(row.seeds, seeds or 0)):
            yield RunSpec(row, seed, runs_dir / row.name / f"seed{seed}")


def check_results_kept(
    config: ReproduceConfig,
    runs: Sequence[RunSpec],
    runs_dir: Path,
    out_dir: Path,
    seeds: int | None,
    names: tuple[str, str] = ("out_dir", "overwrite=True"),
) -> None:
    """Raise ``ValueError`` if ``out_dir`` holds the results of runs that the table of this
    sweep (the planned ``runs`` and every finished run of :func:`table_runs`) would not hold as
    they are: a row or seed it leaves out, or one it trains differently (another config,
    ``--epochs``) or takes from another runs folder without that run; or if it holds files a
    sweep writes (``results.md``, ``config.toml``, plots, run records) but is no results folder
    (no ``results.json`` table), or one of them is not a regular file.

    The runs of a results folder are those copied into its ``runs/<row>/seed<k>/``, each
    with the identity it was trained under; a sweep that keeps every one of them may rewrite
    the folder (its table then holds the same runs, and perhaps more). ``names``: how the
    message names the results folder and the way to overwrite it (``--out``, ``--overwrite``
    on the command line).
    """
    name, overwrite = names
    check_results_writable(out_dir, name)
    if not (out_dir / "results.json").is_file():
        # Not a results folder (yet): nothing of it may be one a sweep would replace.
        present = [f for f in RESULT_FILES if (out_dir / f).exists()]
        present += sorted(
            str(path.relative_to(out_dir))
            for record in RUN_RECORDS
            for path in (out_dir / "runs").glob(f"*/seed*/{record}")
        )
        if present:
            shown = ", ".join(present[:5]) + (
                f" and {len(present) - 5} more" if len(present) > 5 else ""
            )
            raise ValueError(
                f"{name}: expected a results folder, or a folder without the files a sweep "
                f"writes, received {str(out_dir)!r}, which holds {shown} but no results.json "
                f"of a sweep. Give another {name}, or {overwrite} to replace them."
            )
        return
    try:
        table = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = None
    if not isinstance(table, dict):
        raise ValueError(
            f"{name}: expected a results folder this sweep can rewrite, received "
            f"{str(out_dir)!r}, whose results.json is not the table of a sweep. Give another "
            f"{name}, or {overwrite} to replace it."
        )
    planned = {run.key for run in runs}
    kept: dict[str, dict[str, Any]] = {}
    for run in table_runs(config, runs_dir, seeds):
        done = run.status == "done"
        if done:
            read_result(run, config)  # a stale run is refused first, as by the sweep
        if done or run.key in planned:
            kept[run.key] = run_identity(run, config)
    lost = []
    for path in sorted((out_dir / "runs").glob(f"*/seed*/{RESULT_NAME}")):
        key = f"{path.parent.parent.name}/{path.parent.name}"
        try:
            identity = json.loads(path.read_text(encoding="utf-8")).get("identity")
        except (OSError, ValueError, AttributeError):
            identity = None
        if key not in kept:
            lost.append(f"{key} (not a run of this sweep in {runs_dir})")
        elif identity != kept[key]:
            lost.append(f"{key} (trained differently here)")
    if lost:
        shown = ", ".join(lost[:4]) + (f" and {len(lost) - 4} more" if len(lost) > 4 else "")
        raise ValueError(
            f"{name}: expected a results folder this sweep can rewrite without losing results, "
            f"received {str(out_dir)!r}, which holds the results of other runs: {shown}. Give "
            f"another {name}, or {overwrite} to replace them."
        )


def check_results_writable(out_dir: Path, name: str = "out_dir") -> None:
    """Raise ``ValueError`` naming ``name`` if a file :func:`write_results` writes into
    ``out_dir`` is there but is not a regular file (a directory, a named pipe, a device):
    found before training, not after it."""
    for path in [out_dir / f for f in RESULT_FILES] + [out_dir / "runs"]:
        kind = file_kind(path)
        if kind is not None and not (path.name == "runs" and kind == "a directory"):
            raise invalid(
                name,
                "a folder whose result files can be written",
                str(out_dir),
                note=f" ({path.name} there is {kind}, not a regular file)",
            )
