"""sepconv: depthwise separable convolutions in PyTorch.

Blocks (:mod:`sepconv.layers`), the model family (:mod:`sepconv.models`), and the tools that act
on any model: cost analysis, benchmarking, conversion, deployment, data and training.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sepconv.analysis import ConvComparison, ConvCost, CostReport, LayerCost, analyze, compare_conv
from sepconv.bench import (
    LayerSpec,
    benchmark,
    compare_twin,
    measure_ceilings,
    measure_latency,
    per_layer_latency,
    standard_twin,
)
from sepconv.convert import decouple, separabilize
from sepconv.data import (
    BatchLoader,
    ImageDataset,
    RandomCropFlip,
    channel_stats,
    load_cifar,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
)
from sepconv.deploy import ExportError, OnnxExport, export_onnx, fuse
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
from sepconv.models import (
    create_model,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
    efficientnet_b5,
    efficientnet_b6,
    efficientnet_b7,
    list_models,
    load_model,
    load_weights,
    mobilenet_v1,
    mobilenet_v2,
    register_model,
    resnet50,
    save_model,
    vgg16,
    xception,
)
from sepconv.train import EvalResult, TrainConfig, Trainer, evaluate

__all__ = [
    "BatchLoader",
    "ConvComparison",
    "ConvCost",
    "ConvNormAct",
    "CostReport",
    "DepthwiseConv2d",
    "DepthwiseSeparableConv2d",
    "DropPath",
    "EvalResult",
    "ExportError",
    "ImageDataset",
    "InvertedResidual",
    "LayerCost",
    "LayerSpec",
    "MBConv",
    "OnnxExport",
    "PointwiseConv2d",
    "RandomCropFlip",
    "SqueezeExcite",
    "TrainConfig",
    "Trainer",
    "__version__",
    "analyze",
    "benchmark",
    "channel_stats",
    "compare_conv",
    "compare_twin",
    "create_model",
    "decouple",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "evaluate",
    "export_onnx",
    "fuse",
    "list_models",
    "load_cifar",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_model",
    "load_weights",
    "make_divisible",
    "measure_ceilings",
    "measure_latency",
    "mobilenet_v1",
    "mobilenet_v2",
    "per_layer_latency",
    "register_model",
    "resnet50",
    "save_model",
    "separabilize",
    "standard_twin",
    "vgg16",
    "xception",
]
