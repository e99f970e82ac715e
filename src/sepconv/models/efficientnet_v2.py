"""EfficientNetV2 (Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021):
Fused-MBConv in the early stages, MBConv with squeeze-excite after them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sepconv.layers import ConvNormAct, FusedMBConv, MBConv, NormFactory
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo, resolution_levels
from sepconv.models.init import init_weights
from sepconv.models.options import (
    check_arch,
    check_common,
    check_stem_stride,
    norm_with_eps,
    small_input_strides,
)
from sepconv.utils.validation import probability

__all__ = ["EfficientNetV2", "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s"]


@dataclass(frozen=True)
class V2Stage:
    """One row of Tan & Le 2021, Table 4: a stage of Fused-MBConv or MBConv blocks."""

    block: Literal["fused", "mbconv"]  # Operator: Fused-MBConv<t> or MBConv<t>, k3x3
    expand_ratio: float  # t
    stride: int  # Stride (of the stage's first block)
    channels: int  # #Channels
    repeats: int  # #Layers


# Tan & Le 2021, Table 4 (V2-S); V2-M and V2-L as the authors' code defines them (torchvision's
# tables). Every kernel is 3x3; MBConv stages have squeeze-excite with 1/4 of each block's input
# channels, Fused-MBConv stages none. Stem: 3x3 conv, stride 2, to the first stage's width;
# head: 1x1 conv to 1280. SiLU throughout.
#                 block     t  s  c    n
V2_S = (
    V2Stage("fused", 1, 1, 24, 2),
    V2Stage("fused", 4, 2, 48, 4),
    V2Stage("fused", 4, 2, 64, 4),
    V2Stage("mbconv", 4, 2, 128, 6),
    V2Stage("mbconv", 6, 1, 160, 9),
    V2Stage("mbconv", 6, 2, 256, 15),
)
V2_M = (
    V2Stage("fused", 1, 1, 24, 3),
    V2Stage("fused", 4, 2, 48, 5),
    V2Stage("fused", 4, 2, 80, 5),
    V2Stage("mbconv", 4, 2, 160, 7),
    V2Stage("mbconv", 6, 1, 176, 14),
    V2Stage("mbconv", 6, 2, 304, 18),
    V2Stage("mbconv", 6, 1, 512, 5),
)
V2_L = (
    V2Stage("fused", 1, 1, 32, 4),
    V2Stage("fused", 4, 2, 64, 7),
    V2Stage("fused", 4, 2, 96, 7),
    V2Stage("mbconv", 4, 2, 192, 10),
    V2Stage("mbconv", 6, 1, 224, 19),
    V2Stage("mbconv", 6, 2, 384, 25),
    V2Stage("mbconv", 6, 1, 640, 7),
)
V2_ARCHS = {"s": V2_S, "m": V2_M, "l": V2_L}
V2_HEAD = 1280


def _block(
    row: V2Stage, in_channels: int, stride: int, *, drop_path: float, norm: NormFactory
) -> nn.Module:
    """One block of a ``row`` stage."""
    if row.block == "fused":
        return FusedMBConv(
            in_channels,
            row.channels,
            stride=stride,
            expand_ratio=row.expand_ratio,
            drop_path=drop_path,
            norm=norm,
        )
    return MBConv(
        in_channels,
        row.channels,
        stride=stride,
        expand_ratio=row.expand_ratio,
        drop_path=drop_path,
        norm=norm,
    )


class EfficientNetV2(Backbone):
    """EfficientNetV2: stem -> Fused-MBConv stages -> MBConv stages -> 1x1 conv -> pool -> linear.

    Layer for layer torchvision's ``efficientnet_v2_s`` / ``_m`` / ``_l``. (timm's
    ``tf_efficientnetv2_*`` has the same layers and parameter shapes but pads its strided convs
    as TensorFlow does, asymmetrically: its weights give other outputs here. timm's
    ``efficientnetv2_rw_*`` are other architectures.)

    Args:
        arch: ``"s"``, ``"m"`` or ``"l"``.
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: stride 1 in the stem and in stage 1 (overall reduction 8
            instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth of the last block; block ``i`` of ``N`` uses
            ``drop_path_rate * i / N`` (as torchvision).
        features_only: Return the map of each resolution (reductions 2-32).
        bn_eps: BatchNorm epsilon (1e-3, as torchvision and the TensorFlow reference).

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = EfficientNetV2(arch="s", num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        arch: Literal["s", "m", "l"],
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        stem_stride: int | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        features_only: bool = False,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        probability("drop_path_rate", drop_path_rate)
        table = V2_ARCHS[check_arch(arch, tuple(V2_ARCHS))]
        norm = norm_with_eps(bn_eps)
        channels = table[0].channels
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm, act=nn.SiLU)
        table_strides = [row.stride for row in table]
        strides = small_input_strides(table_strides, small_input)
        levels = resolution_levels(table_strides)
        total_blocks = sum(row.repeats for row in table)
        block_index = 0
        stages, feature_info = [], []
        for index, row in enumerate(table):
            reduction *= strides[index]
            blocks = []
            for b in range(row.repeats):
                rate = drop_path_rate * block_index / total_blocks
                stride = strides[index] if b == 0 else 1
                blocks.append(_block(row, channels, stride, drop_path=rate, norm=norm))
                channels = row.channels
                block_index += 1
            stages.append(nn.Sequential(*blocks))
            if index in levels:
                feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        self.final = ConvNormAct(channels, V2_HEAD, 1, norm=norm, act=nn.SiLU)
        self._finish(
            feature_info=feature_info,
            num_features=V2_HEAD,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
        )
        init_weights(self, linear="fan_out_uniform")


_TAN = "Tan & Le 2021, Table 7"

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1;
#       dropout as torchvision
V2_VARIANTS = (
    Variant("efficientnet_v2_s", {"arch": "s"}, 384, 83.9, _TAN, defaults={"drop_rate": 0.2}),
    Variant("efficientnet_v2_m", {"arch": "m"}, 480, 85.1, _TAN, defaults={"drop_rate": 0.3}),
    Variant("efficientnet_v2_l", {"arch": "l"}, 480, 85.7, _TAN, defaults={"drop_rate": 0.4}),
)

_BUILDERS = register_variants(
    EfficientNetV2,
    V2_VARIANTS,
    module=__name__,
    describe=lambda v: (
        f"EfficientNetV2-{v.kwargs['arch'].upper()}, {v.input_size} px, dropout "
        f"{v.defaults['drop_rate']}; see :class:`EfficientNetV2`."
    ),
)
efficientnet_v2_s = _BUILDERS["efficientnet_v2_s"]
efficientnet_v2_m = _BUILDERS["efficientnet_v2_m"]
efficientnet_v2_l = _BUILDERS["efficientnet_v2_l"]
