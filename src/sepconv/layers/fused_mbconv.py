"""EfficientNetV2's Fused-MBConv (Tan & Le, "EfficientNetV2: Smaller Models and Faster
Training", ICML 2021, Fig. 2; Gupta & Tan 2019, "EfficientNet-EdgeTPU")."""

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


class FusedMBConv(nn.Module):
    """MBConv with its 1x1 expansion and depthwise ``K x K`` conv fused into one standard
    ``K x K`` conv.

    ``K x K`` conv to ``C_in * t`` channels (norm, activation) -> optional squeeze-excite ->
    linear 1x1 projection; with ``t == 1`` the ``K x K`` conv maps straight to ``C_out`` channels
    with its activation and there is no projection (as in torchvision, and timm's
    EfficientNetV2 first stage). The input is added back when ``stride == 1`` and
    ``C_in == C_out``.

    Early in a network, where channels are few and maps large, the depthwise conv of an MBConv
    costs little arithmetic but moves a ``C_in * t``-channel map through memory once more; the
    fused conv does ``C_in`` times the MACs of that depthwise conv, at a far higher arithmetic
    intensity, and trained faster on accelerators in the first stages (Tan & Le 2021, Section
    3.2 and Table 3). The tutorial's last section measures both on its build machine.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        stride: Stride of the fused conv.
        expand_ratio: Expansion ``t`` (> 0).
        kernel_size: Kernel ``K`` of the fused conv (odd).
        act: Activation after the fused conv.
        se_ratio: Squeeze-excite ratio in ``(0, 1]``, or ``None`` (EfficientNetV2 uses none).
        drop_path: Stochastic depth probability of the residual branch, in ``[0, 1)``.
        norm: Norm factory.
        se_style: See :class:`~sepconv.layers.squeeze_excite.SEStyle`.
        expand_divisor: The expanded width is ``make_divisible(C_in * t, expand_divisor)``
            (8, as the references); ``None`` rounds to the nearest integer.

    Attributes:
        conv_exp: The fused expansion, a standard ``K x K`` ``ConvNormAct``.
        se: Squeeze-excite, or ``nn.Identity``.
        conv_pwl: Linear point-wise projection ``ConvNormAct``, or ``nn.Identity`` when
            ``t == 1``.
        drop_path: ``DropPath``, or ``nn.Identity`` when there is no residual or ``p == 0``.
        has_residual: Whether the input is added to the output.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)`` (rounded up).

    Example:
        >>> block = FusedMBConv(24, 48, stride=2, expand_ratio=4)
        >>> block(torch.randn(1, 24, 64, 64)).shape
        torch.Size([1, 48, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 4.0,
        kernel_size: int = 3,
        act: ActFactory = nn.SiLU,
        se_ratio: float | None = None,
        drop_path: float = 0.0,
        norm: NormFactory = nn.BatchNorm2d,
        se_style: SEStyle = SE_EFFICIENTNET,
        expand_divisor: int | None = 8,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        positive_int("stride", stride)
        positive_number("expand_ratio", expand_ratio)
        drop_path = probability("drop_path", drop_path)
        self.in_channels = in_channels
        self.has_residual = stride == 1 and in_channels == out_channels
        expands = expand_ratio != 1
        mid_channels = (
            expanded_channels(in_channels, expand_ratio, expand_divisor)
            if expands
            else out_channels
        )

        # fused expansion: one standard K x K conv instead of 1x1 expansion + depthwise
        self.conv_exp = ConvNormAct(
            in_channels, mid_channels, kernel_size, stride=stride, norm=norm, act=act
        )
        # squeeze-excite
        self.se: nn.Module = nn.Identity()
        if se_ratio is not None:
            self.se = se_style.build(
                se_ratio, in_channels=in_channels, expanded_channels=mid_channels, block_act=act
            )
        # point-wise linear projection
        self.conv_pwl: nn.Module = nn.Identity()
        if expands:
            self.conv_pwl = ConvNormAct(mid_channels, out_channels, 1, norm=norm, act=None)
        self.drop_path: nn.Module = (
            DropPath(drop_path) if self.has_residual and drop_path > 0 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.in_channels, "FusedMBConv")
        shortcut = x
        x = self.se(self.conv_exp(x))  # (N, C_mid, H', W')
        x = self.conv_pwl(x)  # (N, C_out, H', W')
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x
