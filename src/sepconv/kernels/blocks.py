"""sepconv's blocks run on the fused kernels, and a model converted block by block.

:func:`to_triton` takes a model whose BatchNorms are already folded (:func:`sepconv.fuse`) and
replaces every block it can compute with a module that calls the kernels of this package:

- an :class:`~sepconv.layers.InvertedResidual` (MBConv too): the expansion and the depthwise
  conv in one kernel (:func:`~sepconv.kernels.expand_depthwise.expand_depthwise`, or two
  kernels with ``fuse_expand=False``), a squeeze-excite gate computed in PyTorch on the pooled
  ``(N, C)`` values and applied inside the projection's loads, and the projection with its
  bias and residual add in one GEMM;
- a :class:`~sepconv.layers.DepthwiseSeparableConv2d`: depthwise then pointwise kernel;
- a 1x1 or depthwise conv-norm-act unit on its own (:class:`ConvUnit`).

Anything else (the stem's standard conv, pooling, the classifier, a block with an activation
the kernels do not compute) stays as it is, run by PyTorch in the same dtype and memory format.
The converted model takes and returns channels_last tensors of the dtype it was converted to.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from sepconv.kernels.activations import activation_code
from sepconv.kernels.depthwise import depthwise_conv
from sepconv.kernels.expand_depthwise import expand_depthwise
from sepconv.kernels.pointwise import pointwise_conv
from sepconv.layers import DepthwiseSeparableConv2d, InvertedResidual
from sepconv.layers.squeeze_excite import SqueezeExcite
from sepconv.utils.validation import invalid

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


class ConvUnit(nn.Module):
    """A folded conv-norm-act unit on its kernel: a 1x1 conv (GEMM) or a depthwise conv, its
    bias and activation fused.

    Attributes:
        weight, bias: The folded conv's parameters in the converted dtype (buffers).
        stride, padding: Of a depthwise unit (a 1x1 unit has stride 1, no padding).
        act: The activation's kernel code.
        depthwise: Which kernel computes it.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d, act: int, dtype: torch.dtype, *, depthwise: bool) -> None:
        super().__init__()
        weight = conv.weight.detach().to(dtype)
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias.detach().to(device=weight.device, dtype=dtype))
        self.stride = int(conv.stride[0])
        self.padding = int(conv.padding[0]) if isinstance(conv.padding, tuple) else 0
        self.act = act
        self.depthwise = depthwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depthwise:
            return depthwise_conv(
                x, self.weight, self.bias, stride=self.stride, padding=self.padding, act=self.act
            )
        return pointwise_conv(x, self.weight, self.bias, act=self.act)


def _unit(module: nn.Module, dtype: torch.dtype, *, depthwise: bool) -> ConvUnit | None:
    """``module`` as a kernel unit: one Conv2d (1x1 dense, or depthwise ``K x K`` square with
    odd ``K``, no dilation), then at most a folded-away norm (``nn.Identity``) and one
    activation the kernels compute; ``None`` for anything else."""
    children = list(module.children()) if isinstance(module, nn.Sequential) else [module]
    if not children or not isinstance(children[0], nn.Conv2d):
        return None
    conv = children[0]
    rest = [c for c in children[1:] if not isinstance(c, nn.Identity)]
    if len(rest) > 1:
        return None
    try:
        act = activation_code(rest[0]) if rest else 0
    except ValueError:
        return None
    k, s = conv.kernel_size, conv.stride
    plain = (
        conv.dilation == (1, 1) and k[0] == k[1] and s[0] == s[1] and conv.padding_mode == "zeros"
    )
    if depthwise:
        fits = conv.groups == conv.in_channels == conv.out_channels and k[0] % 2 == 1
        fits = fits and conv.padding == (k[0] // 2, k[0] // 2)
    else:
        fits = k == (1, 1) and conv.groups == 1 and s == (1, 1) and conv.padding in ((0, 0), 0)
    return ConvUnit(conv, act, dtype, depthwise=depthwise) if plain and fits else None


class TritonInvertedResidual(nn.Module):
    """An inverted residual (MobileNetV2 bottleneck, MBConv) on the fused kernels.

    Args:
        expand: The expansion unit, or ``None`` when the block has none (``t = 1``).
        depthwise: The depthwise unit.
        se: The block's squeeze-excite module (PyTorch, on pooled values), or ``None``.
        project: The linear projection unit.
        residual: Whether the input is added to the output.
        fuse_expand: Expansion and depthwise in one kernel (``True``) or two.
    """

    def __init__(
        self,
        expand: ConvUnit | None,
        depthwise: ConvUnit,
        se: SqueezeExcite | None,
        project: ConvUnit,
        *,
        residual: bool,
        fuse_expand: bool = True,
    ) -> None:
        super().__init__()
        self.expand, self.depthwise, self.project = expand, depthwise, project
        self.se = se
        self.residual = residual
        self.fuse_expand = fuse_expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, d, p = self.expand, self.depthwise, self.project
        if e is not None and self.fuse_expand:  # the expanded tensor never in memory
            y = expand_depthwise(
                x,
                e.weight,
                e.bias,
                d.weight,
                d.bias,
                stride=d.stride,
                padding=d.padding,
                expand_act=e.act,
                depthwise_act=d.act,
            )  # fmt: skip  (N, C_exp, H', W')
        else:
            y = d(x if e is None else e(x))
        scale = None
        if self.se is not None:
            scale = _gate(self.se, y)  # (N, C_exp)
        return pointwise_conv(
            y, p.weight, p.bias, act=p.act, residual=x if self.residual else None, scale=scale
        )

    def bytes_moved(self, input_shape: tuple[int, int, int, int], element_size: int) -> int:
        """Bytes this block's kernels read and write from global memory for one call on an
        input of ``input_shape`` ``(N, C_in, H, W)``, each tensor touched once (the floor of
        this schedule, counted, not measured): the input, the depthwise output, the output
        and the weights; with ``fuse_expand=False`` the expanded tensor written and read back
        too; with a gate, its ``(N, C)`` values. The residual is the input read again."""
        n, c_in, h, w = input_shape
        d, p, e = self.depthwise, self.project, self.expand
        c_exp = d.weight.shape[0]
        ho = (h + 2 * d.padding - d.weight.shape[-1]) // d.stride + 1
        wo = (w + 2 * d.padding - d.weight.shape[-1]) // d.stride + 1
        c_out = p.weight.shape[0]
        elements = n * h * w * c_in  # the input, read by the first kernel
        elements += 2 * n * ho * wo * c_exp  # the depthwise output, written then read
        elements += n * ho * wo * c_out  # the output
        if self.residual:
            elements += n * h * w * c_in  # the shortcut, read by the projection
        if e is not None and not self.fuse_expand:
            elements += 2 * n * h * w * c_exp  # the expanded tensor, written then read
        if self.se is not None:
            elements += n * ho * wo * c_exp + 2 * n * c_exp  # pooled once more, the gate
        units = [u for u in (e, d, p) if u is not None]
        elements += sum(u.weight.numel() + u.bias.numel() for u in units)
        return elements * element_size


def _gate(se: SqueezeExcite, y: torch.Tensor) -> torch.Tensor:
    """The squeeze-excite gate of ``y``: pool, reduce, act, expand, gate, as ``(N, C)``."""
    pooled = y.float().mean((2, 3), keepdim=True)  # (N, C, 1, 1)
    reduce, expand = cast(nn.Conv2d, se.conv_reduce), cast(nn.Conv2d, se.conv_expand)
    hidden = se.act(F.conv2d(pooled, reduce.weight.float(), _float(reduce.bias)))
    gate = se.gate(F.conv2d(hidden, expand.weight.float(), _float(expand.bias)))
    return gate.flatten(1).to(y.dtype)


def _float(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.float()


class TritonSeparable(nn.Module):
    """A depthwise separable conv (depthwise then pointwise unit) on the kernels."""

    def __init__(self, depthwise: ConvUnit, pointwise: ConvUnit) -> None:
        super().__init__()
        self.depthwise, self.pointwise = depthwise, pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def bytes_moved(self, input_shape: tuple[int, int, int, int], element_size: int) -> int:
        """Bytes its two kernels read and write for one call on ``input_shape`` (the input, the
        depthwise output written and read back, the output, the weights), each once."""
        n, c_in, h, w = input_shape
        d, p = self.depthwise, self.pointwise
        k = d.weight.shape[-1]
        ho = (h + 2 * d.padding - k) // d.stride + 1
        wo = (w + 2 * d.padding - k) // d.stride + 1
        elements = n * h * w * c_in + 2 * n * ho * wo * c_in + n * ho * wo * p.weight.shape[0]
        elements += sum(u.weight.numel() + u.bias.numel() for u in (d, p))
        return elements * element_size


def _se(module: nn.Module) -> SqueezeExcite | bool | None:
    """The block's squeeze-excite, ``None`` without one, ``False`` when it is of a kind the
    converter does not know."""
    if isinstance(module, nn.Identity):
        return None
    if isinstance(module, SqueezeExcite):
        return module
    return False


def _convert(module: nn.Module, dtype: torch.dtype, fuse_expand: bool) -> nn.Module | None:
    """The kernel version of ``module``, or ``None`` when it has none."""
    if isinstance(module, InvertedResidual):
        has_expand = not isinstance(module.conv_pw, nn.Identity)
        expand = _unit(module.conv_pw, dtype, depthwise=False) if has_expand else None
        depthwise = _unit(module.conv_dw, dtype, depthwise=True)
        project = _unit(module.conv_pwl, dtype, depthwise=False)
        se = _se(module.se)
        if depthwise is None or project is None or se is False or (has_expand and expand is None):
            return None
        return TritonInvertedResidual(
            expand,
            depthwise,
            copy.deepcopy(se).float() if isinstance(se, SqueezeExcite) else None,
            project,
            residual=module.has_residual,
            fuse_expand=fuse_expand,
        )
    if isinstance(module, DepthwiseSeparableConv2d):
        depthwise = _unit(module.conv_dw, dtype, depthwise=True)
        pointwise = _unit(module.conv_pw, dtype, depthwise=False)
        if depthwise is None or pointwise is None:
            return None
        return TritonSeparable(depthwise, pointwise)
    if isinstance(module, nn.Sequential) and module and isinstance(module[0], nn.Conv2d):
        for is_depthwise in (True, False):
            unit = _unit(module, dtype, depthwise=is_depthwise)
            if unit is not None:
                return unit
    return None


def to_triton(
    model: nn.Module, *, dtype: torch.dtype = torch.bfloat16, fuse_expand: bool = True
) -> tuple[nn.Module, list[str]]:
    """A copy of a BatchNorm-folded ``model`` whose blocks run on the fused kernels.

    Args:
        model: An eval-mode model whose convs carry their folded BatchNorms
            (:func:`sepconv.fuse` first): a block still holding a BatchNorm keeps PyTorch.
        dtype: The precision of the converted model (``torch.bfloat16``, ``torch.float16`` or
            ``torch.float32``, the last for checking); accumulation is fp32 throughout.
        fuse_expand: Compute each inverted residual's expansion and depthwise conv in one
            kernel (the expanded tensor never in memory) rather than two.

    Returns:
        ``(converted model, names of the blocks converted)``. The model takes and returns
        channels_last tensors of ``dtype``; the blocks left out run in PyTorch.

    Example:
        >>> fast, blocks = to_triton(sepconv.fuse(model.eval()))  # doctest: +SKIP
        >>> fast(x.to(torch.bfloat16, memory_format=torch.channels_last))  # doctest: +SKIP
    """
    if dtype not in _FLOATS:
        raise invalid("dtype", "torch.float32, torch.bfloat16 or torch.float16", dtype)
    converted = copy.deepcopy(model).eval().to(dtype).to(memory_format=torch.channels_last)
    names: list[str] = []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            qualified = f"{prefix}{name}"
            replacement = _convert(child, dtype, fuse_expand)
            if replacement is not None:
                setattr(parent, name, replacement)
                names.append(qualified)
            else:
                walk(child, qualified + ".")

    walk(converted, "")
    return converted, names
