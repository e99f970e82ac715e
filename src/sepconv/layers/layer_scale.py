"""Layer scale: a learnable per-channel scale of a residual branch."""

from __future__ import annotations

import torch
from torch import nn

from sepconv.utils.validation import positive_int


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (Touvron et al., "Going deeper with
    Image Transformers", ICCV 2021, eq. 4), started small so that each block starts near the
    identity; ConvNeXt and MobileNetV4's hybrid blocks use it.

    ``y = gamma * x`` with ``gamma`` of shape ``(C, 1, 1)``, started at ``init``. Parameters:
    ``C``.

    Args:
        channels: Channels ``C``.
        init: Starting value of every ``gamma`` (ConvNeXt: 1e-6).

    Example:
        >>> LayerScale(4, init=0.5)(torch.ones(1, 4, 2, 2)).sum().item()
        8.0
    """

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        positive_int("channels", channels)
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma  # (N, C, H, W) * (C, 1, 1)
