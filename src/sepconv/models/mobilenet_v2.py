"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018): a 3x3 stem, 17 inverted residual blocks and a 1x1 head conv."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sepconv.layers import ConvNormAct, InvertedResidual, make_divisible
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common, check_stem_stride, check_width, norm_with_eps

__all__ = [
    "MobileNetV2",
    "mobilenet_v2",
    "mobilenet_v2_050",
    "mobilenet_v2_075",
]


@dataclass(frozen=True)
class IRStage:
    """One row of Sandler et al. Table 2: a stage of inverted residual blocks."""

    expand_ratio: float  # t
    channels: int  # c, output channels at width 1.0
    repeats: int  # n
    stride: int  # s, stride of the first block


# Sandler et al. 2018, Table 2. Stem: 3x3 conv, 32 channels, stride 2; head: 1x1 conv to 1280.
#        t    c    n  s
V2_STAGES = (
    IRStage(1, 16, 1, 1),
    IRStage(6, 24, 2, 2),
    IRStage(6, 32, 3, 2),
    IRStage(6, 64, 4, 2),
    IRStage(6, 96, 3, 1),
    IRStage(6, 160, 3, 2),
    IRStage(6, 320, 1, 1),
)
V2_STEM, V2_HEAD = 32, 1280
# Stages whose outputs form the feature pyramid (reductions 2, 4, 8, 16, 32), as in timm.
V2_LEVELS = (0, 1, 2, 4, 6)


class MobileNetV2(Backbone):
    """MobileNetV2: stem -> 7 stages of :class:`InvertedResidual` -> 1x1 conv -> pool -> linear.

    Channels are ``width_mult`` times Table 2, rounded to multiples of 8; the head keeps 1280
    channels for ``width_mult <= 1`` (as in the paper and torchvision). ReLU6 throughout.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        width_mult: Width multiplier (> 0; the paper reports 0.35 to 1.4).
        small_input: For 28-64 px inputs: stride 1 in the stem and in stage 1 (overall reduction 8
            instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies (1 with
            it, 2 without); ``small_input=True, stem_stride=2`` gives overall reduction 16.
        drop_rate: Dropout before the classifier (torchvision uses 0.2).
        features_only: Return the outputs of stages 0, 1, 2, 4, 6 (reductions 2-32).
        bn_eps: BatchNorm epsilon.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = MobileNetV2(num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
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
        drop_rate: float = 0.2,
        features_only: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        width_mult = check_width(width_mult)
        norm = norm_with_eps(bn_eps)
        channels = make_divisible(V2_STEM * width_mult)
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm, act=nn.ReLU6)
        stages, feature_info = [], []
        for index, row in enumerate(V2_STAGES):
            out_channels = make_divisible(row.channels * width_mult)
            stride = 1 if small_input and index == 1 else row.stride
            reduction *= stride
            blocks = []
            for b in range(row.repeats):
                blocks.append(
                    InvertedResidual(
                        channels,
                        out_channels,
                        stride=stride if b == 0 else 1,
                        expand_ratio=row.expand_ratio,
                        norm=norm,
                    )
                )
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
            if index in V2_LEVELS:
                feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        head = make_divisible(V2_HEAD * max(1.0, width_mult))
        self.final = ConvNormAct(channels, head, 1, norm=norm, act=nn.ReLU6)
        self._finish(
            feature_info=feature_info,
            num_features=head,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
        )
        init_weights(self, linear="normal")


_SLIM = "TF-Slim MobileNetV2 checkpoints, research/slim/nets/mobilenet/README.md"
_SANDLER = "Sandler et al. 2018, Table 4"

_V2_DOC = "MobileNetV2 with width multiplier ``width_mult``; see :class:`MobileNetV2`."

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1
V2_VARIANTS = (
    Variant("mobilenet_v2", {}, 224, 72.0, _SANDLER, doc=_V2_DOC),
    Variant("mobilenet_v2_075", {"width_mult": 0.75}, 224, 69.8, _SLIM),
    Variant("mobilenet_v2_050", {"width_mult": 0.5}, 224, 65.4, _SLIM),
)

_BUILDERS = register_variants(
    MobileNetV2,
    V2_VARIANTS,
    module=__name__,
    describe=lambda v: (
        f"MobileNetV2 at width_mult={v.kwargs['width_mult']}; see :class:`MobileNetV2`."
    ),
)
mobilenet_v2 = _BUILDERS["mobilenet_v2"]
mobilenet_v2_075 = _BUILDERS["mobilenet_v2_075"]
mobilenet_v2_050 = _BUILDERS["mobilenet_v2_050"]
