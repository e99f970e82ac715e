"""sepconv's one model file format: a safetensors file that says how to rebuild its model.

Every file sepconv writes with weights in it (:func:`~sepconv.modelfile.save_model`, the
Trainer's ``model.safetensors`` and ``last.safetensors``, ``sepconv convert --output``) is a
safetensors file whose header metadata holds, under the key ``"sepconv"``, one JSON object:

.. code-block:: text

    {"format": 2, "kind": "weights" | "checkpoint",
     "arch": registered name or null, "kwargs": {builder arguments},
     "decoupled": {layer: rank},            # optional: convolutions decoupled after building
     "twin": [C, H, W],                     # optional: the standard twin, traced at this input
     "normalization": {"mean": [...], "std": [...]}, "classes": [...],  # optional
     "config": {training config}, "source": "ema" | "model",            # optional
     "provenance": {...},                   # optional: data, converted-from, ...
     "state": {...}}                        # checkpoints only: epoch, step, scheduler, ...

A weights file holds the model's tensors under their own names; a checkpoint is the same
record plus the training state, its tensors prefixed ``model.``, ``ema.``, ``optimizer.`` and
``rng.``; what the training state holds is the Trainer's business, not the format's.
:func:`read_model_file` also reads the three layouts older versions wrote (format 1: ``{"arch",
"kwargs"}`` from ``save_model``; ``{"kind", "model", "model_kwargs", ...}`` from the Trainer;
``"sepconv.convert"`` from ``sepconv convert``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sepconv.modelfile.interop import upgrade_keys
from sepconv.modelfile.record import ModelRecord
from sepconv.models import create_model, get_model_info, list_models
from sepconv.utils.files import file_kind, io_error, nearby_files, write_atomic

__all__ = [
    "FORMAT_VERSION",
    "LEGACY_CONVERT_KEY",
    "METADATA_KEY",
    "FileKind",
    "ModelFile",
    "check_model_path",
    "read_model_file",
    "read_safetensors",
    "write_model_file",
    "write_safetensors",
]

METADATA_KEY = "sepconv"
"""The safetensors metadata key of sepconv's JSON header."""
FORMAT_VERSION = 2
LEGACY_CONVERT_KEY = "sepconv.convert"
"""Where ``sepconv convert`` of format 1 put its (incomplete) model description."""

FileKind = Literal["weights", "checkpoint"]
_MODEL_SUFFIXES = (".safetensors", ".pt", ".pth")
PathLike = str | os.PathLike[str]

# The header of a format 1 Trainer file mixed the model's identity, the run's metadata and the
# training state in one flat object; these fields were the training state. Format 1 is no longer
# written, so this list is fixed: later Trainers keep their state under "state", whatever its
# fields are called.
_FORMAT1_STATE_FIELDS = (
    "epoch",
    "step_in_epoch",
    "global_step",
    "world_size",
    "scheduler",
    "optimizer",
    "running",
    "epoch_time_s",
    "history",
    "distilled",
)


@dataclass(frozen=True)
class ModelFile:
    """What :func:`read_model_file` returns: the record, the tensors and the training state.

    Attributes:
        path: The file.
        kind: ``"weights"`` or ``"checkpoint"``.
        record: How to rebuild the model, and its extras.
        tensors: Every tensor of the file, under its name in the file; the names of earlier
            sepconv versions upgraded to today's for sepconv's own architectures.
        state: A checkpoint's training state (epoch, step, scheduler, ...); ``{}`` for weights.
        format: The format version the file was written in (1: older sepconv versions).
    """

    path: Path
    kind: FileKind
    record: ModelRecord
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def model_tensors(self) -> dict[str, torch.Tensor]:
        """The model's state dict: a checkpoint's EMA weights when it has them (what training
        exports and evaluates), else its ``model.`` tensors; a weights file's tensors as such."""
        if self.kind == "weights":
            return dict(self.tensors)
        prefix = "ema." if any(k.startswith("ema.") for k in self.tensors) else "model."
        return {k[len(prefix) :]: t for k, t in self.tensors.items() if k.startswith(prefix)}


def write_safetensors(
    path: PathLike, tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any] | None
) -> None:
    """Write ``tensors`` and the JSON-able ``header`` (under ``"sepconv"``), atomically.

    The tensors are copied to contiguous CPU tensors first: safetensors refuses shared storage
    (tied weights) and non-contiguous views.
    """
    body = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    metadata = None if header is None else {METADATA_KEY: json.dumps(header)}

    def save(tmp: Path) -> None:
        try:
            save_file(body, str(tmp), metadata=metadata)
        except SafetensorError as err:
            if "IoError" not in str(err):
                raise
            # A full disk or a read-only file system, said as an OSError naming the file.
            raise io_error(err, path) from err

    write_atomic(Path(path), save)


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, header metadata)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable safetensors file (truncated, corrupted, another format).
    """
    file = Path(path)
    check_model_path(file)
    with open(file, "rb"):  # a file that cannot be read is an OSError, not a corrupt file
        pass
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(file)), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"File {file} is not a readable safetensors file ({err}); it may be truncated or "
            "corrupted: save or download it again."
        ) from err


def check_model_path(file: Path) -> None:
    """Raise unless ``file`` is a regular file, saying what is there instead and which model
    files of its folder could be meant.

    Raises:
        FileNotFoundError: nothing is there.
        IsADirectoryError: a directory is there.
        ValueError: a named pipe, a device or a socket is there (never opened: reading a named
            pipe would wait for a writer).
    """
    if file.is_file():
        return
    kind = file_kind(file)
    nearby = nearby_files(file, _MODEL_SUFFIXES)
    listed = ", ".join(repr(f) for f in nearby)
    if kind == "a directory":
        holds = f"it holds {listed}: give one of them" if nearby else "it holds no model file"
        raise IsADirectoryError(f"Weight file {file} is a directory, not a file; {holds}.")
    if kind is not None:
        raise ValueError(f"Weight file {file} is {kind}, not a regular file.")
    meant = f"; {file.parent} holds {listed}: did you mean one of them?" if nearby else "."
    raise FileNotFoundError(f"Weight file {file} does not exist{meant}")


def write_model_file(
    path: PathLike,
    tensors: Mapping[str, torch.Tensor],
    record: ModelRecord,
    *,
    kind: FileKind = "weights",
    state: Mapping[str, Any] | None = None,
) -> None:
    """Write a model file: ``tensors`` with ``record`` (and a checkpoint's ``state``), atomically.

    Args:
        path: Destination ``.safetensors`` file; its folder must exist.
        tensors: A weights file's state dict, or a checkpoint's prefixed tensors.
        record: How to rebuild the model.
        kind: ``"weights"`` or ``"checkpoint"``.
        state: JSON-able training state of a checkpoint.

    Example:
        >>> model = create_model("mobilenet_v1_025", num_classes=10)
        >>> write_model_file("m.safetensors", model.state_dict(), ModelRecord.of(model))
    """
    header: dict[str, Any] = {"format": FORMAT_VERSION, "kind": kind, **record.to_json()}
    if kind == "checkpoint":
        header["state"] = dict(state or {})
    write_safetensors(path, tensors, header)


def read_model_file(path: PathLike) -> ModelFile:
    """Read a model file of any sepconv version: record, tensors and training state.

    The tensors of a sepconv architecture carry today's key names, whichever version wrote them
    (:func:`~sepconv.modelfile.interop.upgrade_keys`), so every reader of the file (loading,
    evaluation, a Trainer's resume) sees the names of the model it builds.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is unreadable, has no sepconv header, or a malformed one.

    Example:
        >>> read_model_file("runs/a/model.safetensors").record.arch  # doctest: +SKIP
        'mobilenet_v1_025'
    """
    read = _read(Path(path))
    if not _is_sepconv_architecture(read.record.arch):
        return read
    return replace(read, tensors=upgrade_keys(read.tensors))


def _is_sepconv_architecture(arch: str | None) -> bool:
    """Whether ``arch`` is one of sepconv's own models, whose key names sepconv knows: models
    registered by user code keep the names their files hold."""
    return arch in list_models() and get_model_info(arch).builder.__module__.startswith(
        "sepconv.models."
    )


def _read(file: Path) -> ModelFile:
    """The file as it is: record, tensors under the names they were written with, state."""
    tensors, metadata = read_safetensors(file)
    if METADATA_KEY not in metadata and LEGACY_CONVERT_KEY not in metadata:
        raise ValueError(
            f"Model file {file} has no sepconv architecture metadata: expected a .safetensors "
            "file written by sepconv (save_model, `sepconv train`, `sepconv convert`); use "
            "load_weights() with a model you build yourself for other files."
        )
    try:
        if METADATA_KEY not in metadata:
            convert = json.loads(metadata[LEGACY_CONVERT_KEY])
            return ModelFile(file, "weights", _legacy_convert(convert, tensors), tensors, format=1)
        header = json.loads(metadata[METADATA_KEY])
        if not isinstance(header, dict):
            raise TypeError(f"the header is a {type(header).__name__}, not an object")
        if header.get("format") == FORMAT_VERSION:
            kind = header["kind"]
            if kind not in ("weights", "checkpoint"):
                raise ValueError(f"`kind` must be 'weights' or 'checkpoint', not {kind!r}")
            state = header.get("state") or {}
            if not isinstance(state, dict):
                raise ValueError(f"`state` must be an object, not {state!r}")
            return ModelFile(file, kind, ModelRecord.from_json(header), tensors, dict(state))
        if "format" in header:
            raise ValueError(f"format {header['format']!r} is newer than this sepconv reads")
        return _legacy(file, header, tensors)
    except (
        json.JSONDecodeError,
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        ZeroDivisionError,
    ) as err:
        raise ValueError(
            f"Model file {file} has malformed sepconv metadata ({err}); write it again with "
            "this version of sepconv."
        ) from err


def _legacy(file: Path, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ModelFile:
    """A format 1 file: ``save_model``'s ``{"arch", "kwargs"}`` or a Trainer file."""
    if "kind" not in header:
        record = ModelRecord(arch=header["arch"], kwargs=dict(header["kwargs"]))
        return ModelFile(file, "weights", record, tensors, format=1)
    if header["kind"] not in ("weights", "checkpoint"):
        raise ValueError(f"`kind` must be 'weights' or 'checkpoint', not {header['kind']!r}")
    identity = {"model", "model_kwargs", "kind", "source", "config", "normalization", "classes"}
    rest = {k: v for k, v in header.items() if k not in identity}
    record = ModelRecord.from_json(
        {
            **header,
            "arch": header.get("model"),
            "kwargs": header.get("model_kwargs") or {},
            "provenance": {k: v for k, v in rest.items() if k not in _FORMAT1_STATE_FIELDS},
        }
    )
    state = {k: v for k, v in rest.items() if k in _FORMAT1_STATE_FIELDS}
    return ModelFile(file, header["kind"], record, tensors, state, format=1)


def _legacy_convert(convert: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ModelRecord:
    """A format 1 ``sepconv convert`` file: the original's name and the decoupled layers; the
    builder arguments (``num_classes``, ``in_chans``, all the command set) are read from the
    classifier's and the first convolution's shapes."""
    arch = convert["model"]
    decoupled = {layer["name"]: int(layer["rank"]) for layer in convert["layers"]}
    probe = create_model(arch, in_chans=1)
    first = next(name for name, m in probe.named_modules() if isinstance(m, nn.Conv2d))
    if f"{first}.weight" in tensors:
        in_chans = int(tensors[f"{first}.weight"].shape[1])
    else:  # decoupled: C_in * rank depthwise kernels
        in_chans = int(tensors[f"{first}.conv_dw.weight"].shape[0]) // decoupled[first]
    num_classes = int(tensors["classifier.weight"].shape[0])
    return ModelRecord(
        arch=arch,
        kwargs={"num_classes": num_classes, "in_chans": in_chans},
        decoupled=decoupled,
        provenance={"converted_from": arch},
    )
