"""A training run's folder: what makes it one, and when a new run may write into it.

A run folder holds the Trainer's files: the checkpoint (``last.safetensors``), the weights
(``model.safetensors``) and the log (``log.jsonl``). A new run into a folder that holds them
would replace another run's results, so it is refused unless it continues that run (resumes
from its checkpoint) or is told to replace it. One process writes a folder at a time
(:func:`~sepconv.utils.files.locked_folder`, held by :meth:`~sepconv.train.Trainer.fit`).
"""

from __future__ import annotations

import os
from pathlib import Path

from sepconv.train.checkpoint import CHECKPOINT_NAME, WEIGHTS_NAME
from sepconv.train.loop import LOG_NAME
from sepconv.utils.files import same_file
from sepconv.utils.locks import folder_holder
from sepconv.utils.validation import invalid

__all__ = ["RUN_FILES", "check_run_folder", "claim_run_folder", "clear_run_folder"]

RUN_FILES = (CHECKPOINT_NAME, WEIGHTS_NAME, LOG_NAME)
"""The files a training run writes into its folder."""


def check_run_folder(
    out_dir: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None,
    overwrite: bool,
    names: tuple[str, str, str] = ("out_dir", "resume", "overwrite"),
) -> None:
    """Refuse to start a run in ``out_dir`` when another process is training there, or when it
    holds another run's files and the new run neither continues that run nor replaces it.

    Args:
        out_dir: The run folder (need not exist).
        resume: The checkpoint the run continues from, or ``None`` for a new run. A run that
            continues the folder's own checkpoint may write there; one that continues another
            checkpoint would mix two runs in one folder and needs ``overwrite``.
        overwrite: Replace the folder's run (:func:`clear_run_folder` then removes it).
        names: How the message names ``out_dir``, ``resume`` and ``overwrite`` (the command
            line: ``("--out", "--resume", "--overwrite")``).

    Raises:
        ValueError: naming the folder, what it holds and the way forward.
    """
    folder = Path(out_dir)
    out_name, resume_name, overwrite_name = names
    holder = folder_holder(folder)
    if holder is not None:
        raise invalid(
            out_name,
            "a folder no other process is training into",
            str(folder),
            note=f" (in use by process {holder}; wait for it to end, or choose another folder)",
        )
    held = [name for name in RUN_FILES if (folder / name).exists()]
    checkpoint = folder / CHECKPOINT_NAME
    own = resume is not None and checkpoint.exists() and same_file(resume, checkpoint)
    if own and overwrite:
        raise invalid(
            overwrite_name,
            f"no {overwrite_name} when continuing the folder's own checkpoint",
            True,
            note=f" with {resume_name} {str(resume)!r}",
        )
    if not held or overwrite or own:
        return
    # A flag is typed as it is; an argument is set: `overwrite=True`.
    replace = overwrite_name if overwrite_name.startswith("-") else f"`{overwrite_name}=True`"
    if resume is None:
        way = f"continue it with `{resume_name}`, replace it with {replace}"
    else:
        way = f"replace it with {replace} (it is not the run {str(resume)!r} continues)"
    raise invalid(
        out_name,
        "a folder without another run",
        str(folder),
        note=f", which holds a run ({', '.join(held)}); {way}, or choose another folder",
    )


def clear_run_folder(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the run files of ``out_dir`` (its other files stay); return those removed."""
    removed = []
    for name in RUN_FILES:
        path = Path(out_dir) / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def claim_run_folder(
    out_dir: str | os.PathLike[str], *, resume: str | os.PathLike[str] | None, overwrite: bool
) -> None:
    """:func:`check_run_folder` with the API's names, then, with ``overwrite``, remove the run
    it replaces (:func:`clear_run_folder`)."""
    check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    if overwrite:
        clear_run_folder(out_dir)
