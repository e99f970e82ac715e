"""The options every model builder takes, checked once: classes, channels, width, strides, BN eps.

Each check raises ``ValueError`` naming the argument (:func:`sepconv.utils.validation.invalid`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sepconv.layers import NormFactory
from sepconv.utils.validation import invalid, positive_int, probability


def check_common(*, num_classes: int, in_chans: int, drop_rate: float) -> None:
    """Validate the arguments every builder takes, raising ``ValueError`` naming the argument."""
    positive_int("num_classes", num_classes)
    positive_int("in_chans", in_chans)
    probability("drop_rate", drop_rate)


def check_width(width_mult: float) -> float:
    """Return ``width_mult`` if it is a positive number, else raise naming it."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise invalid("width_mult", "a positive number", width_mult)
    return float(width_mult)


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
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or bn_eps <= 0:
        raise invalid("bn_eps", "a positive number", bn_eps)
    return nn.BatchNorm2d if bn_eps == 1e-5 else _BatchNormEps(float(bn_eps))


@dataclass(frozen=True)
class _BatchNormEps:
    """A picklable ``BatchNorm2d`` factory with a fixed ``eps``."""

    eps: float

    def __call__(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=self.eps)
