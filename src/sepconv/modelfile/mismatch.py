"""Weights that do not fit a model, summarised for a human: counts, first keys, likely cause.

A state dict of another architecture differs from the model in hundreds of keys; listing them
all makes one unreadable line. :func:`weight_mismatch` says how many keys are missing,
unexpected and mis-shaped, shows the first few of each, and names the likely cause: another
architecture, another ``num_classes``, another ``in_chans``. Every loader of weights
(:func:`~sepconv.modelfile.load_weights`, :func:`~sepconv.modelfile.load_model`, a Trainer's
resume, ``sepconv evaluate``) reports through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["SHOWN_KEYS", "weight_mismatch"]

SHOWN_KEYS = 3
"""Keys shown per kind of mismatch; the rest are counted."""

# The names sepconv, torchvision and timm give a classifier's last layer.
_HEADS = ("classifier", "fc", "head")


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    return shown + (f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else "")


def _is_head(key: str) -> bool:
    parts = key.split(".")
    return any(part.startswith(_HEADS) for part in parts[:-1])


def weight_mismatch(
    expected: Mapping[str, torch.Tensor],
    received: Mapping[str, torch.Tensor],
    *,
    origin: str,
    target: str,
) -> str | None:
    """The summary of how ``received`` fails to fit ``expected``, or ``None`` when it fits.

    Args:
        expected: The model's ``state_dict()``.
        received: The weights to load, with the model's key names.
        origin: Where the weights come from, for the message (a file name, ``"`source`"``).
        target: What they are loaded into, for the message (``"MobileNetV2"``).

    Example:
        >>> fc = {"classifier." + k: v for k, v in torch.nn.Linear(4, 10).state_dict().items()}
        >>> other = {"classifier." + k: v for k, v in torch.nn.Linear(4, 3).state_dict().items()}
        >>> weight_mismatch(fc, other, origin="a.pth", target="Net").split(". ")[-1]
        'Likely cause: a model built with another num_classes (3 in the weights, 10 here).'
    """
    missing = [k for k in expected if k not in received]
    unexpected = [k for k in received if k not in expected]
    shaped = [
        k
        for k, v in received.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shaped):
        return None
    head = (
        f"Weights from {origin} do not fit {target}: {len(missing)} missing, {len(unexpected)} "
        f"unexpected and {len(shaped)} mis-shaped key(s) of {len(expected)}: "
    )
    parts = []
    if missing:
        parts.append(_first([f"missing key {k!r}" for k in missing]))
    if unexpected:
        parts.append(_first([f"unexpected key {k!r}" for k in unexpected]))
    if shaped:
        shapes = [
            f"mis-shaped key {k!r}: expected {tuple(expected[k].shape)}, "
            f"received {tuple(received[k].shape)}"
            for k in shaped
        ]
        parts.append(_first(shapes))
    cause = _cause(expected, received, missing, unexpected, shaped)
    return head + "; ".join(parts) + f". Likely cause: {cause}."


def _cause(
    expected: Mapping[str, torch.Tensor],
    received: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    shaped: list[str],
) -> str:
    # Most of the model's keys absent, or most of the weights' keys unknown to the model (the
    # blocks of MobileNetV1 and V2 share their part names, not their layout).
    shared = len(expected) - len(missing)
    if shared < len(expected) / 2 or len(unexpected) > len(received) / 2:
        return "the weights are of another architecture (most keys differ)"
    if shaped and not missing and not unexpected and all(_is_head(k) for k in shaped):
        key = next((k for k in shaped if k.endswith("weight")), shaped[0])
        return (
            f"a model built with another num_classes ({received[key].shape[0]} in the weights, "
            f"{expected[key].shape[0]} here)"
        )
    first = next(iter(expected))
    convs = first in shaped and expected[first].dim() == received[first].dim() == 4
    if convs and expected[first].shape[1] != received[first].shape[1]:
        return (
            f"a model built with another in_chans ({received[first].shape[1]} in the "
            f"weights, {expected[first].shape[1]} here)"
        )
    return "another variant of the architecture or other builder arguments (width_mult, ...)"
