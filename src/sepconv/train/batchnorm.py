"""BatchNorm running statistics measured on given images."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sepconv.utils.validation import invalid


def update_bn_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Replace every BatchNorm's running mean and variance by those of ``batches``.

    Each BatchNorm's statistics become the average over the batches of the per-batch mean and
    (unbiased) variance of its input (``momentum=None``, PyTorch's cumulative average). Unlike
    ``torch.optim.swa_utils.update_bn``, only the BatchNorms are put in training mode: dropout
    and stochastic depth stay off, so every later BatchNorm sees the activations the model
    computes in eval mode. Weights are not changed; the model is returned in eval mode.

    Uses: recomputing statistics after the weights changed (conversion, pruning), or giving a
    randomly initialised model the activation scale of a trained one (its initial statistics,
    mean 0 and variance 1, do not normalise, and its activations then shrink or grow from layer
    to layer).

    Args:
        model: The model; modified in place.
        batches: Input batches ``(N, C, H, W)``, preprocessed as the model expects.

    Returns:
        ``model``, in eval mode.

    Raises:
        ValueError: no batch was given, or ``model`` has no BatchNorm.

    Example:
        >>> import sepconv
        >>> model = sepconv.create_model("mobilenet_v2", num_classes=10, small_input=True)
        >>> model = update_bn_statistics(model, torch.randn(64, 3, 32, 32).split(16))
        >>> model.training
        False
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError(
            f"Invalid value for argument `model`: {type(model).__name__} has no BatchNorm layer "
            "whose statistics could be updated."
        )
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
                seen += 1
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.eval()
    if seen == 0:
        raise invalid("batches", "at least one input batch", seen, note=" batches")
    return model
