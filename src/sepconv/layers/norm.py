"""Normalisation over the channels of an ``(N, C, H, W)`` map, as ConvNeXt uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """Layer normalisation over the channels of every position of an ``(N, C, H, W)`` map.

    Each pixel's ``C`` values are normalised to zero mean and unit variance, then scaled by
    ``weight`` and shifted by ``bias`` (Ba et al. 2016; ConvNeXt, Liu et al. 2022, Section 2.6,
    "Substituting BN with LN"). The statistics are per sample and per position, so unlike
    BatchNorm it has no running statistics and cannot be folded into the conv before it.
    Parameters: ``2 * C``. Computed as torchvision's and timm's ``LayerNorm2d``: channels last,
    ``layer_norm``, channels first again.

    Args:
        channels: Channels ``C``.
        eps: Added to the variance (ConvNeXt: 1e-6).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Example:
        >>> y = LayerNorm2d(8)(torch.randn(2, 8, 5, 5))
        >>> round(y[0, :, 0, 0].mean().item(), 6) + 0.0
        0.0
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)
