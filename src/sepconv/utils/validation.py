"""Checks of user input, in the one wording the library uses.

Every check raises ``ValueError`` from :func:`invalid`: it names the argument, says what was
expected and echoes what was received. The command line turns argument names into flags
(``lr`` -> ``--lr``) where it reports them. This module imports nothing from the rest of sepconv.
"""

from __future__ import annotations

import torch


def invalid(name: str, expected: str, received: object) -> ValueError:
    """Return the error for a bad argument, in the one wording the library uses."""
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}, received {received!r}."
    )


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(name, "a positive integer", value)
    return value


def probability(name: str, value: float) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1)``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise invalid(name, "a probability in [0, 1)", value)
    return float(value)


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
