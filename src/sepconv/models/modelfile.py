"""sepconv's one model file format: a safetensors file that says how to rebuild its model.

Every file sepconv writes with weights in it (:func:`~sepconv.models.save_model`, the
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
``rng.``. :func:`read_model_file` also reads the three layouts older versions wrote (``{"arch",
"kwargs"}`` from ``save_model``; ``{"kind", "model", "model_kwargs", ...}`` from the Trainer;
``"sepconv.convert"`` from ``sepconv convert``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sepconv.models._registry import create_model
from sepconv.utils.files import write_atomic

METADATA_KEY = "sepconv"
"""The safetensors metadata key of sepconv's JSON header."""
FORMAT_VERSION = 2
LEGACY_CONVERT_KEY = "sepconv.convert"
"""Where ``sepconv convert`` of format 1 put its (incomplete) model description."""

FileKind = Literal["weights", "checkpoint"]
PathLike = str | os.PathLike[str]

# Header fields of format 1 Trainer files that are training state, not the model's identity.
_STATE_FIELDS = (
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
class ModelRecord:
    """A model sepconv can rebuild: its registered architecture, builder arguments and extras.

    Attributes:
        arch: Registered model name (``sepconv zoo``), or ``None`` for a model built by user
            code, whose file still carries the extras but cannot be rebuilt from the file alone.
        kwargs: Keyword arguments of the builder (``num_classes``, ``in_chans``, ...).
        decoupled: Convolutions replaced by their decoupled, depthwise separable form after
            building (``sepconv convert``): qualified module name -> depth multiplier (rank).
        twin: ``(C, H, W)`` of the input the model's standard twin was traced at
            (:func:`sepconv.convert.standard_twin`: every depthwise + pointwise pair made one
            standard conv), or ``None`` for the architecture itself.
        mean: Per-channel mean the model's inputs are normalised with, or ``None``.
        std: Per-channel standard deviation, or ``None``.
        classes: Class names, index ``k`` for output ``k``, or ``None``.
        config: Training configuration (``TrainConfig.to_dict()``), or ``None``.
        source: Which weights of a training run a weights file holds: ``"ema"`` or ``"model"``.
        provenance: JSON-able facts on where the weights come from (``{"data": ...}``,
            ``{"converted_from": ...}``).

    Example:
        >>> record = ModelRecord("mobilenet_v1_025", {"num_classes": 10, "in_chans": 1})
        >>> record.build().classifier.out_features
        10
    """

    arch: str | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    decoupled: Mapping[str, int] = field(default_factory=dict)
    twin: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    config: Mapping[str, Any] | None = None
    source: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, **extras: Any) -> ModelRecord:
        """The record of a model built by :func:`~sepconv.models.create_model` (``arch`` is
        ``None`` for other models), decoupled by :func:`~sepconv.convert.separabilize` or made
        a :func:`~sepconv.convert.standard_twin`, with ``extras`` as further fields."""
        identity: dict[str, Any] = {
            "arch": getattr(model, "arch_name", None),
            "kwargs": dict(getattr(model, "arch_kwargs", None) or {}),
            "decoupled": dict(getattr(model, "arch_decoupled", None) or {}),
            "twin": getattr(model, "arch_twin", None),
        }
        return cls(**{**identity, **extras})

    def build(self) -> nn.Module:
        """Build the model this record describes, with freshly initialised weights.

        Raises:
            ValueError: the record names no registered architecture.
        """
        if self.arch is None:
            raise ValueError(
                "The model file records no registered architecture (the model was built by "
                "user code): build the model yourself and load the file with load_weights()."
            )
        model = create_model(self.arch, **self.kwargs)
        if self.decoupled:
            # Imported here: only converted models need the conversion code.
            from sepconv.convert.decouple import decouple

            for name, rank in self.decoupled.items():
                parent, _, child = name.rpartition(".")
                conv = model.get_submodule(name)
                if not isinstance(conv, nn.Conv2d):
                    raise ValueError(
                        f"The model file decouples layer {name!r} of {self.arch}, which is a "
                        f"{type(conv).__name__}, not an nn.Conv2d."
                    )
                setattr(model.get_submodule(parent), child, decouple(conv, rank).block)
        if self.twin is not None:
            from sepconv.convert.twin import standard_twin

            model, _ = standard_twin(model.eval(), torch.zeros(1, *self.twin))
        return model

    def to_json(self) -> dict[str, Any]:
        """The record's fields as the header's JSON object (optional fields only when set)."""
        data: dict[str, Any] = {"arch": self.arch, "kwargs": dict(self.kwargs)}
        if self.decoupled:
            data["decoupled"] = dict(self.decoupled)
        if self.twin is not None:
            data["twin"] = list(self.twin)
        if self.mean is not None and self.std is not None:
            data["normalization"] = {"mean": list(self.mean), "std": list(self.std)}
        if self.classes is not None:
            data["classes"] = list(self.classes)
        if self.config is not None:
            data["config"] = dict(self.config)
        if self.source is not None:
            data["source"] = self.source
        if self.provenance:
            data["provenance"] = dict(self.provenance)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelRecord:
        """Inverse of :meth:`to_json`; raises ``KeyError`` / ``TypeError`` on malformed data."""
        norm = data.get("normalization") or {}
        classes = data.get("classes")
        arch = data["arch"]
        if arch is not None and not isinstance(arch, str):
            raise TypeError(f"`arch` must be a string, not {type(arch).__name__}")
        return cls(
            arch=arch,
            kwargs=dict(data["kwargs"]),
            decoupled={str(k): int(v) for k, v in (data.get("decoupled") or {}).items()},
            twin=_shape(data["twin"]) if data.get("twin") is not None else None,
            mean=tuple(norm["mean"]) if "mean" in norm else None,
            std=tuple(norm["std"]) if "std" in norm else None,
            classes=tuple(classes) if classes is not None else None,
            config=data.get("config"),
            source=data.get("source"),
            provenance=dict(data.get("provenance") or {}),
        )


def _shape(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise TypeError(f"`twin` must be [C, H, W], not {value!r}")
    c, h, w = (int(v) for v in value)
    return (c, h, w)


@dataclass(frozen=True)
class ModelFile:
    """What :func:`read_model_file` returns: the record, the tensors and the training state.

    Attributes:
        path: The file.
        kind: ``"weights"`` or ``"checkpoint"``.
        record: How to rebuild the model, and its extras.
        tensors: Every tensor of the file, under its name in the file.
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
    write_atomic(Path(path), lambda tmp: save_file(body, str(tmp), metadata=metadata))


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, header metadata)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable safetensors file (truncated, corrupted, another format).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Weight file {file} does not exist.")
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(file)), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"File {file} is not a readable safetensors file ({err}); it may be truncated or "
            "corrupted: save or download it again."
        ) from err


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

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is unreadable, has no sepconv header, or a malformed one.

    Example:
        >>> read_model_file("runs/a/model.safetensors").record.arch  # doctest: +SKIP
        'mobilenet_v1_025'
    """
    file = Path(path)
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
            state = dict(header.get("state") or {})
            return ModelFile(file, kind, ModelRecord.from_json(header), tensors, state)
        if "format" in header:
            raise ValueError(f"format {header['format']!r} is newer than this sepconv reads")
        return _legacy(file, header, tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"Model file {file} has malformed sepconv metadata ({err}); write it again with "
            "this version of sepconv."
        ) from err


def _legacy(file: Path, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ModelFile:
    """A format 1 file: ``save_model``'s ``{"arch", "kwargs"}`` or a Trainer file."""
    if "kind" not in header:
        record = ModelRecord(arch=header["arch"], kwargs=dict(header["kwargs"]))
        return ModelFile(file, "weights", record, tensors, format=1)
    identity = {"model", "model_kwargs", "kind", "source", "config", "normalization", "classes"}
    rest = {k: v for k, v in header.items() if k not in identity}
    record = ModelRecord.from_json(
        {
            **header,
            "arch": header.get("model"),
            "kwargs": header.get("model_kwargs") or {},
            "provenance": {k: v for k, v in rest.items() if k not in _STATE_FIELDS},
        }
    )
    state = {k: v for k, v in rest.items() if k in _STATE_FIELDS}
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
