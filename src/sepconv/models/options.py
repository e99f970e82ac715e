"""The options every model builder takes, checked once: classes, channels, width, strides, BN eps.

Each check raises ``ValueError`` naming the argument (:func:`sepconv.utils.validation.invalid`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sepconv.layers import NormFactory
from sepconv.utils.validation import invalid, positive_int, positive_number, probability

SMALL_INPUT_MAX_SIDE = 64
"""Largest image side (px) built with ``small_input=True``: 28-64 px inputs keep more resolution."""


def small_input_for(side: int) -> bool:
    """Return whether images of side ``side`` px get a model built with ``small_input=True``.

    The one rule every tool uses to pick ``small_input`` from the data: images up to
    ``SMALL_INPUT_MAX_SIDE`` (64) px (Fashion-MNIST, CIFAR) keep more resolution in the stem.

    Args:
        side: Input side in pixels (square images).

    Example:
        >>> small_input_for(28), small_input_for(224)
        (True, False)
    """
    return side <= SMALL_INPUT_MAX_SIDE


def check_common(*, num_classes: int, in_chans: int, drop_rate: float) -> None:
    """Validate the arguments every builder takes, raising ``ValueError`` naming the argument."""
    positive_int("num_classes", num_classes)
    positive_int("in_chans", in_chans)
    probability("drop_rate", drop_rate)


def check_width(width_mult: float) -> float:
    """Return ``width_mult`` if it is a finite positive number, else raise naming it."""
    # finite_number refuses NaN and infinity too: `nan <= 0` is False, and int(nan) fails later
    # with no argument named.
    return positive_number("width_mult", width_mult)


def check_stem_stride(stem_stride: int | None, small_input: bool) -> int:
    """Return the stem's stride: ``stem_stride`` if given (1 or 2), else 1 for ``small_input``
    and 2 otherwise; raise naming ``stem_stride`` for any other value."""
    if stem_stride is None:
        return 1 if small_input else 2
    if isinstance(stem_stride, bool) or stem_stride not in (1, 2):
        raise invalid("stem_stride", "1, 2 or None (the stride small_input implies)", stem_stride)
    return stem_stride


def norm_with_eps(bn_eps: float) -> NormFactory:
    """Return a BatchNorm2d factory with ``eps=bn_eps`` (torchvision and timm use 1e-5, weights
    ported from TensorFlow 1e-3)."""
    positive_number("bn_eps", bn_eps)
    return nn.BatchNorm2d if bn_eps == 1e-5 else _BatchNormEps(float(bn_eps))


@dataclass(frozen=True)
class _BatchNormEps:
    """A picklable ``BatchNorm2d`` factory with a fixed ``eps``."""

    eps: float

    def __call__(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=self.eps)
