"""VGG-16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, configuration D): the standard-convolution baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sepconv.layers import ConvNormAct
from sepconv.models._registry import register_model
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common

__all__ = ["VGG", "vgg16"]


@dataclass(frozen=True)
class VGGStage:
    """One stage of configuration D: 3x3 convs (ReLU, no norm) then a 2x2 max pool."""

    channels: int
    repeats: int


# Simonyan & Zisserman 2015, Table 1, column D. Head: 7x7 pool -> 4096 -> 4096 -> classes.
#                c   n
VGG16_STAGES = (
    VGGStage(64, 2),
    VGGStage(128, 2),
    VGGStage(256, 3),
    VGGStage(512, 3),
    VGGStage(512, 3),
)
VGG_HIDDEN, VGG_POOL = 4096, 7


class VGG(Backbone):
    """VGG: 5 stages of 3x3 conv + ReLU, each closed by a max pool, then a 3-layer MLP.

    The MLP sees a 7x7 adaptive average pool of the last map, as in torchvision, so the parameter
    count does not depend on the input size.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: no max pool after stages 0 and 1 (overall reduction 8
            instead of 32); the parameter count does not change.
        drop_rate: Dropout after each hidden MLP layer (0.5 in the paper).
        features_only: Return the 5 stage outputs (reductions 2-32).

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = VGG(num_classes=10, small_input=True)
        >>> model(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.5,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        self.stem = nn.Identity()
        channels, reduction = in_chans, 1
        stages, feature_info = [], []
        for index, row in enumerate(VGG16_STAGES):
            layers: list[nn.Module] = []
            for _ in range(row.repeats):
                layers.append(ConvNormAct(channels, row.channels, 3, norm=None))
                channels = row.channels
            if small_input and index < 2:
                layers.append(nn.Identity())
            else:
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
            stages.append(nn.Sequential(*layers))
            feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Identity()
        self._finish(
            feature_info=feature_info,
            num_features=channels,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
        )
        if not features_only:
            # VGG's head replaces the single linear layer of the other models
            self.pool = nn.AdaptiveAvgPool2d(VGG_POOL)
            self.drop = nn.Identity()
            self.classifier = nn.Sequential(
                nn.Linear(channels * VGG_POOL * VGG_POOL, VGG_HIDDEN),
                nn.ReLU(),
                nn.Dropout(drop_rate),
                nn.Linear(VGG_HIDDEN, VGG_HIDDEN),
                nn.ReLU(),
                nn.Dropout(drop_rate),
                nn.Linear(VGG_HIDDEN, num_classes),
            )
        init_weights(self, linear="normal")

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 512, H, W) -> (N, num_classes)`` through the 7x7 pool and the MLP."""
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_model(
    input_size=224, top1=71.592, source="torchvision VGG16_Weights.IMAGENET1K_V1 metadata"
)
def vgg16(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    drop_rate: float = 0.5,
    features_only: bool = False,
) -> VGG:
    """VGG-16 (configuration D, no batch norm); see :class:`VGG`."""
    return VGG(
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        drop_rate=drop_rate,
        features_only=features_only,
    )
