"""Activations by name: the one table that architecture tables name their nonlinearities from.

MobileNetV3's table marks each block ``RE`` or ``HS``, ConvNeXt uses GELU, EfficientNet SiLU: a
model's typed rows carry the name (``"hardswish"``) and :func:`get_activation` turns it into the
factory that :class:`~sepconv.layers.ConvNormAct` and the blocks take. The names are PyTorch's
own (``torch.nn.functional.hardswish``), one per activation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Literal

from torch import nn

from sepconv.utils.validation import invalid

ActName = Literal["relu", "relu6", "silu", "hardswish", "gelu", "sigmoid", "hardsigmoid"]
"""The activation names :func:`get_activation` knows."""

ACTIVATIONS: Final[Mapping[str, Callable[[], nn.Module]]] = MappingProxyType(
    {
        "relu": nn.ReLU,  # max(0, x)
        "relu6": nn.ReLU6,  # min(max(0, x), 6): MobileNetV1/V2
        "silu": nn.SiLU,  # x * sigmoid(x), "swish": EfficientNet
        "hardswish": nn.Hardswish,  # x * relu6(x + 3) / 6: MobileNetV3's h-swish
        "gelu": nn.GELU,  # x * Phi(x), exact (erf) form: ConvNeXt
        "sigmoid": nn.Sigmoid,  # squeeze-excite gate (EfficientNet)
        "hardsigmoid": nn.Hardsigmoid,  # relu6(x + 3) / 6: MobileNetV3's squeeze-excite gate
    }
)
"""Activation name -> the ``nn.Module`` class that builds it (a factory taking no arguments)."""


def get_activation(name: str) -> Callable[[], nn.Module]:
    """Return the activation factory registered under ``name``.

    Args:
        name: One of :data:`ACTIVATIONS`: ``"relu"``, ``"relu6"``, ``"silu"``, ``"hardswish"``,
            ``"gelu"``, ``"sigmoid"``, ``"hardsigmoid"``.

    Raises:
        ValueError: for any other name, listing the known ones and suggesting the closest.

    Example:
        >>> get_activation("hardswish")()
        Hardswish()
    """
    if isinstance(name, str) and name in ACTIVATIONS:
        return ACTIVATIONS[name]
    close = difflib.get_close_matches(str(name), list(ACTIVATIONS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise invalid("act", f"one of {', '.join(ACTIVATIONS)}", name, note=hint)
