"""The options every model builder takes, checked once: classes, channels, width, strides, BN eps.

Each check raises ``ValueError`` naming the argument (:func:`sepconv.utils.validation.invalid`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from sepconv.layers import NormFactory
from sepconv.utils.validation import (
    boolean,
    bounded_int,
    invalid,
    one_of,
    positive_int,
    positive_number,
    probability,
)

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


def check_option_types(builder: Callable[..., object], kwargs: Mapping[str, Any]) -> None:
    """Refuse a value that is not ``True`` or ``False`` for an option the builder annotates
    ``bool`` (``small_input``, ``features_only``, ...): ``"no"`` is truthy and would switch the
    option on. The other options are checked, with their ranges, by each builder.

    Raises:
        ValueError: naming the option.

    Example:
        >>> def build(*, small_input: bool = False) -> None: ...
        >>> check_option_types(build, {"small_input": "no"})
        Traceback (most recent call last):
        ValueError: Invalid value for argument `small_input`: expected True or False, received 'no'.
    """
    parameters = inspect.signature(builder).parameters
    for name, value in kwargs.items():
        parameter = parameters.get(name)
        if parameter is not None and parameter.annotation in (bool, "bool"):
            boolean(name, value)


MAX_CLASSES = 1 << 20
"""Most classes a model may have (ImageNet-21k has 21,843)."""
MAX_CHANNELS = 1 << 16
"""Most input channels a model may take."""
MAX_WIDTH_MULT = 64.0
"""Largest width multiplier: wider is a typo, and its channel counts overflow what PyTorch sizes."""


def check_common(*, num_classes: int, in_chans: int, drop_rate: float) -> None:
    """Validate the arguments every builder takes, raising ``ValueError`` naming the argument."""
    positive_int("num_classes", num_classes)
    bounded_int("num_classes", num_classes, 1, MAX_CLASSES)
    positive_int("in_chans", in_chans)
    bounded_int("in_chans", in_chans, 1, MAX_CHANNELS)
    probability("drop_rate", drop_rate)


def check_width(width_mult: float) -> float:
    """Return ``width_mult`` if it is a finite positive number, else raise naming it."""
    # finite_number refuses NaN and infinity too: `nan <= 0` is False, and int(nan) fails later
    # with no argument named.
    positive_number("width_mult", width_mult)
    if width_mult > MAX_WIDTH_MULT:
        raise invalid("width_mult", f"a positive number up to {MAX_WIDTH_MULT:g}", width_mult)
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
    positive_number("bn_eps", bn_eps)
    return nn.BatchNorm2d if bn_eps == 1e-5 else _BatchNormEps(float(bn_eps))


@dataclass(frozen=True)
class _BatchNormEps:
    """A picklable ``BatchNorm2d`` factory with a fixed ``eps``."""

    eps: float

    def __call__(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=self.eps)


def small_input_strides(strides: Sequence[int], small_input: bool) -> list[int]:
    """The stage strides a model builds: with ``small_input`` the first stage that strides runs
    at stride 1 (with the stem at stride 1 too, overall reduction 8 instead of 32).

    Example:
        >>> small_input_strides([1, 2, 2, 2, 1, 2], True)
        [1, 1, 2, 2, 1, 2]
    """
    out = list(strides)
    if small_input:
        first = next((i for i, stride in enumerate(out) if stride > 1), None)
        if first is not None:
            out[first] = 1
    return out


def check_arch(arch: str, choices: Sequence[str]) -> str:
    """Return ``arch`` if it is one of a family's ``choices``, else raise naming ``arch``."""
    one_of("arch", arch, choices)
    return arch
