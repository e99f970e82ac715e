"""MobileNetV4's universal inverted bottleneck (Qin et al., "MobileNetV4: Universal Models for
the Mobile Ecosystem", ECCV 2024, Section 3.2)."""

from __future__ import annotations

import torch
from torch import nn

from sepconv.layers.conv import ActFactory, ConvNormAct, NormFactory
from sepconv.layers.drop_path import DropPath
from sepconv.layers.layer_scale import LayerScale
from sepconv.layers.rounding import expanded_channels
from sepconv.layers.squeeze_excite import SE_EFFICIENTNET, SEStyle
from sepconv.utils.validation import (
    check_input_channels,
    invalid,
    non_negative_int,
    positive_int,
    positive_number,
    probability,
)


def _kernel(name: str, size: int) -> int:
    """A depthwise kernel size: 0 (no such conv) or an odd size."""
    non_negative_int(name, size)
    if size and size % 2 == 0:
        raise invalid(name, "0 (no depthwise conv there) or an odd kernel size", size)
    return size


class UniversalInvertedResidual(nn.Module):
    """The universal inverted bottleneck (UIB) of MobileNetV4: an inverted bottleneck with an
    optional depthwise conv before the expansion and an optional one after it.

    Optional depthwise ``K_s x K_s`` on the input (norm, no activation) -> 1x1 expansion to
    ``C_in * t`` channels -> optional depthwise ``K x K`` (norm, activation) -> optional
    squeeze-excite -> linear 1x1 projection -> optional depthwise ``K_e x K_e`` on the output
    (norm, no activation) -> optional layer scale; the input is added back when ``stride == 1``
    and ``C_in == C_out``. The two optional depthwise convs choose the variant (Qin et al.,
    Fig. 4): both off is an FFN, the middle one alone MobileNetV2's inverted bottleneck
    (:class:`InvertedResidual`), the start one alone a ConvNeXt-like block, both ExtraDW. The
    stride goes to the middle depthwise conv when there is one, else to the start one, else to
    the end one (the reference's ``middle_dw_downsample``).

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        stride: Stride (1 or 2); needs at least one depthwise conv when 2.
        expand_ratio: Expansion ``t`` (> 0); the 1x1 expansion is always built, as in the paper.
        start_kernel_size: ``K_s`` of the depthwise conv before the expansion; 0 for none.
        kernel_size: ``K`` of the depthwise conv after the expansion; 0 for none.
        end_kernel_size: ``K_e`` of the depthwise conv after the projection; 0 for none.
        act: Activation after the expansion and the middle depthwise conv.
        norm: Norm factory.
        se_ratio: Squeeze-excite ratio in ``(0, 1]``, or ``None``; sized by ``se_style``.
        se_style: See :class:`~sepconv.layers.squeeze_excite.SEStyle`.
        layer_scale: Starting value of a per-channel scale of the residual branch, or ``None``
            for none (MobileNetV4's conv models have none, its hybrid ones 1e-5).
        drop_path: Stochastic depth probability of the residual branch, in ``[0, 1)``.
        expand_divisor: The expanded width is ``make_divisible(C_in * t, expand_divisor)``
            (8, as the reference); ``None`` rounds to the nearest integer.

    Attributes:
        conv_dw_start: Depth-wise ``ConvNormAct`` before the expansion, or ``nn.Identity``.
        conv_pw: Point-wise expansion ``ConvNormAct``.
        conv_dw: Depth-wise ``ConvNormAct`` after the expansion, or ``nn.Identity``.
        se: Squeeze-excite, or ``nn.Identity``.
        conv_pwl: Linear point-wise projection ``ConvNormAct``.
        conv_dw_end: Depth-wise ``ConvNormAct`` after the projection, or ``nn.Identity``.
        layer_scale: :class:`~sepconv.layers.LayerScale`, or ``nn.Identity``.
        drop_path: ``DropPath``, or ``nn.Identity`` when there is no residual or ``p == 0``.
        has_residual: Whether the input is added to the output.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)`` (rounded up).

    Example:
        >>> block = UniversalInvertedResidual(64, 96, stride=2, start_kernel_size=5,
        ...                                   kernel_size=5, expand_ratio=3)  # ExtraDW
        >>> block(torch.randn(1, 64, 28, 28)).shape
        torch.Size([1, 96, 14, 14])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 4.0,
        start_kernel_size: int = 0,
        kernel_size: int = 3,
        end_kernel_size: int = 0,
        act: ActFactory = nn.ReLU,
        norm: NormFactory = nn.BatchNorm2d,
        se_ratio: float | None = None,
        se_style: SEStyle = SE_EFFICIENTNET,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        expand_divisor: int | None = 8,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        positive_int("stride", stride)
        positive_number("expand_ratio", expand_ratio)
        kernels = (
            _kernel("start_kernel_size", start_kernel_size),
            _kernel("kernel_size", kernel_size),
            _kernel("end_kernel_size", end_kernel_size),
        )
        if stride > 1 and not any(kernels):
            raise invalid(
                "stride", "1 for a block without depthwise convs (a 1x1 conv cannot stride)", stride
            )
        drop_path = probability("drop_path", drop_path)
        self.in_channels = in_channels
        self.has_residual = stride == 1 and in_channels == out_channels
        mid_channels = expanded_channels(in_channels, expand_ratio, expand_divisor)
        # the stride goes to the middle depthwise conv, else the start one, else the end one
        strided = next((i for i in (1, 0, 2) if kernels[i]), None)
        strides = [stride if i == strided else 1 for i in range(3)]

        # depth-wise before the expansion (no activation: its output feeds a linear 1x1)
        self.conv_dw_start: nn.Module = nn.Identity()
        if start_kernel_size:
            self.conv_dw_start = ConvNormAct(
                in_channels,
                in_channels,
                start_kernel_size,
                stride=strides[0],
                groups=in_channels,
                norm=norm,
                act=None,
            )
        # point-wise expansion
        self.conv_pw = ConvNormAct(in_channels, mid_channels, 1, norm=norm, act=act)
        # depth-wise
        self.conv_dw: nn.Module = nn.Identity()
        if kernel_size:
            self.conv_dw = ConvNormAct(
                mid_channels,
                mid_channels,
                kernel_size,
                stride=strides[1],
                groups=mid_channels,
                norm=norm,
                act=act,
            )
        # squeeze-excite
        self.se: nn.Module = nn.Identity()
        if se_ratio is not None:
            self.se = se_style.build(
                se_ratio, in_channels=in_channels, expanded_channels=mid_channels, block_act=act
            )
        # point-wise linear projection
        self.conv_pwl = ConvNormAct(mid_channels, out_channels, 1, norm=norm, act=None)
        # depth-wise after the projection
        self.conv_dw_end: nn.Module = nn.Identity()
        if end_kernel_size:
            self.conv_dw_end = ConvNormAct(
                out_channels,
                out_channels,
                end_kernel_size,
                stride=strides[2],
                groups=out_channels,
                norm=norm,
                act=None,
            )
        self.layer_scale: nn.Module = (
            LayerScale(out_channels, layer_scale) if layer_scale is not None else nn.Identity()
        )
        self.drop_path: nn.Module = (
            DropPath(drop_path) if self.has_residual and drop_path > 0 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "UniversalInvertedResidual")
        shortcut = x
        x = self.conv_pw(self.conv_dw_start(x))  # (N, C_mid, H', W')
        x = self.se(self.conv_dw(x))  # (N, C_mid, H', W')
        x = self.conv_dw_end(self.conv_pwl(x))  # (N, C_out, H', W')
        x = self.layer_scale(x)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x
