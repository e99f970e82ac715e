"""The activations a fused kernel applies in its epilogue, by name and by code.

A kernel takes its activation as a compile-time integer (``ACT``) so that Triton specialises
the epilogue; :func:`activation_code` maps a module (``nn.ReLU6()``) or a name (``"relu6"``)
to that code, and :func:`apply_activation` is the device function every kernel calls.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import nn

from sepconv.utils.validation import invalid

#: Activation name -> the code the kernels specialise on.
ACTIVATIONS = {"none": 0, "relu": 1, "relu6": 2, "silu": 3, "hardswish": 4, "sigmoid": 5}
_MODULES: dict[type[nn.Module], str] = {
    nn.Identity: "none",
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.SiLU: "silu",
    nn.Hardswish: "hardswish",
    nn.Sigmoid: "sigmoid",
}


def activation_code(act: nn.Module | str | None) -> int:
    """The kernel code of ``act``: a module of an exact supported type, a name, or ``None``.

    Raises:
        ValueError: for an activation the kernels do not compute (the caller keeps the vendor
            path for that block).

    Example:
        >>> activation_code(nn.ReLU6()), activation_code("silu"), activation_code(None)
        (2, 3, 0)
    """
    if act is None:
        return 0
    name = act if isinstance(act, str) else _MODULES.get(type(act))
    if name not in ACTIVATIONS:
        shown = act if isinstance(act, str) else type(act).__name__
        raise invalid("act", f"one of {', '.join(ACTIVATIONS)} (or its nn module)", shown)
    return ACTIVATIONS[name]


@triton.jit
def apply_activation(x, ACT: tl.constexpr):
    """``x`` (fp32) through activation ``ACT`` (a code of :data:`ACTIVATIONS`)."""
    if ACT == 1:
        x = tl.maximum(x, 0.0)
    elif ACT == 2:
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACT == 3:
        x = x * tl.sigmoid(x)
    elif ACT == 4:
        x = x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    elif ACT == 5:
        x = tl.sigmoid(x)
    return x
