"""ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016): the
standard-convolution baseline, with the stride on the 3x3 conv as in torchvision ("v1.5")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sepconv.layers import ConvNormAct, NormFactory
from sepconv.models._registry import register_model
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common, norm_with_eps

__all__ = ["ResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4), plus a shortcut, then ReLU.

    Attributes:
        conv1, conv2, conv3: The three ``ConvNormAct`` (the last without activation).
        downsample: 1x1 strided conv + BN when the shape changes, else ``nn.Identity``.

    Shape:
        ``(N, C_in, H, W) -> (N, 4 * width, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, *, stride: int, norm: NormFactory) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = ConvNormAct(in_channels, width, 1, norm=norm)
        self.conv2 = ConvNormAct(width, width, 3, stride=stride, norm=norm)
        self.conv3 = ConvNormAct(width, out_channels, 1, norm=norm, act=None)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = ConvNormAct(
                in_channels, out_channels, 1, stride=stride, norm=norm, act=None
            )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


@dataclass(frozen=True)
class ResStage:
    """One stage (``conv2_x`` ... ``conv5_x``) of He et al. Table 1."""

    width: int  # bottleneck width; the stage outputs 4x this
    repeats: int
    stride: int


# He et al. 2016, Table 1, 50-layer column. Stem: 7x7 conv 64 stride 2, 3x3 max pool stride 2.
#         width  n  s
RESNET50_STAGES = (
    ResStage(64, 3, 1),
    ResStage(128, 4, 2),
    ResStage(256, 6, 2),
    ResStage(512, 3, 2),
)


class ResNet(Backbone):
    """ResNet with bottleneck blocks: 7x7 stem + max pool -> 4 stages -> pool -> linear.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: stride 1 in the 7x7 stem conv and no stem max pool
            (overall reduction 8 instead of 32); the parameter count does not change.
        drop_rate: Dropout before the classifier.
        features_only: Return the 4 stage outputs (reductions 4-32).
        bn_eps: BatchNorm epsilon.
        zero_init_residual: Start the last BatchNorm of every bottleneck at scale 0, so each
            block starts as its shortcut (Goyal et al. 2017, section 5.1; torchvision's
            ``zero_init_residual``, on by default in timm as ``zero_init_last``). Off by
            default, as in torchvision.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = ResNet(num_classes=10, small_input=True)
        >>> model(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
        features_only: bool = False,
        bn_eps: float = 1e-5,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        norm = norm_with_eps(bn_eps)
        channels = 64
        stem_stride = 1 if small_input else 2
        self.stem = nn.Sequential(
            ConvNormAct(in_chans, channels, 7, stride=stem_stride, norm=norm),
            nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1),
        )
        reduction = 1 if small_input else 4
        stages, feature_info = [], []
        for index, row in enumerate(RESNET50_STAGES):
            reduction *= row.stride
            blocks = []
            for b in range(row.repeats):
                stride = row.stride if b == 0 else 1
                blocks.append(Bottleneck(channels, row.width, stride=stride, norm=norm))
                channels = row.width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
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
        init_weights(self, linear="torch_default")
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.conv3.bn.get_parameter("weight"))


@register_model(
    input_size=224, top1=76.13, source="torchvision ResNet50_Weights.IMAGENET1K_V1 metadata"
)
def resnet50(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    drop_rate: float = 0.0,
    features_only: bool = False,
    bn_eps: float = 1e-5,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-50; see :class:`ResNet`."""
    return ResNet(
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        drop_rate=drop_rate,
        features_only=features_only,
        bn_eps=bn_eps,
        zero_init_residual=zero_init_residual,
    )
