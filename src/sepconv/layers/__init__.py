"""The building blocks of depthwise separable networks, all built on :class:`ConvNormAct`."""

from sepconv.layers.activations import ACTIVATIONS, ActName, get_activation
from sepconv.layers.conv import (
    ActFactory,
    ConvNormAct,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    NormFactory,
    PointwiseConv2d,
)
from sepconv.layers.convnext_block import ConvNeXtBlock
from sepconv.layers.drop_path import DropPath
from sepconv.layers.fused_mbconv import FusedMBConv
from sepconv.layers.inverted_residual import InvertedResidual, MBConv
from sepconv.layers.layer_scale import LayerScale
from sepconv.layers.norm import LayerNorm2d
from sepconv.layers.rounding import expanded_channels, make_divisible
from sepconv.layers.squeeze_excite import (
    SE_EFFICIENTNET,
    SE_MOBILENET_V3,
    SEStyle,
    SqueezeExcite,
)
from sepconv.layers.universal_inverted_residual import UniversalInvertedResidual

__all__ = [
    "ACTIVATIONS",
    "SE_EFFICIENTNET",
    "SE_MOBILENET_V3",
    "ActFactory",
    "ActName",
    "ConvNeXtBlock",
    "ConvNormAct",
    "DepthwiseConv2d",
    "DepthwiseSeparableConv2d",
    "DropPath",
    "FusedMBConv",
    "InvertedResidual",
    "LayerNorm2d",
    "LayerScale",
    "MBConv",
    "NormFactory",
    "PointwiseConv2d",
    "SEStyle",
    "SqueezeExcite",
    "UniversalInvertedResidual",
    "expanded_channels",
    "get_activation",
    "make_divisible",
]
