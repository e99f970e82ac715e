"""Channel rounding used by width multipliers."""

from __future__ import annotations

from sepconv.utils.validation import invalid


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of it.

    This is the rounding of the MobileNet and EfficientNet reference code (Sandler et al. 2018,
    Tan & Le 2019), used to scale channel counts by a width multiplier.

    Args:
        value: The unrounded channel count, e.g. ``32 * width_mult``.
        divisor: The multiple to round to.
        min_value: The smallest result allowed (default: ``divisor``).

    Example:
        >>> make_divisible(32 * 0.75)
        24
        >>> make_divisible(16 * 1.1)
        16
    """
    if divisor < 1:
        raise invalid("divisor", "a positive integer", divisor)
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down must not lose more than 10%
        rounded += divisor
    return rounded


def expanded_channels(in_channels: int, expand_ratio: float, divisor: int | None) -> int:
    """Width of an inverted bottleneck's expansion: ``C_in * t``, rounded.

    ``divisor=None`` rounds to the nearest integer (MobileNetV2, EfficientNet, whose ratios give
    whole numbers); an integer rounds with :func:`make_divisible` (MobileNetV3 at a width
    multiplier, MobileNetV4, EfficientNetV2's Fused-MBConv: the references round to 8).

    Example:
        >>> expanded_channels(24, 3.67, None), expanded_channels(24, 3.67, 8)
        (88, 88)
        >>> expanded_channels(60, 2.3, None), expanded_channels(60, 2.3, 8)
        (138, 136)
    """
    value = in_channels * expand_ratio
    return round(value) if divisor is None else make_divisible(value, divisor)
