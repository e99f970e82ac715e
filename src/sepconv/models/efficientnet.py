"""EfficientNet-B0 to B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019): the B0 table of MBConv stages, scaled by compound coefficients."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from torch import nn

from sepconv.layers import ConvNormAct, MBConv, make_divisible
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common, check_stem_stride, norm_with_eps
from sepconv.utils.validation import probability

__all__ = [
    "EfficientNet",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
]


@dataclass(frozen=True)
class MBStage:
    """One row of Tan & Le Table 1: a stage of MBConv blocks."""

    expand_ratio: float  # MBConv<t>
    kernel_size: int  # k
    channels: int  # output channels
    repeats: int  # layers
    stride: int  # stride of the first block


# Tan & Le 2019, Table 1 (EfficientNet-B0). Stem: 3x3 conv, 32 channels, stride 2; head: 1x1 conv
# to 1280. Squeeze-excite ratio 0.25 of each block's input channels, SiLU activations.
#         t  k    c  n  s
B0_STAGES = (
    MBStage(1, 3, 16, 1, 1),
    MBStage(6, 3, 24, 2, 2),
    MBStage(6, 5, 40, 2, 2),
    MBStage(6, 3, 80, 3, 2),
    MBStage(6, 5, 112, 3, 1),
    MBStage(6, 5, 192, 4, 2),
    MBStage(6, 3, 320, 1, 1),
)
B0_STEM, B0_HEAD = 32, 1280
# Stages whose outputs form the pyramid (reductions 2, 4, 8, 16, 32); levels 3-5 feed a BiFPN.
EFFNET_LEVELS = (0, 1, 2, 4, 6)


def scale_stages(stages: tuple[MBStage, ...], width: float, depth: float) -> tuple[MBStage, ...]:
    """Apply compound scaling: channels ``make_divisible(c * width)``, layers ``ceil(n * depth)``.

    Example:
        >>> scale_stages(B0_STAGES, 1.1, 1.2)[1]
        MBStage(expand_ratio=6, kernel_size=3, channels=24, repeats=3, stride=2)
    """
    return tuple(
        replace(
            row,
            channels=make_divisible(row.channels * width),
            repeats=math.ceil(row.repeats * depth),
        )
        for row in stages
    )


class EfficientNet(Backbone):
    """EfficientNet: stem -> 7 stages of :class:`MBConv` -> 1x1 conv -> pool -> linear.

    Args:
        width_mult: Width coefficient (channels, stem and head scale by it).
        depth_mult: Depth coefficient (each stage's layers scale by it, rounded up).
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: stride 1 in the stem and in stage 1 (overall reduction 8
            instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies (1 with
            it, 2 without); ``small_input=True, stem_stride=2`` gives overall reduction 16.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth of the last block; block ``i`` of ``N`` uses
            ``drop_path_rate * i / N`` (as torchvision does).
        features_only: Return the outputs of stages 0, 1, 2, 4, 6 (reductions 2-32; EfficientDet
            takes levels 3-5 and derives 6-7).
        bn_eps: BatchNorm epsilon (1e-5 as torchvision's B0-B4 and timm; 1e-3 for weights ported
            from TensorFlow, such as torchvision's B5-B7).

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = EfficientNet(width_mult=1.0, depth_mult=1.0, num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        width_mult: float,
        depth_mult: float,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        stem_stride: int | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        features_only: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        probability("drop_path_rate", drop_path_rate)
        norm = norm_with_eps(bn_eps)
        table = scale_stages(B0_STAGES, width_mult, depth_mult)
        channels = make_divisible(B0_STEM * width_mult)
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm, act=nn.SiLU)
        total_blocks = sum(row.repeats for row in table)
        block_index = 0
        stages, feature_info = [], []
        for index, row in enumerate(table):
            stride = 1 if small_input and index == 1 else row.stride
            reduction *= stride
            blocks = []
            for b in range(row.repeats):
                blocks.append(
                    MBConv(
                        channels,
                        row.channels,
                        stride=stride if b == 0 else 1,
                        expand_ratio=row.expand_ratio,
                        kernel_size=row.kernel_size,
                        drop_path=drop_path_rate * block_index / total_blocks,
                        norm=norm,
                    )
                )
                channels = row.channels
                block_index += 1
            stages.append(nn.Sequential(*blocks))
            if index in EFFNET_LEVELS:
                feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        head = make_divisible(B0_HEAD * width_mult)
        self.final = ConvNormAct(channels, head, 1, norm=norm, act=nn.SiLU)
        self._finish(
            feature_info=feature_info,
            num_features=head,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
        )
        init_weights(self, linear="fan_out_uniform")


_TAN = "Tan & Le 2019, Table 2"


def _compound(
    name: str, width: float, depth: float, px: int, dropout: float, top1: float
) -> Variant:
    """A row of Tan & Le 2019, Table 2: compound coefficients (Section 3.3) and the top-1."""
    fixed = {"width_mult": width, "depth_mult": depth}
    return Variant(name, fixed, px, top1, _TAN, defaults={"drop_rate": dropout})


#                      name        width depth  px  dropout top1
EFFNET_VARIANTS = (
    _compound("efficientnet_b0", 1.0, 1.0, 224, 0.2, 77.1),
    _compound("efficientnet_b1", 1.0, 1.1, 240, 0.2, 79.1),
    _compound("efficientnet_b2", 1.1, 1.2, 260, 0.3, 80.1),
    _compound("efficientnet_b3", 1.2, 1.4, 300, 0.3, 81.6),
    _compound("efficientnet_b4", 1.4, 1.8, 380, 0.4, 82.9),
    _compound("efficientnet_b5", 1.6, 2.2, 456, 0.4, 83.6),
    _compound("efficientnet_b6", 1.8, 2.6, 528, 0.5, 84.0),
    _compound("efficientnet_b7", 2.0, 3.1, 600, 0.5, 84.3),
)


def _describe(row: Variant) -> str:
    return (
        f"EfficientNet-{row.name[-2:].upper()}: width {row.kwargs['width_mult']}, depth "
        f"{row.kwargs['depth_mult']}, {row.input_size} px, dropout {row.defaults['drop_rate']}; "
        "see :class:`EfficientNet`."
    )


_BUILDERS = register_variants(EfficientNet, EFFNET_VARIANTS, module=__name__, describe=_describe)
efficientnet_b0 = _BUILDERS["efficientnet_b0"]
efficientnet_b1 = _BUILDERS["efficientnet_b1"]
efficientnet_b2 = _BUILDERS["efficientnet_b2"]
efficientnet_b3 = _BUILDERS["efficientnet_b3"]
efficientnet_b4 = _BUILDERS["efficientnet_b4"]
efficientnet_b5 = _BUILDERS["efficientnet_b5"]
efficientnet_b6 = _BUILDERS["efficientnet_b6"]
efficientnet_b7 = _BUILDERS["efficientnet_b7"]
