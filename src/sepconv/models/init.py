"""Initialisation for training from scratch, as each family's reference implementation does it.

Convs start Kaiming-normal (fan-out) and norms at weight 1, bias 0 in every torchvision and timm
model of these families; the classifier is where the references differ (:func:`init_weights`).
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn


def init_conv(conv: nn.Conv2d) -> None:
    """Kaiming-normal weights (fan-out, ReLU gain) and zero bias, as in torchvision and timm."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


LinearInit = Literal["fan_out_uniform", "normal", "torch_default"]
"""How an architecture's reference implementation starts its linear layers (see init_weights)."""


def init_weights(model: nn.Module, *, linear: LinearInit) -> None:
    """Start ``model`` for training from scratch as its reference implementation does.

    Convs start as :func:`init_conv` and norms at weight 1, bias 0, as in every torchvision and
    timm model of these families. Linear layers differ between the references, and with few
    classes the difference decides the first losses: a ``U(+-1/sqrt(out_features))`` classifier
    over 10 classes draws weights ``sqrt(2048 / 10)``, about 14, times as large as
    ``nn.Linear``'s default over ResNet-50's 2048 features, and starts the loss far above
    ln(10) = 2.3.

    Args:
        model: The model, initialised in place.
        linear: ``"fan_out_uniform"``: ``U(+-1/sqrt(out_features))``, zero bias (TensorFlow's
            dense initialiser; torchvision's EfficientNet, timm's MobileNetV1). ``"normal"``:
            ``N(0, 0.01)``, zero bias (torchvision's MobileNetV2 and VGG). ``"torch_default"``:
            ``nn.Linear``'s own ``U(+-1/sqrt(in_features))`` for weight and bias (torchvision's
            ResNet, timm's legacy Xception).

    A model built wholly on the ``meta`` device (shapes only, as the latency predictor builds
    its candidates) holds no values to initialise and is left as it is.
    """
    if all(p.is_meta for p in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            init_conv(module)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear == "torch_default":
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            if linear == "normal":
                nn.init.normal_(module.weight, 0.0, 0.01)
            else:
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)


def init_trunc_normal(model: nn.Module, std: float = 0.02) -> None:
    """Start ``model`` as ConvNeXt's reference does (Liu et al. 2022; torchvision, timm): every
    conv and linear weight from a normal of standard deviation ``std`` truncated to +-2, biases
    zero; norms at weight 1, bias 0.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
