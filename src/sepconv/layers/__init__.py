"""The building blocks of depthwise separable networks, all built on :class:`ConvNormAct`."""

from sepconv.layers.conv import (
    ActFactory,
    ConvNormAct,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    NormFactory,
    PointwiseConv2d,
)
from sepconv.layers.drop_path import DropPath
from sepconv.layers.inverted_residual import InvertedResidual, MBConv
from sepconv.layers.rounding import make_divisible
from sepconv.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ActFactory",
    "ConvNormAct",
    "DepthwiseConv2d",
    "DepthwiseSeparableConv2d",
    "DropPath",
    "InvertedResidual",
    "MBConv",
    "NormFactory",
    "PointwiseConv2d",
    "SqueezeExcite",
    "make_divisible",
]
