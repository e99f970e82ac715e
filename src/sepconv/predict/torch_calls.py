"""Kernels as the PyTorch calls a model makes for them: a BatchNorm-folded conv is
``F.conv2d`` with a bias and its activation after it, a squeeze-excite block its pool, two
1x1 convs and the gate, and so on (what :class:`sepconv.predict.timers.TorchTimer` times; the
ONNX runtimes' counterpart is :mod:`sepconv.predict.onnx_graph`). The weights are small random
values, seeded, so that a timing never meets overflow or denormals.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sepconv.predict.kernels import Kernel

__all__ = ["torch_function"]

_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
}


def torch_function(kernel: Kernel, device: torch.device) -> Callable[..., torch.Tensor]:
    """The ops the model calls for ``kernel``, as one function of its input tensors."""
    gen = torch.Generator().manual_seed(0)

    def weight(*shape: int) -> torch.Tensor:
        return (0.1 * torch.randn(shape, generator=gen)).to(device)

    act = _ACTS.get(kernel.act) if kernel.act else None
    if kernel.kind == "conv":
        cin, cout = kernel.inputs[0][1], kernel.output[1]
        w = weight(cout, cin // kernel.groups, kernel.kernel_size, kernel.kernel_size)
        b = weight(cout)
        s, p, d, g = kernel.stride, kernel.padding, kernel.dilation, kernel.groups

        def conv(x: torch.Tensor, *residual: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, w, b, s, p, d, g)
            if act is not None:
                y = act(y)
            return y + residual[0] if residual else y

        return conv
    if kernel.kind == "act" and act is not None:
        return act
    if kernel.kind == "add":
        return torch.add
    if kernel.kind == "mul":
        return torch.mul
    if kernel.kind == "scale":
        gamma = weight(kernel.inputs[0][1], 1, 1)
        return lambda x: x * gamma
    if kernel.kind == "se":
        c, h = kernel.inputs[0][1], kernel.hidden
        w1, b1, w2, b2 = weight(h, c, 1, 1), weight(h), weight(c, h, 1, 1), weight(c)
        inner, gate = _ACTS[kernel.act], _ACTS[kernel.gate]

        def se(x: torch.Tensor) -> torch.Tensor:
            scale = x.mean((2, 3), keepdim=True)
            scale = F.conv2d(inner(F.conv2d(scale, w1, b1)), w2, b2)
            return x * gate(scale)

        return se
    if kernel.kind == "layernorm":
        c = kernel.inputs[0][1]
        ln_w, ln_b = weight(c), weight(c)
        if kernel.transposed:
            return lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (c,), ln_w, ln_b, 1e-6).permute(
                0, 3, 1, 2
            )
        return lambda x: F.layer_norm(x, (x.shape[-1],), None, None, 1e-6)
    if kernel.kind == "pool":
        return lambda x: F.adaptive_avg_pool2d(x, 1)
    if kernel.kind == "linear":
        w, b = weight(kernel.output[-1], kernel.inputs[0][-1]), weight(kernel.output[-1])
        return lambda x: F.linear(x, w, b)
    raise ValueError(
        f"Invalid value for argument `kernel`: expected a kernel kind, received {kernel.kind!r}."
    )
