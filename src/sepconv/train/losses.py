"""Recovering accuracy after conversion: the knowledge-distillation loss.

A truncated decoupling (rank below full) changes what the network computes. The original network
is the best teacher for getting it back: the converted student is trained to match the teacher's
temperature-softened class probabilities and, with a smaller weight, the true labels (Hinton,
Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015). The training loop is
:class:`sepconv.train.Trainer`, which uses :func:`distillation_loss` when given a ``teacher``:

    >>> from sepconv.train import TrainConfig, Trainer
    >>> config = TrainConfig(epochs=2, lr=0.01, warmup_epochs=0.0)
    >>> Trainer(converted, config, train_set, test_set, teacher=original).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sepconv.utils.validation import finite_number, invalid, positive_number


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton et al.'s distillation loss: softened KL to the teacher plus cross-entropy.

    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``; the ``T^2``
    keeps the soft term's gradients on the scale of the hard term's as ``T`` changes
    (Hinton et al., 2015, section 2). With ``alpha=0`` it is exactly the cross-entropy.

    Args:
        student_logits: ``(N, classes)`` logits ``s`` of the model being trained.
        teacher_logits: ``(N, classes)`` logits ``t`` of the reference model (no gradient taken).
        targets: ``(N,)`` integer labels ``y``.
        temperature: Softening temperature ``T > 0``.
        alpha: Weight of the soft (teacher) term, in ``[0, 1]``.
        label_smoothing: Label smoothing of the hard term (Szegedy et al. 2016), in ``[0, 1)``.

    Returns:
        The scalar loss, averaged over the batch.

    Example:
        >>> s, t = torch.randn(8, 10), torch.randn(8, 10)
        >>> distillation_loss(s, t, torch.randint(0, 10, (8,))).shape
        torch.Size([])
    """
    positive_number("temperature", temperature)
    finite_number("alpha", alpha, low=0, high=1, expected="a number in [0, 1]")
    finite_number(
        "label_smoothing",
        label_smoothing,
        low=0,
        high=1,
        high_inclusive=False,
        expected="a number in [0, 1)",
    )
    if student_logits.shape != teacher_logits.shape:
        expected = f"the shape of `student_logits` {tuple(student_logits.shape)}"
        raise invalid("teacher_logits", expected, tuple(teacher_logits.shape))
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits.detach() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return alpha * temperature**2 * soft + (1 - alpha) * hard
