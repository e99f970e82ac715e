"""The trunk shared by every model: stem -> stages -> final, then a classifier or feature maps.

Every sepconv model is a :class:`Backbone`: ``stem``, an ``nn.Sequential`` of ``stages`` and a
``final`` module (``nn.Identity`` where the architecture has none). ``forward_features`` runs them
and returns the last feature map; ``forward_head`` pools and classifies. With
``features_only=True`` the model instead returns one feature map per level listed in
``feature_info`` (as timm's ``features_only`` does), and modules after the last level, classifier
included, are not built, so every parameter takes part in the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sepconv.layers import NormFactory
from sepconv.layers._validate import invalid, positive_int, probability


@dataclass(frozen=True)
class FeatureInfo:
    """One level of a multi-scale feature pyramid.

    Attributes:
        module: The trunk module whose output is this level: ``"stem"``, ``"stages.<i>"`` or
            ``"final"``.
        channels: Channels of the feature map.
        reduction: Input size divided by the map's size (2, 4, 8, 16, 32 at default strides).
    """

    module: str
    channels: int
    reduction: int

    @property
    def level(self) -> int:
        """Pyramid level ``log2(reduction)``: EfficientDet's BiFPN reads levels 3-5 (P3-P5) and
        builds P6, P7 by downsampling P5."""
        return int(math.log2(self.reduction))


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


class Backbone(nn.Module):
    """Base of every sepconv model: shared forward logic over ``stem``, ``stages``, ``final``.

    Subclasses build ``stem``, ``stages`` and ``final``, then call :meth:`_finish` with the
    feature levels and the width of the last feature map.

    Attributes:
        feature_info: The levels returned when ``features_only=True`` (or available for it).
        features_only: Whether ``forward`` returns the list of feature maps.
        num_features: Channels of the map returned by ``forward_features``.
    """

    stem: nn.Module
    stages: nn.Sequential
    final: nn.Module
    feature_info: tuple[FeatureInfo, ...]
    pool: nn.Module
    drop: nn.Module
    classifier: nn.Module

    def _finish(
        self,
        *,
        feature_info: list[FeatureInfo],
        num_features: int,
        num_classes: int,
        drop_rate: float,
        features_only: bool,
    ) -> None:
        """Build the classifier head, or drop the modules past the last level in features_only."""
        self.feature_info = tuple(feature_info)
        self.features_only = features_only
        self.num_features = num_features
        self._level_modules = [info.module for info in feature_info]
        if features_only:
            last = feature_info[-1].module
            if last != "final":
                self.final = nn.Identity()
                if last.startswith("stages."):
                    keep = int(last.split(".")[1]) + 1
                    self.stages = self.stages[:keep]
            return
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last feature map ``(N, num_features, H / 32, W / 32)`` (default strides)."""
        return self.final(self.stages(self.stem(x)))

    def forward_feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return one map per entry of ``feature_info``, shallowest first."""
        maps = []
        trunk = [("stem", self.stem)]
        trunk += [(f"stages.{i}", stage) for i, stage in enumerate(self.stages)]
        trunk.append(("final", self.final))
        wanted = set(self._level_modules)
        for name, module in trunk:
            x = module(x)
            if name in wanted:
                maps.append(x)
            if len(maps) == len(wanted):
                break
        return maps

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Pool, drop out and classify a feature map: ``(N, C, H, W) -> (N, num_classes)``."""
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(N, num_classes)``, or the list of feature maps when ``features_only``."""
        if self.features_only:
            return self.forward_feature_maps(x)
        return self.forward_head(self.forward_features(x))


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
    over 10 classes starts a ResNet-50 at a loss of about 12 instead of ln(10) = 2.3.

    Args:
        model: The model, initialised in place.
        linear: ``"fan_out_uniform"``: ``U(+-1/sqrt(out_features))``, zero bias (TensorFlow's
            dense initialiser; torchvision's EfficientNet, timm's MobileNetV1). ``"normal"``:
            ``N(0, 0.01)``, zero bias (torchvision's MobileNetV2 and VGG). ``"torch_default"``:
            ``nn.Linear``'s own ``U(+-1/sqrt(in_features))`` for weight and bias (torchvision's
            ResNet, timm's legacy Xception).
    """
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
