"""Inverted residual blocks: MobileNetV2's bottleneck and EfficientNet's MBConv."""

from __future__ import annotations

import torch
from torch import nn

from sepconv.layers.conv import ActFactory, ConvNormAct, NormFactory
from sepconv.layers.drop_path import DropPath
from sepconv.layers.rounding import expanded_channels
from sepconv.layers.squeeze_excite import SE_EFFICIENTNET, SEStyle
from sepconv.utils.validation import (
    check_input_channels,
    positive_int,
    positive_number,
    probability,
)


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (Sandler et al., "MobileNetV2", CVPR 2018, Table 1).

    1x1 expansion to ``C_in * t`` channels (skipped when ``t == 1``) -> depthwise ``K x K``
    -> optional squeeze-excite -> linear 1x1 projection (no activation: the paper's linear
    bottleneck). The input is added back when ``stride == 1`` and ``C_in == C_out``; the residual
    branch is then dropped per sample with probability ``drop_path`` in training.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        stride: Depthwise stride (1 or 2 in the papers).
        expand_ratio: Expansion factor ``t`` (> 0; MobileNetV2 uses 6, 1 in its first block).
        kernel_size: Depthwise kernel size ``K`` (odd).
        act: Activation after expansion and depthwise conv.
        se_ratio: Squeeze-excite ratio ``r`` in ``(0, 1]``, or ``None`` for none.
        drop_path: Stochastic depth probability of the residual branch, in ``[0, 1)``.
        norm: Norm factory.
        dilation: Depthwise dilation.
        se_style: How the squeeze-excite is sized and gated (:class:`SEStyle`); the default,
            EfficientNet's, has ``max(1, int(C_in * r))`` channels, ``act`` inside and a
            sigmoid gate; MobileNetV3's (``SE_MOBILENET_V3``) rounds ``r`` of the expanded
            channels to 8, with ReLU and a hard-sigmoid gate.
        expand_divisor: Rounding of the expanded width ``C_in * t``: ``None`` rounds to the
            nearest integer (MobileNetV2, EfficientNet), an integer to a multiple of it with
            ``make_divisible`` (MobileNetV3: 8).

    Attributes:
        conv_pw: Point-wise expansion (``ConvNormAct``), ``nn.Identity`` when ``expand_ratio == 1``.
        conv_dw: Depth-wise ``ConvNormAct``.
        se: Squeeze-excite, or ``nn.Identity``.
        conv_pwl: Linear point-wise projection (``ConvNormAct`` without activation).
        drop_path: ``DropPath``, or ``nn.Identity`` when there is no residual or ``p == 0``.
        has_residual: Whether the input is added to the output.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)`` (rounded up).

    Example:
        >>> block = InvertedResidual(24, 24, expand_ratio=6)
        >>> block(torch.randn(1, 24, 56, 56)).shape
        torch.Size([1, 24, 56, 56])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 6,
        kernel_size: int = 3,
        act: ActFactory = nn.ReLU6,
        se_ratio: float | None = None,
        drop_path: float = 0.0,
        norm: NormFactory = nn.BatchNorm2d,
        dilation: int = 1,
        se_style: SEStyle = SE_EFFICIENTNET,
        expand_divisor: int | None = None,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        positive_int("stride", stride)
        positive_number("expand_ratio", expand_ratio)
        drop_path = probability("drop_path", drop_path)
        self.in_channels = in_channels
        self.block_name = type(self).__name__  # for error messages (TorchScript has no type())
        self.has_residual = stride == 1 and in_channels == out_channels
        mid_channels = expanded_channels(in_channels, expand_ratio, expand_divisor)

        # point-wise expansion
        self.conv_pw: nn.Module = nn.Identity()
        if expand_ratio != 1:
            self.conv_pw = ConvNormAct(in_channels, mid_channels, 1, norm=norm, act=act)
        # depth-wise
        self.conv_dw = ConvNormAct(
            mid_channels,
            mid_channels,
            kernel_size,
            stride=stride,
            dilation=dilation,
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
        self.drop_path: nn.Module = (
            DropPath(drop_path) if self.has_residual and drop_path > 0 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, self.block_name)
        shortcut = x
        x = self.conv_pw(x)  # (N, C_mid, H, W)
        x = self.se(self.conv_dw(x))  # (N, C_mid, H', W')
        x = self.conv_pwl(x)  # (N, C_out, H', W')
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x


class MBConv(InvertedResidual):
    """EfficientNet's mobile inverted bottleneck (Tan & Le, ICML 2019; Tan et al., MnasNet 2019).

    An :class:`InvertedResidual` with EfficientNet's defaults: SiLU (swish) activation and
    squeeze-excite with ``max(1, int(C_in * 0.25))`` channels, computed from the block's *input*
    channels as in the paper. Arguments are those of :class:`InvertedResidual`.

    Example:
        >>> block = MBConv(40, 40, expand_ratio=6, kernel_size=5, drop_path=0.1)
        >>> block(torch.randn(1, 40, 28, 28)).shape
        torch.Size([1, 40, 28, 28])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 6,
        kernel_size: int = 3,
        act: ActFactory = nn.SiLU,
        se_ratio: float | None = 0.25,
        drop_path: float = 0.0,
        norm: NormFactory = nn.BatchNorm2d,
        dilation: int = 1,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            stride=stride,
            expand_ratio=expand_ratio,
            kernel_size=kernel_size,
            act=act,
            se_ratio=se_ratio,
            drop_path=drop_path,
            norm=norm,
            dilation=dilation,
        )
