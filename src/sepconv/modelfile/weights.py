"""Weights in and out: sepconv model files, and torchvision / timm state dicts.

sepconv's files (:mod:`sepconv.modelfile.format`) are safetensors files whose header records
the registered architecture and its builder arguments, so :func:`load_model` rebuilds a model
from the file alone. Third-party ``.pth`` files are read with ``torch.load(...,
weights_only=True)``, which refuses to unpickle arbitrary objects. Every state dict reaches a
model through one function here, which maps its key names (:mod:`sepconv.modelfile.interop`:
torchvision's, timm's and those of earlier sepconv versions) and checks every key and shape
(:mod:`sepconv.modelfile.mismatch`) before loading.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from sepconv.modelfile.format import (
    LEGACY_CONVERT_KEY,
    METADATA_KEY,
    check_model_path,
    read_model_file,
    read_safetensors,
    write_model_file,
)
from sepconv.modelfile.interop import convert_state_dict
from sepconv.modelfile.mismatch import weight_mismatch
from sepconv.modelfile.record import ModelRecord
from sepconv.utils.validation import invalid

__all__ = ["load_model", "load_weights", "save_model"]

WeightFormat = Literal["auto", "torchvision", "timm", "sepconv"]
StateDict = Mapping[str, torch.Tensor]
PathLike = str | os.PathLike[str]


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Read a safetensors or ``.pth`` file: (state dict, whether sepconv wrote it).

    A sepconv checkpoint gives its model's (EMA when present) tensors without their prefix.
    """
    check_model_path(path)
    if path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path)
        if METADATA_KEY in metadata or LEGACY_CONVERT_KEY in metadata:
            return read_model_file(path).model_tensors(), True
        return tensors, False
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(
            f"Weight file {str(path)!r} is not a readable PyTorch state dict ({err}); "
            "it may be truncated, corrupted or contain pickled objects other than tensors."
        ) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    return _check_state_dict(loaded, str(path)), False


def _check_state_dict(obj: object, origin: str) -> dict[str, torch.Tensor]:
    """Return ``obj`` as a ``{str: Tensor}`` dict, or raise naming ``origin``."""
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"Invalid weights in {origin}: expected a mapping of str to torch.Tensor, "
            f"received {type(obj).__name__}."
        )
    return dict(obj)


def _detect_format(keys: set[str], from_sepconv: bool) -> str:
    """Guess where a state dict comes from by its key names."""
    if from_sepconv:
        return "sepconv"
    # before the "stages." test: timm's ConvNeXt names its stages so too
    if {"conv_stem.weight", "block1.skip.weight", "stem.0.weight"} & keys:
        return "timm"
    if any(k.startswith("stages.") for k in keys):
        return "sepconv"
    if {"features.0.0.weight", "features.0.weight", "layer1.0.conv1.weight"} & keys:
        return "torchvision"
    raise invalid(
        "format",
        "'torchvision', 'timm' or 'sepconv' when the keys do not tell",
        "auto",
        note=f": could not detect the source of the weights from their keys (first: "
        f"{sorted(keys)[:3]})",
    )


def load_weights(
    model: nn.Module,
    source: PathLike | StateDict,
    format: WeightFormat = "auto",
) -> nn.Module:
    """Load weights into ``model`` in place, mapping torchvision / timm key names.

    Args:
        model: A sepconv model (from :func:`create_model` or a builder).
        source: A state dict, a ``.pth`` / ``.pt`` file (read with ``weights_only=True``) or a
            ``.safetensors`` file (a sepconv checkpoint gives its EMA weights when it has them,
            else its model's).
        format: ``"torchvision"``, ``"timm"``, ``"sepconv"``, or ``"auto"`` to detect it from the
            keys. The supported pairs are listed in
            :data:`~sepconv.modelfile.interop.KEY_MAPS`; ``"sepconv"`` also reads the key names
            of earlier sepconv versions.

    Returns:
        ``model``, for chaining.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: an unreadable file (naming it), or weights that do not fit: the message
            counts the missing, unexpected and mis-shaped keys, shows the first few of each and
            names the likely cause (:func:`~sepconv.modelfile.mismatch.weight_mismatch`).

    Example:
        >>> import torchvision
        >>> model = load_weights(mobilenet_v2(), torchvision.models.mobilenet_v2().state_dict())
    """
    if format not in ("auto", "torchvision", "timm", "sepconv"):
        raise invalid("format", "'auto', 'torchvision', 'timm' or 'sepconv'", format)
    if isinstance(source, Mapping):
        state_dict, from_sepconv = _check_state_dict(source, "`source`"), False
        origin = "`source`"
    else:
        state_dict, from_sepconv = _read_file(Path(source))
        origin = repr(str(source))
    fmt = _detect_format(set(state_dict), from_sepconv) if format == "auto" else format
    return _load_into(model, state_dict, fmt, origin)


def _load_into(model: nn.Module, state_dict: StateDict, fmt: str, origin: str) -> nn.Module:
    """Convert ``state_dict`` from ``fmt``, check every key and shape, then load it."""
    converted, unmapped = convert_state_dict(model, state_dict, fmt)
    # Keys the converter could not map count as unexpected, under their original names.
    received = {**converted, **{k: state_dict[k] for k in unmapped if k not in converted}}
    problem = weight_mismatch(
        model.state_dict(), received, origin=f"{origin} ({fmt} format)", target=type(model).__name__
    )
    if problem is not None:
        raise ValueError(problem)
    model.load_state_dict(converted)
    return model


def save_model(model: nn.Module, path: PathLike) -> None:
    """Save ``model``'s state dict as a sepconv model file that records its architecture.

    The file (:mod:`sepconv.modelfile.format`) is written to a temporary name and moved into
    place, so a crash never leaves a half-written file at ``path``.

    Args:
        model: A model built by :func:`~sepconv.models.create_model` or a registered builder
            (then possibly converted: :func:`~sepconv.convert.separabilize`,
            :func:`~sepconv.convert.standard_twin`).
        path: Destination ``.safetensors`` file; its folder must exist.

    Raises:
        ValueError: ``model`` was not built by a registered builder (no architecture to record).

    Example:
        >>> save_model(create_model("mobilenet_v2", num_classes=10), "mnv2.safetensors")
        >>> model = load_model("mnv2.safetensors")
    """
    record = ModelRecord.of(model)
    if record.arch is None or getattr(model, "arch_kwargs", None) is None:
        raise invalid(
            "model",
            "a model built by create_model() or a registered builder",
            type(model).__name__,
            note=" without architecture metadata",
        )
    write_model_file(Path(path), model.state_dict(), record)


def load_model(path: PathLike) -> nn.Module:
    """Rebuild the model a sepconv file records and load its weights.

    Reads every file sepconv writes, of this version and older ones: :func:`save_model`'s,
    ``sepconv train``'s weights (``model.safetensors``) and checkpoints (``last.safetensors``:
    its EMA weights when the run kept an average, else the model's), and ``sepconv convert``'s.

    Args:
        path: The ``.safetensors`` file.

    Returns:
        The model, in training mode as any freshly built model; call ``.eval()`` to predict.

    Raises:
        FileNotFoundError: no such file (the message names the model files of its folder).
        IsADirectoryError: ``path`` is a directory (the message names its model files).
        ValueError: the file is unreadable, lacks sepconv's architecture metadata, records a
            model that does not build, or its tensors do not fit the architecture it records.

    Example:
        >>> model = load_model("runs/mobilenet_v1_025/last.safetensors").eval()  # doctest: +SKIP
    """
    file = read_model_file(path)
    model = file.record.build(origin=str(path))
    return _load_into(model, file.model_tensors(), "sepconv", repr(str(path)))
