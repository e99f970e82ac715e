"""Top-1 agreement of a compiled or quantized model with its reference, on the same images."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sepconv.utils.validation import invalid, positive_int

__all__ = ["Agreement", "agreement_interval", "compare_top1", "top1_classes"]


@dataclass(frozen=True)
class Agreement:
    """How a candidate model's top-1 predictions compare with a reference's on the same images.

    Attributes:
        samples: Images compared.
        agreement: Fraction of images where both predict the same class.
        reference_accuracy: Top-1 accuracy of the reference (``None`` without labels).
        candidate_accuracy: Top-1 accuracy of the candidate (``None`` without labels).
    """

    samples: int
    agreement: float
    reference_accuracy: float | None
    candidate_accuracy: float | None

    @property
    def accuracy_drop(self) -> float | None:
        """Reference minus candidate accuracy, in percentage points."""
        if self.reference_accuracy is None or self.candidate_accuracy is None:
            return None
        return 100.0 * (self.reference_accuracy - self.candidate_accuracy)

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of the agreement on images like these (:func:`agreement_interval`)."""
        return agreement_interval(self.agreement, self.samples)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, including the accuracy drop and the 95% interval."""
        return {
            **dataclasses.asdict(self),
            "accuracy_drop_points": self.accuracy_drop,
            "agreement_interval_95": list(self.interval),
        }


def agreement_interval(agreement: float, samples: int, *, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an agreement measured on ``samples`` images.

    An agreement counted on N images estimates the rate on all images like them with a
    binomial error: near 99.5%, one image more or less that changes its class moves it by
    1/N, and on 1000 images the 95% interval is about +-0.4 points wide, as wide as the gaps
    between bf16, int8 recipes and ``min_agreement`` it is used to judge. The Wilson interval
    (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it over the normal approximation for
    rates near 0 or 1) is the set of rates ``p`` with
    ``|agreement - p| <= z * sqrt(p (1 - p) / samples)``; it stays within [0, 1] and is not
    empty at an agreement of exactly 1.

    Args:
        agreement: Measured fraction in [0, 1].
        samples: Images it was measured on (>= 1).
        z: Normal quantile of the confidence level (1.96: 95%).

    Returns:
        ``(low, high)``.
    """
    positive_int("samples", samples)
    if not 0.0 <= agreement <= 1.0:
        raise invalid("agreement", "a fraction in [0, 1]", agreement)
    n, z2 = float(samples), z * z
    centre = (agreement + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(agreement * (1 - agreement) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def compare_top1(
    reference: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor,
    candidate: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = 1,
) -> Agreement:
    """Top-1 agreement of ``candidate`` with ``reference`` (and both accuracies, given labels).

    Both are called on batches of exactly ``batch_size`` inputs, so an :class:`InferenceModel`
    compiled for that batch works; the last batch is padded with zeros and the padding's
    predictions dropped.

    Args:
        reference: E.g. the fp32 model (an ``nn.Module`` is run in eval mode under
            ``inference_mode``) or its compiled form; or its top-1 classes on ``inputs``
            (:func:`top1_classes`), to compare several candidates without running it again.
        candidate: E.g. the int8 model from :func:`quantize`.
        inputs: Float model inputs ``(N, C, H, W)`` (see :func:`prepare_images`).
        labels: Optional ``(N,)`` integer labels.
        batch_size: Batch both callables take.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> result = compare_top1(net, net, torch.randn(5, 1, 2, 2), batch_size=2)
        >>> result.samples, result.agreement
        (5, 1.0)
    """
    positive_int("batch_size", batch_size)
    n = _check_inputs(inputs)
    if labels is not None and tuple(labels.shape) != (n,):
        raise invalid("labels", f"shape ({n},) to match `inputs`", labels.shape)
    if isinstance(reference, torch.Tensor):
        if reference.shape != (n,) or reference.is_floating_point():
            raise invalid(
                "reference", f"a callable, or ({n},) integer top-1 classes", reference.shape
            )
        ref_top1 = reference
    else:
        ref_top1 = _top1(reference, inputs, batch_size)
    cand_top1 = _top1(candidate, inputs, batch_size)
    accuracies: tuple[float | None, float | None] = (None, None)
    if labels is not None:
        accuracies = (
            (ref_top1 == labels).float().mean().item(),
            (cand_top1 == labels).float().mean().item(),
        )
    return Agreement(
        samples=n,
        agreement=(ref_top1 == cand_top1).float().mean().item(),
        reference_accuracy=accuracies[0],
        candidate_accuracy=accuracies[1],
    )


def top1_classes(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *, batch_size: int = 1
) -> torch.Tensor:
    """The top-1 class ``fn`` predicts for each of ``inputs``, called on batches of exactly
    ``batch_size`` (the last padded with zeros, the padding's predictions dropped).

    Args:
        fn: A model (an ``nn.Module`` is run as an eval-mode fp32 copy under
            ``inference_mode``) or any callable from a batch to its logits.
        inputs: Float model inputs ``(N, C, H, W)``.
        batch_size: Batch ``fn`` takes.

    Returns:
        ``(N,)`` int64 classes: what :func:`compare_top1` takes as ``reference``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> top1_classes(net, torch.randn(5, 1, 2, 2), batch_size=2).shape
        torch.Size([5])
    """
    positive_int("batch_size", batch_size)
    _check_inputs(inputs)
    return _top1(fn, inputs, batch_size)


def _top1(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """:func:`top1_classes` on arguments already checked."""
    if isinstance(fn, nn.Module):
        fn = _copy_eval(fn)
    predictions = []
    with torch.inference_mode():
        for batch in inputs.split(batch_size):
            n = batch.shape[0]
            if n < batch_size:
                batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
            predictions.append(fn(batch)[:n].argmax(dim=1))
    return torch.cat(predictions)


def _check_inputs(inputs: object) -> int:
    """The number of images in ``inputs``, a non-empty 4-D tensor; else raise."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or inputs.shape[0] == 0:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else inputs
        raise invalid("inputs", "a non-empty (N, C, H, W) float tensor", shape)
    return int(inputs.shape[0])


def _copy_eval(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).float().cpu().eval()
