"""MobileNetV1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017): a 3x3 stem and 13 depthwise separable blocks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sepconv.layers import ConvNormAct, DepthwiseSeparableConv2d, make_divisible
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common, check_stem_stride, check_width, norm_with_eps

__all__ = [
    "MobileNetV1",
    "mobilenet_v1",
    "mobilenet_v1_025",
    "mobilenet_v1_050",
    "mobilenet_v1_075",
]


@dataclass(frozen=True)
class DSStage:
    """One stage of depthwise separable blocks (a run of rows of Howard et al. Table 1)."""

    channels: int  # output channels at width 1.0
    stride: int  # stride of the stage's first depthwise conv
    repeats: int  # number of blocks


# Howard et al. 2017, Table 1 (the last "Conv dw / s2" is a known typo; the reference code uses
# stride 1). Stem: 3x3 conv, 32 channels, stride 2.
#        c     s  n
V1_STAGES = (
    DSStage(64, 1, 1),
    DSStage(128, 2, 2),
    DSStage(256, 2, 2),
    DSStage(512, 2, 6),
    DSStage(1024, 2, 2),
)
V1_STEM = 32


class MobileNetV1(Backbone):
    """MobileNetV1: stem -> 5 stages of :class:`DepthwiseSeparableConv2d` -> pool -> linear.

    The width multiplier alpha (``width_mult``) scales every channel count, rounded to a multiple
    of 8 (as timm does; exact for alpha in {0.25, 0.5, 0.75, 1.0}). The resolution multiplier rho
    of the paper is simply the input size: 224 * rho pixels (128, 160, 192, 224 in Table 7).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        width_mult: Width multiplier alpha (> 0).
        small_input: For 28-64 px inputs: stride 1 in the stem and in stage 1 (overall reduction 8
            instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies (1 with
            it, 2 without); ``small_input=True, stem_stride=2`` gives overall reduction 16.
        drop_rate: Dropout before the classifier (Keras uses 1e-3).
        features_only: Return the 5 stage outputs (reductions 2-32) instead of logits.
        bn_eps: BatchNorm epsilon.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = MobileNetV1(num_classes=10, in_chans=1, small_input=True)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        small_input: bool = False,
        stem_stride: int | None = None,
        drop_rate: float = 0.001,
        features_only: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        width_mult = check_width(width_mult)
        norm = norm_with_eps(bn_eps)
        channels = make_divisible(V1_STEM * width_mult)
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm, act=nn.ReLU6)
        stages, feature_info = [], []
        for index, row in enumerate(V1_STAGES):
            out_channels = make_divisible(row.channels * width_mult)
            stride = 1 if small_input and index == 1 else row.stride
            reduction *= stride
            blocks = []
            for b in range(row.repeats):
                blocks.append(
                    DepthwiseSeparableConv2d(
                        channels, out_channels, 3, stride=stride if b == 0 else 1, norm=norm
                    )
                )
                channels = out_channels
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
        init_weights(self, linear="fan_out_uniform")


_HOWARD = "Howard et al. 2017, Table 6 (MobileNet-224)"

_V1_DOC = "MobileNetV1 with width multiplier ``width_mult`` (alpha); see :class:`MobileNetV1`."

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1
V1_VARIANTS = (
    Variant("mobilenet_v1", {}, 224, 70.6, _HOWARD, doc=_V1_DOC),
    Variant("mobilenet_v1_075", {"width_mult": 0.75}, 224, 68.4, _HOWARD),
    Variant("mobilenet_v1_050", {"width_mult": 0.5}, 224, 63.7, _HOWARD),
    Variant("mobilenet_v1_025", {"width_mult": 0.25}, 224, 50.6, _HOWARD),
)

_BUILDERS = register_variants(
    MobileNetV1,
    V1_VARIANTS,
    module=__name__,
    describe=lambda v: (
        f"MobileNetV1 at width_mult={v.kwargs['width_mult']}; see :class:`MobileNetV1`."
    ),
)
mobilenet_v1 = _BUILDERS["mobilenet_v1"]
mobilenet_v1_075 = _BUILDERS["mobilenet_v1_075"]
mobilenet_v1_050 = _BUILDERS["mobilenet_v1_050"]
mobilenet_v1_025 = _BUILDERS["mobilenet_v1_025"]
