"""Stochastic depth (Huang et al., ECCV 2016)."""

from __future__ import annotations

import torch
from torch import nn

from sepconv.utils.validation import probability


class DropPath(nn.Module):
    """Per-sample stochastic depth: in training, zero a residual branch for each sample with
    probability ``p`` and scale the kept ones by ``1 / (1 - p)``; the identity in eval mode.

    Args:
        p: Drop probability, in ``[0, 1)``.

    Shape:
        ``(N, *) -> (N, *)``.

    Example:
        >>> DropPath(0.2).eval()(torch.ones(4, 8)).sum().item()
        32.0
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = probability("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask_shape = [x.shape[0]] + [1] * (x.dim() - 1)  # one draw per sample
        mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
