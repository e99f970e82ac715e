"""MobileNetV4 convolutional models (Qin et al., "MobileNetV4: Universal Models for the Mobile
Ecosystem", ECCV 2024): plain convs, Fused-IB and universal inverted bottlenecks (UIB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sepconv.layers import ConvNormAct, FusedMBConv, NormFactory, UniversalInvertedResidual
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

__all__ = ["MobileNetV4", "mobilenet_v4_conv_medium", "mobilenet_v4_conv_small"]

BlockKind = Literal["conv", "fused_ib", "uib"]


@dataclass(frozen=True)
class V4Block:
    """One row of an MNv4-Conv table: a plain conv, a Fused-IB or a UIB, repeated ``repeats``
    times; only the first row of a stage strides."""

    block: BlockKind  # conv: ConvNormAct; fused_ib: FusedMBConv; uib: UIB
    start_kernel: int  # UIB: depthwise kernel before the expansion, 0 for none
    kernel: int  # conv / Fused-IB kernel; UIB: depthwise kernel after the expansion, 0 for none
    expand_ratio: float  # Fused-IB / UIB expansion
    channels: int  # output channels
    stride: int  # stride of the first repeat
    repeats: int = 1


# The MNv4-Conv architectures of Qin et al. 2024 (Appendix), as the reference code and timm's
# `mobilenetv4_conv_small` / `_medium` define them; one tuple per stage. A UIB's two kernels
# name its variant: (k_s, k) = (0, K) inverted bottleneck, (K, 0) ConvNeXt-like, (K, K')
# ExtraDW, (0, 0) FFN. Stem: 3x3 conv, 32 channels, stride 2; then a 1x1 conv to 960 (final),
# the pool, and a 1x1 conv with BN to 1280 (pre_logits). ReLU throughout, no squeeze-excite.
#                   block      k_s k  t  c    s  n
V4_CONV_SMALL = (
    (V4Block("conv", 0, 3, 1, 32, 2), V4Block("conv", 0, 1, 1, 32, 1)),
    (V4Block("conv", 0, 3, 1, 96, 2), V4Block("conv", 0, 1, 1, 64, 1)),
    (
        V4Block("uib", 5, 5, 3, 96, 2),
        V4Block("uib", 0, 3, 2, 96, 1, 4),
        V4Block("uib", 3, 0, 4, 96, 1),
    ),
    (
        V4Block("uib", 3, 3, 6, 128, 2),
        V4Block("uib", 5, 5, 4, 128, 1),
        V4Block("uib", 0, 5, 4, 128, 1),
        V4Block("uib", 0, 5, 3, 128, 1),
        V4Block("uib", 0, 3, 4, 128, 1, 2),
    ),
)
V4_CONV_MEDIUM = (
    (V4Block("fused_ib", 0, 3, 4, 48, 2),),
    (V4Block("uib", 3, 5, 4, 80, 2), V4Block("uib", 3, 3, 2, 80, 1)),
    (
        V4Block("uib", 3, 5, 6, 160, 2),
        V4Block("uib", 3, 3, 4, 160, 1, 2),
        V4Block("uib", 3, 5, 4, 160, 1),
        V4Block("uib", 3, 3, 4, 160, 1),
        V4Block("uib", 3, 0, 4, 160, 1),
        V4Block("uib", 0, 0, 2, 160, 1),
        V4Block("uib", 3, 0, 4, 160, 1),
    ),
    (
        V4Block("uib", 5, 5, 6, 256, 2),
        V4Block("uib", 5, 5, 4, 256, 1),
        V4Block("uib", 3, 5, 4, 256, 1, 2),
        V4Block("uib", 0, 0, 4, 256, 1),
        V4Block("uib", 3, 0, 4, 256, 1),
        V4Block("uib", 3, 5, 2, 256, 1),
        V4Block("uib", 5, 5, 4, 256, 1),
        V4Block("uib", 0, 0, 4, 256, 1, 2),
        V4Block("uib", 5, 0, 2, 256, 1),
    ),
)
V4_ARCHS = {"conv_small": V4_CONV_SMALL, "conv_medium": V4_CONV_MEDIUM}
V4_STEM, V4_FINAL, V4_HEAD = 32, 960, 1280


def _block(
    row: V4Block,
    in_channels: int,
    stride: int,
    *,
    norm: NormFactory,
    drop_path: float,
) -> nn.Module:
    """The module of one repeat of ``row``."""
    if row.block == "conv":
        return ConvNormAct(in_channels, row.channels, row.kernel, stride=stride, norm=norm)
    if row.block == "fused_ib":
        return FusedMBConv(
            in_channels,
            row.channels,
            stride=stride,
            expand_ratio=row.expand_ratio,
            kernel_size=row.kernel,
            act=nn.ReLU,
            drop_path=drop_path,
            norm=norm,
        )
    return UniversalInvertedResidual(
        in_channels,
        row.channels,
        stride=stride,
        expand_ratio=row.expand_ratio,
        start_kernel_size=row.start_kernel,
        kernel_size=row.kernel,
        norm=norm,
        drop_path=drop_path,
    )


class MobileNetV4(Backbone):
    """MobileNetV4 (convolutional): stem -> stages of convs, Fused-IB
    (:class:`~sepconv.layers.FusedMBConv`) and UIB
    (:class:`~sepconv.layers.UniversalInvertedResidual`) -> 1x1 conv -> pool -> 1x1 conv ->
    linear.

    Layer for layer timm's ``mobilenetv4_conv_small`` / ``mobilenetv4_conv_medium``.

    Args:
        arch: ``"conv_small"`` or ``"conv_medium"``.
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: stride 1 in the stem and in the first stage (overall
            reduction 8 instead of 32); the parameter count does not change.
        stem_stride: Stride of the stem conv, overriding the one ``small_input`` implies.
        drop_rate: Dropout before the classifier (timm's default: none).
        drop_path_rate: Stochastic depth of the last block; block ``i`` of ``N`` uses
            ``drop_path_rate * i / N`` (as timm).
        features_only: Return the map of each resolution (reductions 2-32).
        bn_eps: BatchNorm epsilon (1e-5, as timm).

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = MobileNetV4(arch="conv_small", num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        arch: Literal["conv_small", "conv_medium"],
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        stem_stride: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        features_only: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        probability("drop_path_rate", drop_path_rate)
        table = V4_ARCHS[check_arch(arch, tuple(V4_ARCHS))]
        norm = norm_with_eps(bn_eps)
        channels = V4_STEM
        reduction = check_stem_stride(stem_stride, small_input)
        self.stem = ConvNormAct(in_chans, channels, 3, stride=reduction, norm=norm)
        table_strides = [stage[0].stride for stage in table]
        strides = small_input_strides(table_strides, small_input)
        levels = resolution_levels(table_strides)
        feature_info = [FeatureInfo("stem", channels, reduction)]
        total_blocks = sum(row.repeats for stage in table for row in stage)
        block_index = 0
        stages = []
        for index, rows in enumerate(table):
            reduction *= strides[index]
            blocks: list[nn.Module] = []
            for row in rows:
                for _ in range(row.repeats):
                    # only a stage's first block strides
                    stride = strides[index] if not blocks else 1
                    rate = drop_path_rate * block_index / total_blocks
                    blocks.append(_block(row, channels, stride, norm=norm, drop_path=rate))
                    channels = row.channels
                    block_index += 1
            stages.append(nn.Sequential(*blocks))
            if index in levels:
                feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        self.final = ConvNormAct(channels, V4_FINAL, 1, norm=norm)
        self._finish(
            feature_info=feature_info,
            num_features=V4_FINAL,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
            pre_logits=ConvNormAct(V4_FINAL, V4_HEAD, 1, norm=norm),
            pre_logits_features=V4_HEAD,
        )
        init_weights(self, linear="fan_out_uniform")


# The top-1 of timm's trained weights, whose layout the builder loads, at the variant's input
# size (timm's README, the table of its 2024-06-12 release notes).
_TIMM_S = "timm README 2024-06-12: mobilenetv4_conv_small.e2400_r224_in1k, 73.756 at 224 px"
_TIMM_M = "timm README 2024-06-12: mobilenetv4_conv_medium.e500_r256_in1k, 79.928 at 256 px"

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1
V4_VARIANTS = (
    Variant("mobilenet_v4_conv_small", {"arch": "conv_small"}, 224, 73.8, _TIMM_S),
    Variant("mobilenet_v4_conv_medium", {"arch": "conv_medium"}, 256, 79.9, _TIMM_M),
)

_BUILDERS = register_variants(
    MobileNetV4,
    V4_VARIANTS,
    module=__name__,
    describe=lambda v: (
        f"MobileNetV4-{v.kwargs['arch'].replace('_', '-').title()}; see :class:`MobileNetV4`."
    ),
)
mobilenet_v4_conv_small = _BUILDERS["mobilenet_v4_conv_small"]
mobilenet_v4_conv_medium = _BUILDERS["mobilenet_v4_conv_medium"]
