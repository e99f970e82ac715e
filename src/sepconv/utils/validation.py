"""Checks of user input, in the one wording the library uses.

Every check raises ``ValueError`` from :func:`invalid` (``TypeError`` from :func:`invalid_type`
where the received object is of the wrong kind altogether): it names the argument, says what was
expected and echoes what was received. The command line turns argument names into flags
(``lr`` -> ``--lr``) where it reports them. This module imports nothing from the rest of sepconv.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch


def _message(name: str, expected: str, shown: str, note: str) -> str:
    return f"Invalid value for argument `{name}`: expected {expected}, received {shown}{note}."


def invalid(name: str, expected: str, received: object, *, note: str = "") -> ValueError:
    """Return the error for a bad argument, in the one wording the library uses.

    Args:
        name: The argument (or CLI flag, ``--lr``) at fault.
        expected: What would have been accepted, e.g. ``"a positive integer"``.
        received: The value given; shown with ``repr``.
        note: Text put right after the received value, before the final period, such as
            ``" (already registered by sepconv.models.vgg)"`` or ``", which matches none"``.

    Example:
        >>> str(invalid("depth_multiplier", "a positive integer", 0))
        'Invalid value for argument `depth_multiplier`: expected a positive integer, received 0.'
    """
    return ValueError(_message(name, expected, repr(received), note))


def invalid_type(
    name: str, expected: str, received: object, *, show_type: bool = True
) -> TypeError:
    """Return the ``TypeError`` for an argument of the wrong kind, in the same wording.

    ``received`` is shown by its type's name (``received Linear``), or with ``repr`` when
    ``show_type`` is false.

    Example:
        >>> str(invalid_type("conv", "a torch.nn.Conv2d", torch.nn.Linear(1, 1)))
        'Invalid value for argument `conv`: expected a torch.nn.Conv2d, received Linear.'
    """
    shown = type(received).__name__ if show_type else repr(received)
    return TypeError(_message(name, expected, shown, ""))


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(name, "a positive integer", value)
    return value


def non_negative_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(name, "a non-negative integer", value)
    return value


MAX_THREADS = 1024
"""Most threads a thread count may ask for: more is a typo, and OpenMP would try to start them."""
MAX_SIDE = 16384
"""Largest image or input side (and kernel size) in pixels: a larger one is a typo, and past
int64 it is no size PyTorch can even represent."""
MAX_BATCH = 1 << 20
"""Largest batch size (or count of timed repeats) a command takes."""


def bounded_int(name: str, value: int, low: int, high: int) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise naming ``name`` (below
    ``low``, in the words of :func:`positive_int` / :func:`non_negative_int` when they apply).

    Example:
        >>> bounded_int("seeds", 3, 1, 1000)
        3
        >>> bounded_int("n", 9, 2, 5)
        Traceback (most recent call last):
        ValueError: Invalid value for argument `n`: expected an integer from 2 to 5, received 9.
    """
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(low)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        # The wording of positive_int / non_negative_int when that is the bound missed.
        raise invalid(name, kind or f"an integer >= {low}", value)
    if value > high:
        raise invalid(
            name, f"{kind} up to {high}" if kind else f"an integer from {low} to {high}", value
        )
    return value


def thread_count(name: str, value: int) -> int:
    """Return ``value`` if it is a thread count from 1 to :data:`MAX_THREADS`, else raise."""
    return bounded_int(name, value, 1, MAX_THREADS)


def boolean(name: str, value: object) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise naming ``name``.

    A string such as ``"no"`` is truthy, so accepting it would switch the option on.
    """
    if not isinstance(value, bool):
        raise invalid(name, "True or False", value)
    return value


def finite_number(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    expected: str | None = None,
) -> float:
    """Return ``value`` as a float if it is a finite real number within the bounds, else raise.

    Args:
        name: The argument checked.
        value: The value given (``bool`` is refused: it is not a quantity).
        low, high: Bounds; ``None`` leaves that side open.
        low_inclusive, high_inclusive: Whether each bound is allowed.
        expected: Wording of the expectation; derived from the bounds when omitted
            (``"> 0"``, ``">= 0"``, ``"a value in [0, 1)"``, ``"a finite number"``). NaN and
            infinities are refused whatever the bounds, with ``(not finite)`` after the value.

    Example:
        >>> finite_number("momentum", 0.9, low=0, high=1, high_inclusive=False)
        0.9
        >>> finite_number("lr", float("nan"), low=0, low_inclusive=False)
        Traceback (most recent call last):
        ValueError: Invalid value for argument `lr`: expected > 0, received nan (not finite).
    """
    if expected is None:
        expected = _bounds_text(low, high, low_inclusive, high_inclusive)
    if not _is_number(value):
        raise invalid(name, expected, value)
    if not math.isfinite(value):
        raise invalid(name, expected, value, note=" (not finite)")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise invalid(name, expected, value)
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise invalid(name, expected, value)
    return float(value)


def _bounds_text(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    if low is not None and high is not None:
        return f"a value in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
    if low is not None:
        return f"{'>=' if low_in else '>'} {low:g}"
    if high is not None:
        return f"{'<=' if high_in else '<'} {high:g}"
    return "a finite number"


def positive_number(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise naming ``name``."""
    return finite_number(name, value, low=0, low_inclusive=False, expected="a positive number")


def probability(name: str, value: float) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1)``, else raise naming ``name``."""
    return finite_number(
        name, value, low=0, high=1, high_inclusive=False, expected="a probability in [0, 1)"
    )


def one_of(name: str, value: object, choices: Collection[object]) -> None:
    """Raise naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise invalid(name, f"one of {', '.join(repr(c) for c in choices)}", value)


def divisible(name: str, value: int, by_name: str, by: int) -> None:
    """Raise unless ``value`` (argument ``name``) is divisible by ``by`` (argument ``by_name``)."""
    if value % by != 0:
        raise invalid(name, f"a multiple of `{by_name}` ({by})", value)


def check_input_channels(x: torch.Tensor, expected: int, layer: str) -> None:
    """Raise a ``ValueError`` naming ``layer`` when ``x`` does not have ``expected`` channels."""
    if x.dim() != 4 or x.shape[1] != expected:
        raise ValueError(
            f"{layer} expected input of shape (N, {expected}, H, W), received {list(x.shape)}."
        )
