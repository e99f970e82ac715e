"""The ConvNeXt block (Liu et al., "A ConvNet for the 2020s", CVPR 2022, Fig. 4)."""

from __future__ import annotations

import torch
from torch import nn

from sepconv.layers.conv import ActFactory, ConvNormAct, NormFactory
from sepconv.layers.drop_path import DropPath
from sepconv.layers.layer_scale import LayerScale
from sepconv.layers.norm import LayerNorm2d
from sepconv.utils.validation import (
    check_input_channels,
    positive_int,
    positive_number,
    probability,
)


class ConvNeXtBlock(nn.Module):
    """Depthwise ``7 x 7`` conv -> LayerNorm -> 1x1 expansion to ``4 C`` -> GELU -> 1x1 back to
    ``C`` -> layer scale -> drop path, added to the input.

    A depthwise separable conv with an inverted MLP: the depthwise conv moved to the top of the
    inverted bottleneck (Liu et al. 2022, Section 2.5), one norm and one activation per block.
    Both 1x1 convs are convolutions here (torchvision and timm compute them as ``nn.Linear`` on
    channels-last maps: the same weights, reshaped), so that cost analysis, conversion and
    fusion see a pointwise conv. Parameters:
    ``C * K^2 + C`` (depthwise, with bias) ``+ 2 C`` (norm) ``+ 2 * 4C * C + 4C + C`` (MLP)
    ``+ C`` (layer scale).

    Args:
        channels: Channels ``C`` of input and output.
        kernel_size: Depthwise kernel ``K`` (odd; 7 in the paper).
        expand_ratio: Width of the MLP, ``C * expand_ratio`` (4 in the paper).
        act: Activation of the MLP (GELU).
        norm: Norm after the depthwise conv (:class:`~sepconv.layers.norm.LayerNorm2d`).
        layer_scale: Starting value of the per-channel scale of the branch (1e-6), or ``None``.
        drop_path: Stochastic depth probability of the branch, in ``[0, 1)``.

    Attributes:
        conv_dw: Depth-wise ``ConvNormAct`` (conv with bias, then the norm, no activation).
        conv_pw: Point-wise expansion ``ConvNormAct`` (conv with bias, then ``act``).
        conv_pwl: Point-wise projection ``ConvNormAct`` (conv with bias).
        layer_scale: :class:`~sepconv.layers.LayerScale`, or ``nn.Identity``.
        drop_path: ``DropPath``, or ``nn.Identity`` when ``p == 0``.

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Example:
        >>> ConvNeXtBlock(96)(torch.randn(1, 96, 56, 56)).shape
        torch.Size([1, 96, 56, 56])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        expand_ratio: float = 4.0,
        act: ActFactory = nn.GELU,
        norm: NormFactory = LayerNorm2d,
        layer_scale: float | None = 1e-6,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        positive_int("channels", channels)
        positive_number("expand_ratio", expand_ratio)
        drop_path = probability("drop_path", drop_path)
        self.channels = channels
        hidden = round(channels * expand_ratio)

        # depth-wise, then the block's one norm
        self.conv_dw = ConvNormAct(
            channels, channels, kernel_size, groups=channels, norm=norm, act=None, bias=True
        )
        # point-wise expansion (the MLP's first layer) and its activation
        self.conv_pw = ConvNormAct(channels, hidden, 1, norm=None, act=act)
        # point-wise projection (the MLP's second layer)
        self.conv_pwl = ConvNormAct(hidden, channels, 1, norm=None, act=None)
        self.layer_scale: nn.Module = (
            LayerScale(channels, layer_scale) if layer_scale is not None else nn.Identity()
        )
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.channels, "ConvNeXtBlock")
        branch = self.conv_pw(self.conv_dw(x))  # (N, 4C, H, W)
        branch = self.layer_scale(self.conv_pwl(branch))  # (N, C, H, W)
        return self.drop_path(branch) + x
