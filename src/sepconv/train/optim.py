"""Optimizer and learning-rate schedule construction."""

from __future__ import annotations

import math

import torch
from torch import nn

from sepconv.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Split parameters into a decayed group (>= 2-D: conv and linear weights) and an exempt
    group (biases, BatchNorm/LayerNorm scales and shifts), as timm's ``param_groups_weight_decay``
    does: decaying a norm's scale only fights the next layer's weights."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW over :func:`param_groups`.

    Example:
        >>> opt = build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="adamw", lr=1e-3))
        >>> type(opt).__name__, [g["weight_decay"] for g in opt.param_groups]
        ('AdamW', [0.0005, 0.0])
    """
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
        )
    return torch.optim.AdamW(groups, lr=config.lr)


class WarmupCosine:
    """``lr(step) / lr_peak``: linear from ``1/warmup`` to 1 over ``warmup_steps``, then
    ``0.5 * (1 + cos(pi * t))`` with ``t`` going from 0 to 1 over the remaining steps
    (Loshchilov & Hutter 2017 without restarts; Goyal et al. 2017 warm-up).

    Example:
        >>> f = WarmupCosine(warmup_steps=2, total_steps=6)
        >>> [round(f(s), 3) for s in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                "Invalid values for arguments `warmup_steps`/`total_steps`: expected "
                f"0 <= warmup_steps <= total_steps and total_steps >= 1, received "
                f"{warmup_steps}/{total_steps}."
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
