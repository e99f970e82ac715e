"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019): inverted residuals with
squeeze-excite and hard-swish, a 1x1 conv after the pool, Large and Small."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sepconv.layers import (
    SE_MOBILENET_V3,
    ActName,
    ConvNormAct,
    InvertedResidual,
    get_activation,
    make_divisible,
)
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo, resolution_levels
from sepconv.models.init import init_weights
from sepconv.models.options import (
    check_arch,
    check_common,
    check_stem_stride,
    check_width,
    norm_with_eps,
    small_input_strides,
)

__all__ = [
    "MobileNetV3",
    "mobilenet_v3_large",
    "mobilenet_v3_large_075",
    "mobilenet_v3_small",
    "mobilenet_v3_small_075",
]


@dataclass(frozen=True)
class Bneck:
    """One ``bneck`` row of Howard et al. 2019, Tables 1 and 2: an inverted residual block."""

    kernel_size: int  # depthwise kernel
    expanded: int  # exp size: channels after the 1x1 expansion, at width 1.0
    channels: int  # #out, at width 1.0
    se: bool  # SE
    act: ActName  # NL: "relu" (RE) or "hardswish" (HS)
    stride: int  # s


# One tuple per stage: the blocks between two resolution changes (and the 80 -> 112 channel step
# of Large), grouped as timm groups them. Stem: 3x3 conv, 16 channels, hard-swish, stride 2;
# then a 1x1 conv (final), the pool, and a 1x1 conv without norm (pre_logits) to the head width.
# Squeeze-excite: 1/4 of the expanded channels rounded to 8, ReLU inside, hard-sigmoid gate.
#              k  exp  out  SE     NL           s
V3_LARGE = (  # Howard et al. 2019, Table 1
    (Bneck(3, 16, 16, False, "relu", 1),),
    (Bneck(3, 64, 24, False, "relu", 2), Bneck(3, 72, 24, False, "relu", 1)),
    (
        Bneck(5, 72, 40, True, "relu", 2),
        Bneck(5, 120, 40, True, "relu", 1),
        Bneck(5, 120, 40, True, "relu", 1),
    ),
    (
        Bneck(3, 240, 80, False, "hardswish", 2),
        Bneck(3, 200, 80, False, "hardswish", 1),
        Bneck(3, 184, 80, False, "hardswish", 1),
        Bneck(3, 184, 80, False, "hardswish", 1),
    ),
    (Bneck(3, 480, 112, True, "hardswish", 1), Bneck(3, 672, 112, True, "hardswish", 1)),
    (
        Bneck(5, 672, 160, True, "hardswish", 2),
        Bneck(5, 960, 160, True, "hardswish", 1),
        Bneck(5, 960, 160, True, "hardswish", 1),
    ),
)
V3_SMALL = (  # Howard et al. 2019, Table 2
    (Bneck(3, 16, 16, True, "relu", 2),),
    (Bneck(3, 72, 24, False, "relu", 2), Bneck(3, 88, 24, False, "relu", 1)),
    (
        Bneck(5, 96, 40, True, "hardswish", 2),
        Bneck(5, 240, 40, True, "hardswish", 1),
        Bneck(5, 240, 40, True, "hardswish", 1),
    ),
    (Bneck(5, 120, 48, True, "hardswish", 1), Bneck(5, 144, 48, True, "hardswish", 1)),
    (
        Bneck(5, 288, 96, True, "hardswish", 2),
        Bneck(5, 576, 96, True, "hardswish", 1),
        Bneck(5, 576, 96, True, "hardswish", 1),
    ),
)


@dataclass(frozen=True)
class V3Arch:
    """The stages and the three convs around them of one MobileNetV3 size."""

    stages: tuple[tuple[Bneck, ...], ...]
    final: int  # 1x1 conv after the last stage (with BN, hard-swish)
    head: int  # 1x1 conv after the pool (no BN, hard-swish)


V3_ARCHS = {"large": V3Arch(V3_LARGE, 960, 1280), "small": V3Arch(V3_SMALL, 576, 1024)}
V3_STEM = 16


class MobileNetV3(Backbone):
    """MobileNetV3: stem -> stages of :class:`InvertedResidual` -> 1x1 conv -> pool -> 1x1 conv
    -> linear.

    Each block expands to the table's "exp size" scaled by the width, keeps its activation (ReLU
    or hard-swish) and, where the table says so, has MobileNetV3's squeeze-excite
    (:data:`~sepconv.layers.SE_MOBILENET_V3`). Channels are ``width_mult`` times the table's,
    rounded to multiples of 8; each block expands by the table's ratio (``exp / in`` at width
    1.0) of its scaled input, rounded to 8, as the TensorFlow reference does, and the head width
    (1280 Large, 1024 Small) is kept below width 1.0. Below width 0.75 the stem keeps 16
    channels (as timm). At width 1.0 the model is torchvision's ``mobilenet_v3_large`` /
    ``_small`` and timm's ``mobilenetv3_large_100`` / ``_small_100`` layer for layer; at 0.75,
    timm's ``mobilenetv3_large_075`` / ``_small_075`` (torchvision scales the head too).

    Args:
        arch: ``"large"`` or ``"small"``.
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        width_mult: Width multiplier (> 0; the paper reports 0.75 and 1.0).
        small_input: For 28-64 px inputs: stride 1 in the stem and in the first stage that
            strides (overall reduction 8 instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies.
        drop_rate: Dropout before the classifier (0.2 as torchvision).
        features_only: Return the map of each resolution (reductions 2-32).
        bn_eps: BatchNorm epsilon: 1e-3 (the TensorFlow reference and torchvision); build with
            1e-5 to load timm's weights.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = MobileNetV3(arch="small", num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        arch: Literal["large", "small"],
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        small_input: bool = False,
        stem_stride: int | None = None,
        drop_rate: float = 0.2,
        features_only: bool = False,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        spec = V3_ARCHS[check_arch(arch, tuple(V3_ARCHS))]
        width_mult = check_width(width_mult)
        norm = norm_with_eps(bn_eps)
        hardswish = get_activation("hardswish")
        channels = V3_STEM if width_mult < 0.75 else make_divisible(V3_STEM * width_mult)
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm, act=hardswish)
        table_strides = [stage[0].stride for stage in spec.stages]
        strides = small_input_strides(table_strides, small_input)
        levels = resolution_levels(table_strides)
        feature_info = [FeatureInfo("stem", channels, reduction)] if table_strides[0] > 1 else []
        table_in, stages = V3_STEM, []  # table_in: the block's input at width 1.0
        for index, rows in enumerate(spec.stages):
            reduction *= strides[index]
            blocks = []
            for b, row in enumerate(rows):
                out_channels = make_divisible(row.channels * width_mult)
                blocks.append(
                    InvertedResidual(
                        channels,
                        out_channels,
                        stride=strides[index] if b == 0 else 1,
                        expand_ratio=row.expanded / table_in,
                        kernel_size=row.kernel_size,
                        act=get_activation(row.act),
                        se_ratio=0.25 if row.se else None,
                        norm=norm,
                        se_style=SE_MOBILENET_V3,
                        expand_divisor=8,
                    )
                )
                channels, table_in = out_channels, row.channels
            stages.append(nn.Sequential(*blocks))
            if index in levels:
                feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        final = make_divisible(spec.final * width_mult)
        self.final = ConvNormAct(channels, final, 1, norm=norm, act=hardswish)
        head = make_divisible(spec.head * max(1.0, width_mult))
        self._finish(
            feature_info=feature_info,
            num_features=final,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
            pre_logits=ConvNormAct(final, head, 1, norm=None, act=hardswish),
            pre_logits_features=head,
        )
        init_weights(self, linear="normal")


_HOWARD = "Howard et al. 2019, Table 3"

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1
V3_VARIANTS = (
    Variant("mobilenet_v3_large", {"arch": "large"}, 224, 75.2, _HOWARD),
    Variant("mobilenet_v3_large_075", {"arch": "large", "width_mult": 0.75}, 224, 73.3, _HOWARD),
    Variant("mobilenet_v3_small", {"arch": "small"}, 224, 67.4, _HOWARD),
    Variant("mobilenet_v3_small_075", {"arch": "small", "width_mult": 0.75}, 224, 65.4, _HOWARD),
)


def _describe(row: Variant) -> str:
    width = row.kwargs.get("width_mult")
    at = f" at width_mult={width}" if width is not None else " (``width_mult`` scales it)"
    return f"MobileNetV3-{row.kwargs['arch'].capitalize()}{at}; see :class:`MobileNetV3`."


_BUILDERS = register_variants(MobileNetV3, V3_VARIANTS, module=__name__, describe=_describe)
mobilenet_v3_large = _BUILDERS["mobilenet_v3_large"]
mobilenet_v3_large_075 = _BUILDERS["mobilenet_v3_large_075"]
mobilenet_v3_small = _BUILDERS["mobilenet_v3_small"]
mobilenet_v3_small_075 = _BUILDERS["mobilenet_v3_small_075"]
