"""A training run that diverges stops itself: a NaN, infinite or exploding loss ends the run.

:class:`DivergenceWatch` records on the device, without a host sync per step, the first step
whose loss is not finite or exceeds :data:`DIVERGENCE_FACTOR` times the run's first loss; the
Trainer reads it where it syncs anyway (progress updates, before every checkpoint, at epoch
ends), so a diverged run never overwrites its last good checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["DIVERGENCE_FACTOR", "DivergenceWatch", "TrainingDiverged"]

DIVERGENCE_FACTOR = 1e4
"""A loss above this many times the run's first loss counts as diverged. Cross-entropy starts
near ln(num_classes) (2.3 for 10 classes) and falls while training works; 1e4 times that is far
past any healthy spike, and is reached by a run whose weights blow up long before the loss
becomes inf or NaN."""


class TrainingDiverged(ValueError):
    """The loss became NaN, infinite or :data:`DIVERGENCE_FACTOR` times its first value.

    A ``ValueError``: the hyper-parameters (usually ``lr``) are the cause, and the command line
    reports it in one line. No checkpoint is written after the divergence: the last one on disk
    holds the weights of the last good step checked.
    """


class DivergenceWatch:
    """The first diverged step of a run, tracked on ``device``.

    Example:
        >>> watch = DivergenceWatch(torch.device("cpu"))
        >>> watch.record(torch.tensor(2.3), step=1)
        >>> watch.record(torch.tensor(float("nan")), step=2)
        >>> watch.first_bad(distributed=False)
        (2, nan)
    """

    def __init__(self, device: torch.device) -> None:
        self.first_loss: float | None = None
        self._step = torch.full((), -1, dtype=torch.int64, device=device)
        self._loss = torch.zeros((), dtype=torch.float64, device=device)

    @property
    def bound(self) -> float:
        """The largest loss still counted as healthy."""
        return DIVERGENCE_FACTOR * max(self.first_loss or 1.0, 1e-3)

    def record(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` (a detached scalar) of optimizer step ``step`` (1-based)."""
        if self.first_loss is None:
            first = float(loss)  # one host sync, on the first step of a run or a resume
            self.first_loss = first if math.isfinite(first) else None
        fresh = (~torch.isfinite(loss) | (loss > self.bound)) & (self._step < 0)
        self._step = torch.where(fresh, step, self._step)
        self._loss = torch.where(fresh, loss.double(), self._loss)

    def first_bad(self, *, distributed: bool) -> tuple[int, float] | None:
        """The first diverged step and its loss (the earliest over all ranks, with the loss of
        the rank that saw it), or ``None``."""
        if not distributed:
            step = int(self._step)
            return None if step < 0 else (step, float(self._loss))
        # Every rank must stop at the same point, or the others wait in the next collective;
        # and each names the loss that diverged, not its own.
        mine = torch.stack([self._step.double(), self._loss])
        every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(every, mine)
        seen = [(int(s), v) for s, v in (t.tolist() for t in every) if s >= 0]
        return min(seen, key=lambda bad: bad[0]) if seen else None  # ties: the lowest rank

    def check(self, *, distributed: bool, checkpoint: Path | None, saved_step: int | None) -> None:
        """Raise :class:`TrainingDiverged` naming the step and the checkpoint left intact."""
        bad = self.first_bad(distributed=distributed)
        if bad is None:
            return
        step, value = bad
        why = (
            "is not finite"
            if not math.isfinite(value)
            else f"exceeds {self.bound:.3g} ({DIVERGENCE_FACTOR:g} x the first loss)"
        )
        if checkpoint is None or not checkpoint.is_file():
            kept = "no checkpoint was written"
        else:
            at = "" if saved_step is None else f" (step {saved_step})"
            kept = f"the last checkpoint, {checkpoint}{at}, is kept as it was"
        raise TrainingDiverged(
            f"Training diverged at step {step}: the loss {value:.4g} {why}; {kept}. Lower the "
            "learning rate (argument `lr`) or clip gradients (argument `clip_grad_norm`)."
        )
