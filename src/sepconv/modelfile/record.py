"""A model's record in its file: the architecture and builder arguments that rebuild it, the
conversions applied after building, and the extras (normalisation, classes, training config).

:meth:`ModelRecord.build` replays the record: the registered builder, then each decoupled
convolution (:func:`sepconv.convert.decouple`) and the standard twin
(:func:`sepconv.convert.standard_twin`), so a converted model rebuilds from its file alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sepconv.convert.decouple import decouple
from sepconv.convert.twin import standard_twin
from sepconv.models import create_model

__all__ = ["ModelRecord"]


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

    def build(self, *, origin: str | None = None) -> nn.Module:
        """Build the model this record describes, with freshly initialised weights.

        Args:
            origin: The file the record was read from, named by every error instead of the
                builder's arguments (which the reader of the file did not type).

        Raises:
            ValueError: the record names no registered architecture, or its arguments,
                decoupled layers or twin do not build.
        """
        if self.arch is None:
            raise ValueError(
                "The model file records no registered architecture (the model was built by "
                "user code): build the model yourself and load the file with load_weights()."
            )
        try:
            return self._build()
        except (ValueError, TypeError) as err:
            if origin is None:
                raise
            # "argument `x`" would read as an option of the command that reads the file.
            reason = re.sub(r"Invalid values? for arguments? `([^`]*)`", r"`\1`", str(err))
            raise ValueError(
                f"Model file {origin} records a model that cannot be built "
                f"({self.arch} with {dict(self.kwargs)}): {reason}"
            ) from err

    def _build(self) -> nn.Module:
        model = create_model(str(self.arch), **self.kwargs)
        for name, rank in self.decoupled.items():
            parent, _, child = name.rpartition(".")
            try:
                conv = model.get_submodule(name)
            except AttributeError:
                raise ValueError(
                    f"The model file decouples layer {name!r}, which {self.arch} does not have."
                ) from None
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(
                    f"The model file decouples layer {name!r} of {self.arch}, which is a "
                    f"{type(conv).__name__}, not an nn.Conv2d."
                )
            setattr(model.get_submodule(parent), child, decouple(conv, rank).block)
        if self.twin is not None:
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
        """Inverse of :meth:`to_json`, checking every field as read from an untrusted file.

        Raises:
            KeyError: ``arch`` or ``kwargs`` is missing.
            ValueError: a field of the wrong type or out of range, named.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"the record is a {type(data).__name__}, not an object")
        arch = data["arch"]
        if arch is not None and not isinstance(arch, str):
            raise ValueError(f"`arch` must be a string or null, not {arch!r}")
        norm = _field(data, "normalization", Mapping, "an object") or {}
        mean = _numbers(norm, "mean")
        std = _numbers(norm, "std")
        if mean is not None and std is not None:
            if len(mean) != len(std) or any(v <= 0 for v in std):
                raise ValueError(
                    "`normalization` must hold one mean and one std > 0 per channel, not "
                    f"{dict(norm)!r}"
                )
        elif (mean is None) != (std is None):
            raise ValueError(f"`normalization` must hold both `mean` and `std`, not {norm!r}")
        classes = _field(data, "classes", list, "a list of class names")
        if classes is not None and (
            not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes)
        ):
            raise ValueError(f"`classes` must be distinct strings, not {classes!r}")
        source = data.get("source")
        if source not in (None, "ema", "model"):
            raise ValueError(f"`source` must be 'ema', 'model' or null, not {source!r}")
        kwargs = _field(data, "kwargs", Mapping, "an object of builder arguments", required=True)
        return cls(
            arch=arch,
            kwargs=dict(kwargs or {}),
            decoupled=_decoupled(_field(data, "decoupled", Mapping, "an object") or {}),
            twin=_shape(data["twin"]) if data.get("twin") is not None else None,
            mean=mean,
            std=std,
            classes=tuple(classes) if classes is not None else None,
            config=_field(data, "config", Mapping, "an object"),
            source=source,
            provenance=dict(_field(data, "provenance", Mapping, "an object") or {}),
        )


def _field(
    data: Mapping[str, Any], key: str, kind: type, expected: str, *, required: bool = False
) -> Any:
    """``data[key]`` if it is a ``kind`` (``None`` when absent or null, unless ``required``)."""
    if key not in data and required:
        raise KeyError(key)
    value: Any = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (
        isinstance(value, Mapping) and not all(isinstance(k, str) for k in value)
    ):
        raise ValueError(f"`{key}` must be {expected}, not {value!r}")
    return value


def _numbers(norm: Mapping[str, Any], key: str) -> tuple[float, ...] | None:
    """``norm[key]`` as a tuple of finite floats (``None`` when absent)."""
    if key not in norm:
        return None
    values = norm[key]
    if (
        not isinstance(values, list)
        or not values
        or not all(_is_real(v) and math.isfinite(v) for v in values)
    ):
        raise ValueError(f"`normalization.{key}` must be a list of finite numbers, not {values!r}")
    return tuple(float(v) for v in values)


def _decoupled(value: Mapping[str, Any]) -> dict[str, int]:
    """Layer name -> rank, each rank a positive integer."""
    for name, rank in value.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"`decoupled` rank of layer {name!r} must be an integer >= 1, not {rank!r}"
            )
    return dict(value)


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


# Largest side (and channel count) of a recorded twin input: a larger one is no image.
_MAX_TWIN_SIDE = 8192


def _shape(value: Any) -> tuple[int, int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        or not all(1 <= v <= _MAX_TWIN_SIDE for v in value)
    ):
        raise ValueError(
            f"`twin` must be [C, H, W], integers from 1 to {_MAX_TWIN_SIDE}, not {value!r}"
        )
    c, h, w = value
    return (c, h, w)
