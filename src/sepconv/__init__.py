"""sepconv: depthwise separable convolutions in PyTorch.

Blocks (:mod:`sepconv.layers`), the model family (:mod:`sepconv.models`), and the tools that act
on any model: cost analysis, benchmarking, conversion, deployment, data and training.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sepconv.layers import (
    ConvNormAct,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    DropPath,
    InvertedResidual,
    MBConv,
    PointwiseConv2d,
    SqueezeExcite,
    make_divisible,
)

__all__ = [
    "ConvNormAct",
    "DepthwiseConv2d",
    "DepthwiseSeparableConv2d",
    "DropPath",
    "InvertedResidual",
    "MBConv",
    "PointwiseConv2d",
    "SqueezeExcite",
    "__version__",
    "make_divisible",
]
