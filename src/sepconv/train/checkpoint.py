"""Checkpoints and exported weights: safetensors files with a JSON header, written atomically.

Tensors (model, optimizer state, EMA, RNG states as ``uint8``) go in the safetensors body; the
rest (epoch, step, config, scheduler state, optimizer hyper-parameters, normalisation) goes in
the header's ``__metadata__`` under the key ``"sepconv"`` as JSON, so one file is one
consistent snapshot and ``os.replace`` makes it appear all at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sepconv.utils.files import write_atomic

META_KEY = "sepconv"


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``tensors`` and the JSON-able ``meta`` to a safetensors file, atomically.

    Example:
        >>> save_tensors("w.safetensors", {"x": torch.zeros(2)}, {"kind": "demo"})  # doctest: +SKIP
    """
    # Copies: safetensors needs contiguous tensors without shared storage (tied weights).
    body = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    header = {META_KEY: json.dumps(meta)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), lambda tmp: save_file(body, tmp, metadata=header))


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors`: ``(tensors, meta)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a safetensors file or lacks sepconv metadata.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Checkpoint file {file} does not exist.")
    try:
        with safe_open(str(file), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"File {file} is not a readable safetensors file: {err}.") from err
    if META_KEY not in header:
        raise ValueError(
            f"File {file} has no sepconv metadata; expected a checkpoint or weights file "
            "written by `sepconv train`."
        )
    return tensors, json.loads(header[META_KEY])


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix + name: tensor}``."""
    return {prefix + name: t for name, t in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}


def pack_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``"{param}.{key}"``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`pack_optimizer`, ready for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}
