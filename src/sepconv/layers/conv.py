"""Convolution blocks: the Conv-Norm-Act primitive, depthwise, pointwise and separable convs.

Grouped convolution is the general case. A KxK convolution from ``C_in`` to ``C_out`` channels
with ``groups = g`` splits the input channels into ``g`` groups of ``C_in / g`` and gives each
output channel a ``(C_in / g) x K x K`` filter over its own group, so it has

    params = C_out * (C_in / g) * K * K        (+ C_out with bias)

- ``g = 1``: a standard convolution; every output sees every input channel
  (64 -> 64, 3x3: 36,864 weights).
- ``1 < g < C_in``: a grouped convolution (ResNeXt); the cost falls by ``g``
  (64 -> 64, 3x3: 18,432 for g = 2, 9,216 for g = 4).
- ``g = C_in``: a depthwise convolution; one filter per input channel, no channel mixing
  (64 -> 64, 3x3: 576). Followed by a pointwise (1x1, g = 1) convolution that mixes channels, it
  is a depthwise separable convolution, whose cost relative to the standard one is
  ``1 / C_out + 1 / K^2`` (Howard et al., "MobileNets", 2017, eq. 5).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sepconv.layers.squeeze_excite import SqueezeExcite, squeeze_channels
from sepconv.utils.validation import (
    check_input_channels,
    divisible,
    invalid,
    positive_int,
)


def kernel_padding(kernel_size: int, padding: int | None, dilation: int) -> int:
    """Validate a square kernel and return its padding (default: keep the size at stride 1).

    The default ``(kernel_size - 1) // 2 * dilation`` is symmetric only for odd kernels, so an even
    kernel needs an explicit ``padding``.
    """
    positive_int("kernel_size", kernel_size)
    positive_int("dilation", dilation)
    if padding is None:
        if kernel_size % 2 == 0:
            raise invalid(
                "kernel_size",
                "an odd size when `padding` is not given (an even kernel cannot be padded "
                "symmetrically; pass `padding` explicitly)",
                kernel_size,
            )
        return (kernel_size - 1) // 2 * dilation
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise invalid("padding", "a non-negative integer or None", padding)
    return padding


NormFactory = Callable[[int], nn.Module]
"""Builds a normalisation layer for a number of channels, e.g. ``nn.BatchNorm2d``."""
ActFactory = Callable[[], nn.Module]
"""Builds an activation layer, e.g. ``nn.ReLU``."""


class ConvNormAct(nn.Sequential):
    """Convolution, then optional normalisation, then optional activation: the one primitive.

    Children are named ``conv``, ``bn`` and ``act`` (the last two only when enabled), so
    state-dict keys read ``conv.weight``, ``bn.running_mean``. By default the convolution has a
    bias only when there is no norm after it (a norm's shift makes a bias redundant), as in
    torchvision's ``Conv2dNormActivation``.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Square kernel size ``K``.
        stride: Stride (>= 1).
        padding: Zero padding; default ``(K - 1) // 2 * dilation`` keeps the size at stride 1.
        dilation: Dilation (>= 1).
        groups: Groups ``g``; ``C_in`` and ``C_out`` must both be divisible by it (see module doc).
        norm: Norm factory taking the channel count, or ``None`` for no norm.
        act: Activation factory, or ``None`` for a linear block.
        bias: Whether the convolution has a bias; ``None`` (default): ``norm is None``.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H', W')`` with
        ``H' = floor((H + 2 * padding - dilation * (K - 1) - 1) / stride) + 1``.

    Example:
        >>> block = ConvNormAct(3, 32, 3, stride=2)
        >>> block(torch.randn(1, 3, 224, 224)).shape
        torch.Size([1, 32, 112, 112])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        norm: NormFactory | None = nn.BatchNorm2d,
        act: ActFactory | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        positive_int("stride", stride)
        positive_int("groups", groups)
        divisible("in_channels", in_channels, "groups", groups)
        divisible("out_channels", out_channels, "groups", groups)
        padding = kernel_padding(kernel_size, padding, dilation)
        if bias is not None and not isinstance(bias, bool):
            raise invalid("bias", "True, False or None (a bias exactly when norm is None)", bias)
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=norm is None if bias is None else bias,
        )
        if norm is not None:
            self.bn = norm(out_channels)
        if act is not None:
            self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "ConvNormAct")
        for module in self:
            x = module(x)
        return x


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise convolution: one ``K x K`` filter per input channel (``groups = channels``).

    With depth multiplier ``m`` each input channel ``i`` gets ``m`` filters, producing output
    channels ``i * m + r`` for ``r < m`` (the ``groups`` layout of ``nn.Conv2d``).
    Parameters: ``channels * m * K * K`` (+ ``channels * m`` with bias); e.g. 32 channels,
    3x3: 288 (320 with bias).

    Args:
        channels: Input channels ``C``.
        kernel_size: Square kernel size ``K``.
        stride: Stride (>= 1).
        padding: Zero padding; default keeps the size at stride 1.
        dilation: Dilation (>= 1).
        depth_multiplier: Filters per input channel ``m`` (>= 1).
        bias: Whether to add a learnable bias.

    Shape:
        ``(N, C, H, W) -> (N, C * m, H', W')``.

    Example:
        >>> DepthwiseConv2d(32)(torch.randn(2, 32, 56, 56)).shape
        torch.Size([2, 32, 56, 56])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        depth_multiplier: int = 1,
        bias: bool = False,
    ) -> None:
        positive_int("channels", channels)
        positive_int("stride", stride)
        positive_int("depth_multiplier", depth_multiplier)
        padding = kernel_padding(kernel_size, padding, dilation)
        super().__init__(
            channels,
            channels * depth_multiplier,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=channels,
            bias=bias,
        )
        self.depth_multiplier = depth_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "DepthwiseConv2d")
        return self._conv_forward(x, self.weight, self.bias)


class PointwiseConv2d(nn.Conv2d):
    """Pointwise (1x1) convolution: mixes channels at every position, no spatial extent.

    Parameters: ``C_in * C_out`` (+ ``C_out`` with bias); e.g. 32 -> 64: 2,048 (2,112 with bias).

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H, W)``.

    Example:
        >>> PointwiseConv2d(32, 64)(torch.randn(2, 32, 56, 56)).shape
        torch.Size([2, 64, 56, 56])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "PointwiseConv2d")
        return self._conv_forward(x, self.weight, self.bias)


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise separable convolution: depthwise ``K x K`` -> norm -> act -> [SE] ->
    pointwise 1x1 -> norm -> act, the block of MobileNetV1 (Howard et al., 2017, Fig. 3).

    Both halves are :class:`ConvNormAct`: the depth-wise one with ``groups = C_in``, the
    point-wise one with a 1x1 kernel.

    Without norm and activation the block is linear and equals a standard convolution whose kernel
    is ``W[o, i] = sum_r P[o, i*m + r] * D[i*m + r]`` (``D``: depthwise kernels, ``P``: pointwise
    weights, ``m``: depth multiplier). Parameters (no norm, m = 1):
    ``C_in * K^2 + C_in * C_out`` instead of ``C_in * C_out * K^2``, a ratio of
    ``1 / C_out + 1 / K^2``; e.g. 64 -> 128, 3x3: 8,768 instead of 73,728 (8.4x).

    Each conv has a bias only when no norm follows it, except the depthwise conv of a linear
    block (``norm=None, act=None``): its bias would fold exactly into the pointwise bias.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Depthwise kernel size ``K``.
        stride: Depthwise stride.
        dilation: Depthwise dilation.
        depth_multiplier: Depthwise filters per input channel ``m``.
        norm: Norm factory used after both convs, or ``None``.
        act: Activation factory used after both convs, or ``None`` (MobileNet uses ReLU6).
        se_ratio: If given, squeeze-excite after the depthwise conv with
            ``max(1, int(in_channels * se_ratio))`` reduced channels, using ``act`` (or SiLU for a
            linear block) inside; must lie in ``(0, 1]``.
        padding: Depthwise zero padding; default keeps the size at stride 1.

    Attributes:
        conv_dw: The depth-wise :class:`ConvNormAct` (``conv``, then ``bn`` and ``act`` when
            enabled), ``C_in -> C_in * m`` channels.
        se: The squeeze-excite module, or ``nn.Identity``.
        conv_pw: The point-wise :class:`ConvNormAct`, ``C_in * m -> C_out`` channels.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    Example:
        >>> block = DepthwiseSeparableConv2d(64, 128)
        >>> block(torch.randn(1, 64, 56, 56)).shape
        torch.Size([1, 128, 56, 56])
        >>> [name for name, _ in block.named_children()]
        ['conv_dw', 'se', 'conv_pw']
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        depth_multiplier: int = 1,
        norm: NormFactory | None = nn.BatchNorm2d,
        act: ActFactory | None = nn.ReLU6,
        se_ratio: float | None = None,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        self.in_channels = in_channels
        mid_channels = in_channels * positive_int("depth_multiplier", depth_multiplier)
        linear = norm is None and act is None
        # depth-wise
        self.conv_dw = ConvNormAct(
            in_channels,
            mid_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            norm=norm,
            act=act,
            bias=norm is None and not linear,
        )
        # squeeze-excite
        self.se: nn.Module = nn.Identity()
        if se_ratio is not None:
            self.se = SqueezeExcite(
                mid_channels,
                squeeze_channels(in_channels, se_ratio),
                act=act if act is not None else nn.SiLU,
            )
        # point-wise
        self.conv_pw = ConvNormAct(mid_channels, out_channels, 1, norm=norm, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "DepthwiseSeparableConv2d")
        x = self.se(self.conv_dw(x))  # (N, C_in * m, H', W')
        return self.conv_pw(x)  # (N, C_out, H', W')
