"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sepconv.utils.validation import finite_number


class ModelEma:
    """A frozen copy of a model whose floating-point parameters and buffers track
    ``ema = decay * ema + (1 - decay) * current`` after every optimizer step (Polyak & Juditsky
    1992; the variant in timm's ``ModelEmaV2``). Integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied.

    Args:
        model: the model being trained (unwrapped, not the DDP wrapper).
        decay: weight of the old average, ``0 < decay < 1``.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> ema = ModelEma(net, decay=0.9)
        >>> ema.update(net)
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        finite_number("decay", decay, low=0, high=1, low_inclusive=False, high_inclusive=False)
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            if avg.is_floating_point():
                avg.lerp_(current[name], 1.0 - self.decay)
            else:
                avg.copy_(current[name])
