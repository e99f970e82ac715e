"""Squeeze-and-excitation channel attention (Hu et al., CVPR 2018)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sepconv.utils.validation import check_input_channels, positive_int


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate computed from global context.

    ``y = x * gate(conv_expand(act(conv_reduce(mean_hw(x)))))``; the two 1x1 convs are the two
    fully connected layers of Hu et al. 2018 (eq. 3), ``reduced_channels`` is ``C / r``.
    Parameters: ``2 * C * C_r + C + C_r``.

    Args:
        channels: Channels ``C`` of the input (and output).
        reduced_channels: Width ``C_r`` of the bottleneck.
        act: Activation between the two convs (EfficientNet uses SiLU).
        gate: Gating function (sigmoid; MobileNetV3 uses hard-sigmoid).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Example:
        >>> SqueezeExcite(96, 4)(torch.randn(1, 96, 28, 28)).shape
        torch.Size([1, 96, 28, 28])
    """

    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        act: Callable[[], nn.Module] = nn.SiLU,
        gate: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        positive_int("reduced_channels", reduced_channels)
        self.conv_reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = act()
        self.conv_expand = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.channels, "SqueezeExcite")
        scale = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        scale = self.conv_expand(self.act(self.conv_reduce(scale)))
        return x * self.gate(scale)
