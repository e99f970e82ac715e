"""The design space of the MobileNet family: random networks built from sepconv's blocks.

A calibration draws its kernel configurations from networks of this space (so that it times
the channel counts, spatial sizes, strides and kernel sizes the family really uses, as
nn-Meter samples from its model zoo's distribution); ``benchmarks/predict_accuracy.py`` draws
its held-out models from it with other seeds. A network is a stem conv, stages of blocks and a
classifier:

- ``"separable"`` (MobileNetV1): depthwise separable blocks (:class:`DepthwiseSeparableConv2d`),
  ReLU6, no head conv.
- ``"inverted"`` (MobileNetV2, EfficientNet, MobileNetV3): inverted residual blocks
  (:class:`InvertedResidual`) with a per-stage expansion and kernel size, squeeze-excite in
  EfficientNet's or MobileNetV3's style or none, one activation (ReLU6, SiLU or hard-swish),
  and a 1x1 head conv.
- ``"fused"`` (EfficientNetV2): the first inverted stages as :class:`FusedMBConv` (a standard
  KxK conv in place of expansion and depthwise conv).
- ``"convnext"`` (ConvNeXt): a 4x4 stride-4 stem with LayerNorm, stages of
  :class:`ConvNeXtBlock` (7x7 depthwise, LayerNorm, GELU, LayerScale) joined by LayerNorm and a
  2x2 stride-2 conv.

:data:`MOBILENET_STYLES` are the family itself; a calibration draws from every style, so that
the blocks of the newer families are covered too.

Width (a multiplier of the reference channels, rounded to 8), depth (a multiplier of the
reference repeats, rounded up) and the input resolution are drawn for each network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import nn

from sepconv.layers import (
    SE_EFFICIENTNET,
    SE_MOBILENET_V3,
    ConvNeXtBlock,
    ConvNormAct,
    DepthwiseSeparableConv2d,
    FusedMBConv,
    InvertedResidual,
    LayerNorm2d,
    get_activation,
    make_divisible,
)
from sepconv.utils.validation import invalid

__all__ = [
    "ACTS",
    "MOBILENET_STYLES",
    "SE_KINDS",
    "STYLES",
    "BlockSpec",
    "NetworkSpec",
    "SEKind",
    "sample_network",
]

Style = Literal["separable", "inverted", "fused", "convnext"]
STYLES: tuple[Style, ...] = ("separable", "inverted", "fused", "convnext")
MOBILENET_STYLES: tuple[Style, ...] = ("separable", "inverted")
SEKind = Literal["", "efficientnet", "mobilenet_v3"]

# Reference stages (width 1.0, depth 1.0), as (channels, repeats, stride): MobileNetV1
# (Howard et al. 2017, Table 1) and MobileNetV2 / EfficientNet-B0 (Sandler et al. 2018,
# Table 2; Tan & Le 2019, Table 1), from which the drawn stages are scaled.
#                channels       repeats   stride
SEPARABLE_STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))
INVERTED_STAGES = (
    ((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)),
    ((16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 3, 2), (112, 3, 1), (192, 4, 2), (320, 1, 1)),
)
CONVNEXT_STAGES = ((96, 3, 1), (192, 3, 2), (384, 9, 2), (768, 3, 2))  # Liu et al. 2022
STEM, HEAD = 32, 1280
# What a drawn network may have.
RESOLUTIONS = tuple(range(96, 289, 16))
WIDTHS = (0.35, 1.4)
DEPTHS = (0.5, 1.5)
EXPANSIONS = (3, 4, 6)
KERNEL_SIZES = (3, 5, 7)
ACTS = ("relu6", "silu", "hardswish")
SE_KINDS: tuple[SEKind, ...] = ("", "efficientnet", "mobilenet_v3")


@dataclass(frozen=True)
class BlockSpec:
    """One block: output channels, stride of its depthwise conv, expansion (inverted blocks),
    depthwise kernel size, whether it has a squeeze-excite, and whether it is a
    :class:`FusedMBConv` (a standard conv of ``kernel_size`` in place of expansion and
    depthwise conv)."""

    out_channels: int
    stride: int
    expand_ratio: float
    kernel_size: int
    se: bool
    fused: bool = False


@dataclass(frozen=True)
class NetworkSpec:
    """One network of the design space; :meth:`build` makes it.

    Attributes:
        style: ``"separable"`` or ``"inverted"`` (see the module doc).
        resolution: Input side in pixels.
        stem: Channels of the 3x3 stride-2 stem conv.
        blocks: The blocks in order.
        head: Channels of the 1x1 head conv (0: none).
        act: The activation of every conv.
        se_kind: The squeeze-excite style of blocks with ``se`` (ratio 0.25).
    """

    style: Style
    resolution: int
    stem: int
    blocks: tuple[BlockSpec, ...]
    head: int
    act: str
    se_kind: SEKind = ""

    def build(self, num_classes: int = 1000) -> nn.Module:
        """The network, in eval mode, randomly initialised."""
        if self.style == "convnext":
            return self._build_convnext(num_classes)
        act = get_activation(self.act)
        layers: list[nn.Module] = [ConvNormAct(3, self.stem, 3, stride=2, act=act)]
        channels = self.stem
        style = SE_MOBILENET_V3 if self.se_kind == "mobilenet_v3" else SE_EFFICIENTNET
        for block in self.blocks:
            se = 0.25 if block.se else None
            if block.fused:
                layers.append(
                    FusedMBConv(
                        channels,
                        block.out_channels,
                        stride=block.stride,
                        expand_ratio=block.expand_ratio,
                        kernel_size=block.kernel_size,
                        act=act,
                    )
                )
            elif self.style == "separable":
                layers.append(
                    DepthwiseSeparableConv2d(
                        channels,
                        block.out_channels,
                        block.kernel_size,
                        stride=block.stride,
                        act=act,
                        se_ratio=se,
                    )
                )
            else:
                layers.append(
                    InvertedResidual(
                        channels,
                        block.out_channels,
                        stride=block.stride,
                        expand_ratio=block.expand_ratio,
                        kernel_size=block.kernel_size,
                        act=act,
                        se_ratio=se,
                        se_style=style,
                    )
                )
            channels = block.out_channels
        if self.head:
            layers.append(ConvNormAct(channels, self.head, 1, act=act))
            channels = self.head
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        return nn.Sequential(*layers).eval()

    def _build_convnext(self, num_classes: int) -> nn.Module:
        layers: list[nn.Module] = [
            ConvNormAct(3, self.stem, 4, stride=4, padding=0, norm=LayerNorm2d, act=None)
        ]
        channels = self.stem
        for block in self.blocks:
            if block.out_channels != channels:  # a new stage: LayerNorm, 2x2 stride-2 conv
                layers.append(LayerNorm2d(channels))
                layers.append(nn.Conv2d(channels, block.out_channels, 2, stride=2))
                channels = block.out_channels
            layers.append(ConvNeXtBlock(channels, block.kernel_size, block.expand_ratio))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        return nn.Sequential(*layers).eval()

    def describe(self) -> str:
        """One line: style, resolution, blocks, widths, kernel sizes, activation, SE."""
        kernels = sorted({b.kernel_size for b in self.blocks if not b.fused})
        se = sum(b.se for b in self.blocks)
        return (
            f"{self.style} {self.resolution}px, {len(self.blocks)} blocks, stem {self.stem}, "
            f"last {self.blocks[-1].out_channels}, head {self.head}, k {kernels}, {self.act}"
            + (f", SE ({self.se_kind}) in {se}" if se else "")
        )


def sample_network(
    rng: np.random.Generator,
    styles: tuple[Style, ...] = MOBILENET_STYLES,
    *,
    act: str | None = None,
    se_kind: SEKind | None = None,
) -> NetworkSpec:
    """Draw one network of the design space.

    Args:
        rng: The random generator (a seeded one gives the same network again).
        styles: The styles to draw from (:data:`STYLES`); ``"inverted"`` is drawn three times
            as often as any other.
        act: The activation of an inverted or fused network (one of :data:`ACTS`), instead
            of a drawn one; the generator draws as many numbers either way.
        se_kind: Its squeeze-excite style (one of :data:`SE_KINDS`), likewise.

    Example:
        >>> spec = sample_network(np.random.default_rng(0))
        >>> spec.build()(torch.randn(1, 3, spec.resolution, spec.resolution)).shape
        torch.Size([1, 1000])
    """
    if act is not None and act not in ACTS:
        raise invalid("act", f"one of {ACTS}", act)
    if se_kind is not None and se_kind not in SE_KINDS:
        raise invalid("se_kind", f"one of {SE_KINDS}", se_kind)
    weights = np.array([3.0 if s == "inverted" else 1.0 for s in styles])
    style = styles[int(rng.choice(len(styles), p=weights / weights.sum()))]
    width = float(np.exp(rng.uniform(*np.log(WIDTHS))))
    depth = float(rng.uniform(*DEPTHS))
    resolution = int(rng.choice(RESOLUTIONS))
    stem = make_divisible(STEM * width)
    blocks: list[BlockSpec] = []
    if style == "separable":
        kernel = int(rng.choice((3, 3, 5)))
        for channels, repeats, stride in SEPARABLE_STAGES:
            out = make_divisible(channels * width)
            for i in range(math.ceil(repeats * depth)):
                blocks.append(BlockSpec(out, stride if i == 0 else 1, 1, kernel, False))
        return NetworkSpec(style, resolution, stem, tuple(blocks), 0, "relu6")
    if style == "convnext":
        return _sample_convnext(rng, width, depth, resolution)
    table = INVERTED_STAGES[int(rng.integers(len(INVERTED_STAGES)))]
    fused_stages = int(rng.integers(2, 4)) if style == "fused" else 0
    drawn_act, drawn_se = str(rng.choice(ACTS)), SE_KINDS[int(rng.integers(len(SE_KINDS)))]
    act = drawn_act if act is None else act
    se_kind = drawn_se if se_kind is None else se_kind
    for index, (channels, repeats, stride) in enumerate(table):
        out = make_divisible(channels * width)
        expand = 1 if index == 0 else int(rng.choice(EXPANSIONS))
        kernel = int(rng.choice(KERNEL_SIZES))
        se = bool(se_kind) and rng.random() < 0.8
        fused = index < fused_stages  # FusedMBConv: a standard 3x3 conv, no SE
        if fused:
            kernel, se, expand = 3, False, 1 if index == 0 else int(rng.choice((2, 4)))
        for i in range(max(1, math.ceil(repeats * depth))):
            blocks.append(BlockSpec(out, stride if i == 0 else 1, expand, kernel, se, fused))
    head = make_divisible(HEAD * max(1.0, width))
    return NetworkSpec(style, resolution, stem, tuple(blocks), head, act, se_kind)


def _sample_convnext(
    rng: np.random.Generator, width: float, depth: float, resolution: int
) -> NetworkSpec:
    blocks = []
    for channels, repeats, _stride in CONVNEXT_STAGES:
        out = make_divisible(channels * width / 2)  # the range of ConvNeXt's smaller variants
        kernel = int(rng.choice((5, 7, 7)))
        for _ in range(max(1, math.ceil(repeats * depth / 2))):
            blocks.append(BlockSpec(out, 1, 4.0, kernel, False))
    stem = blocks[0].out_channels
    return NetworkSpec("convnext", resolution, stem, tuple(blocks), 0, "gelu")
