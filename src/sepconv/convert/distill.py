"""Recovering accuracy after conversion: fine-tuning with knowledge distillation.

A truncated decoupling (rank below full) changes what the network computes. The original network
is the best teacher for getting it back: the converted student is trained to match the teacher's
temperature-softened class probabilities and, with a smaller weight, the true labels (Hinton,
Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sepconv.data.dataset import BatchLoader


class Batches(Protocol):
    """One epoch of ``(inputs, labels)`` batches whose number is known in advance."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class NormalizedBatches:
    """Batches of a :class:`~sepconv.data.dataset.BatchLoader` as normalised floats.

    ``uint8`` images become ``(x / 255 - mean) / std``. With ``steps`` the iteration yields
    exactly that many batches, continuing into the loader's next epochs when one runs out.

    Args:
        loader: The ``uint8`` batches.
        mean, std: Normalisation of the ``[0, 1]`` images (one value or one per channel).
        steps: Number of batches per iteration, or ``None`` for one loader epoch.
        epoch: Loader epoch the iteration starts at.
    """

    def __init__(
        self,
        loader: BatchLoader,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        steps: int | None = None,
        epoch: int = 0,
    ) -> None:
        self.loader, self.steps, self.epoch = loader, steps, epoch
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.loader) if self.steps is None else self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        remaining, epoch = len(self), self.epoch
        while remaining > 0:
            self.loader.set_epoch(epoch)
            for images, labels in self.loader:
                if remaining == 0:
                    return
                remaining -= 1
                yield (images.float() / 255 - self.mean) / self.std, labels
            epoch += 1


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """Hinton et al.'s distillation loss: softened KL to the teacher plus cross-entropy.

    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``; the ``T^2``
    keeps the soft term's gradients on the scale of the hard term's as ``T`` changes
    (Hinton et al., 2015, section 2).

    Args:
        student_logits: ``(N, classes)`` logits ``s`` of the model being trained.
        teacher_logits: ``(N, classes)`` logits ``t`` of the reference model (no gradient taken).
        targets: ``(N,)`` integer labels ``y``.
        temperature: Softening temperature ``T > 0``.
        alpha: Weight of the soft (teacher) term, in ``[0, 1]``.

    Returns:
        The scalar loss, averaged over the batch.

    Example:
        >>> s, t = torch.randn(8, 10), torch.randn(8, 10)
        >>> distillation_loss(s, t, torch.randint(0, 10, (8,))).shape
        torch.Size([])
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or temperature <= 0
    ):
        raise ValueError(
            "Invalid value for argument `temperature`: expected a positive number, "
            f"received {temperature!r}."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"Invalid value for argument `alpha`: expected a number in [0, 1], received {alpha!r}."
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "Invalid value for argument `teacher_logits`: expected the shape of `student_logits` "
            f"{tuple(student_logits.shape)}, received {tuple(teacher_logits.shape)}."
        )
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits.detach() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Callable[[int], Batches],
    *,
    epochs: int,
    lr: float = 0.01,
    temperature: float = 4.0,
    alpha: float = 0.9,
    weight_decay: float = 0.0,
    progress: bool = False,
) -> list[float]:
    """Fine-tune ``student`` in place to imitate ``teacher`` (SGD, momentum 0.9, cosine LR).

    The teacher runs in eval mode without gradients; the student trains in train mode (its
    BatchNorm statistics adapt to the new convolutions).

    Args:
        student: The converted model, trained in place.
        teacher: The original model.
        batches: ``batches(epoch)`` returns that epoch's ``(inputs, labels)`` pairs (a sized
            iterable: the schedule needs the epoch length), inputs already normalised floats on
            the student's device.
        epochs: Number of passes (>= 1).
        lr: Peak learning rate, decayed to 0 by a per-step cosine schedule.
        temperature: Distillation temperature, see :func:`distillation_loss`.
        alpha: Weight of the teacher term, see :func:`distillation_loss`.
        weight_decay: SGD weight decay.
        progress: Show a ``tqdm`` bar per epoch.

    Returns:
        The mean training loss of every epoch.

    Example:
        >>> teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> len(distill(student, teacher, lambda epoch: data, epochs=2))
        2
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            "Invalid value for argument `epochs`: expected a positive integer, "
            f"received {epochs!r}."
        )
    optimizer = torch.optim.SGD(
        student.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
    )
    # Cosine decay per step, so that even a one-epoch fine-tune ends at a small learning rate.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, epochs * len(batches(0)))
    )
    teacher.eval()
    history: list[float] = []
    for epoch in range(epochs):
        student.train()
        total, count = 0.0, 0
        for inputs, labels in tqdm(
            batches(epoch), desc=f"distill {epoch + 1}/{epochs}", disable=not progress
        ):
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            loss = distillation_loss(
                student(inputs), teacher_logits, labels, temperature=temperature, alpha=alpha
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(labels)
            count += len(labels)
        history.append(total / max(count, 1))
    return history
