"""Where a training run stands: the record the loop advances and a checkpoint keeps.

Weights, optimizer and schedule live in their own objects; :class:`TrainState` holds the rest of
what a run needs to continue exactly where it stopped: the step counters, the running metrics of
the current epoch, its training time so far and the records of the finished epochs. The steps of
:mod:`sepconv.train.loop` advance it; :mod:`sepconv.train.checkpoint` writes it into a checkpoint
and reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """The mutable state of a training run, apart from its weights, optimizer and schedule.

    Attributes:
        running: ``(3,)`` float64 sums over the current epoch's steps on this process: loss x
            images, correct predictions, images. Kept on the training device, so that a step
            adds to it without a host sync.
        epoch: Finished epochs; the index (0-based) of the epoch being trained.
        step_in_epoch: Optimizer steps done in the current epoch.
        global_step: Optimizer steps done in all.
        epoch_time_s: Training seconds of the current epoch so far (steps only: evaluation,
            checkpoint writes and the compile warm-up are not counted).
        history: One record per finished epoch, as :func:`~sepconv.train.loop.end_epoch`
            writes it (also the lines of ``log.jsonl``).

    Example:
        >>> state = TrainState.start(torch.device("cpu"))
        >>> state.count_step(torch.tensor(0.5), torch.tensor([[2.0, 1.0]]), torch.tensor([0]))
        >>> state.global_step, state.totals()
        (1, (0.5, 1.0, 1.0))
    """

    running: torch.Tensor
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    epoch_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, device: torch.device) -> TrainState:
        """The state of a run before its first step, with its sums on ``device``."""
        return cls(running=torch.zeros(3, dtype=torch.float64, device=device))

    def count_step(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one optimizer step on a batch: its mean ``loss`` (a scalar), the ``logits``
        ``(N, K)`` and the ``labels`` ``(N,)`` it was computed from."""
        self.global_step += 1
        self.step_in_epoch += 1
        n = labels.shape[0]
        # The same float64 sums as host arithmetic would give, without a sync per step.
        self.running += torch.stack(
            [
                loss.detach().double() * n,
                (logits.argmax(1) == labels).sum().double(),
                torch.full((), n, dtype=torch.float64, device=labels.device),
            ]
        )

    def totals(self) -> tuple[float, float, float]:
        """``(loss x images, correct, images)`` of this process's steps so far in the epoch
        (one host sync)."""
        loss_sum, correct, seen = self.running.tolist()
        return loss_sum, correct, seen

    def next_epoch(self) -> None:
        """Move on to the next epoch: the counters and sums of the current one start over."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.running.zero_()
        self.epoch_time_s = 0.0
