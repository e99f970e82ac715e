"""The trunk shared by every model: stem -> stages -> final, then a classifier or feature maps.

Every sepconv model is a :class:`Backbone`: ``stem``, an ``nn.Sequential`` of ``stages`` and a
``final`` module (``nn.Identity`` where the architecture has none). ``forward_features`` runs them
and returns the last feature map; ``forward_head`` pools, runs the optional ``pre_logits``
(MobileNetV3's post-pool 1x1 conv, ConvNeXt's LayerNorm) and classifies. With
``features_only=True`` the model instead returns one feature map per level listed in
``feature_info`` (as timm's ``features_only`` does), and modules after the last level, classifier
included, are not built, so every parameter takes part in the output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Backbone", "FeatureInfo", "resolution_levels"]


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


def resolution_levels(strides: Sequence[int]) -> list[int]:
    """The stages whose outputs form the feature pyramid: the last stage at each resolution.

    Args:
        strides: The stride of each stage (of its first block), in order.

    Example:
        >>> resolution_levels([1, 2, 2, 2, 1, 2, 1])  # MobileNetV2 / EfficientNet: 0, 1, 2, 4, 6
        [0, 1, 2, 4, 6]
    """
    last = len(strides) - 1
    return [i for i in range(len(strides)) if i == last or strides[i + 1] > 1]


class Backbone(nn.Module):
    """Base of every sepconv model: shared forward logic over ``stem``, ``stages``, ``final``.

    Subclasses build ``stem``, ``stages`` and ``final``, then call :meth:`_finish` with the
    feature levels, the width of the last feature map and, where the architecture has one, the
    module that runs on the pooled features before the classifier.

    Attributes:
        feature_info: The levels returned when ``features_only=True`` (or available for it).
        features_only: Whether ``forward`` returns the list of feature maps.
        num_features: Channels of the map returned by ``forward_features``.
        pre_logits: What runs on the pooled ``(N, num_features, 1, 1)`` map before dropout and
            the classifier: MobileNetV3/V4's 1x1 conv to 1280 or 1024 channels (a
            ``ConvNormAct``), ConvNeXt's LayerNorm; ``nn.Identity`` elsewhere.
    """

    stem: nn.Module
    stages: nn.Sequential
    final: nn.Module
    feature_info: tuple[FeatureInfo, ...]
    pool: nn.Module
    pre_logits: nn.Module
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
        pre_logits: nn.Module | None = None,
        pre_logits_features: int | None = None,
    ) -> None:
        """Build the classifier head, or drop the modules past the last level in features_only.

        ``pre_logits`` (see the class) outputs ``pre_logits_features`` channels, the
        classifier's input (default ``num_features``, the width of the pooled map).
        """
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
        self.pre_logits = pre_logits if pre_logits is not None else nn.Identity()
        self.drop = nn.Dropout(drop_rate)
        width = num_features if pre_logits_features is None else pre_logits_features
        self.classifier = nn.Linear(width, num_classes)

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
        """Pool, run ``pre_logits``, drop out and classify a feature map:
        ``(N, C, H, W) -> (N, num_classes)``."""
        x = self.pre_logits(self.pool(x))  # (N, C', 1, 1)
        x = torch.flatten(x, 1)
        return self.classifier(self.drop(x))

    def check_input(self, x: object) -> None:
        """Raise a ``ValueError`` naming the model's stem unless ``x`` is an ``(N, C, H, W)``
        floating-point tensor of the weights' dtype with non-empty images.

        Called by :meth:`forward`: a uint8 image batch, a float64 tensor for float32 weights or a
        0x0 image otherwise fails deep inside a convolution with a message naming no layer.
        """
        layer = f"{type(self).__name__}.stem"
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"{layer} expected a float tensor (N, C, H, W), received {type(x).__name__}."
            )
        # The first parameter's dtype is the weights' (float32, or what .half()/.double() made
        # it); the check costs one attribute lookup per call, not a pass over the weights.
        weight = next(self.stem.parameters(), None)
        wanted = weight.dtype if weight is not None else None
        if not x.is_floating_point() or (wanted is not None and x.dtype != wanted):
            want = str(wanted).removeprefix("torch.") if wanted is not None else "a float dtype"
            raise ValueError(
                f"{layer} expected a {want} input tensor (N, C, H, W) like its weights, "
                f"received {str(x.dtype).removeprefix('torch.')}; convert images with "
                f"`.to({wanted or 'torch.float32'})` (and normalise them) or the model with "
                f"`.to(dtype)`."
            )
        if x.dim() != 4 or x.shape[-1] == 0 or x.shape[-2] == 0:
            raise ValueError(
                f"{layer} expected input of shape (N, C, H, W) with H, W >= 1, "
                f"received {list(x.shape)}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(N, num_classes)``, or the list of feature maps when ``features_only``."""
        self.check_input(x)
        if self.features_only:
            return self.forward_feature_maps(x)
        return self.forward_head(self.forward_features(x))
