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
