"""sepconv: depthwise separable convolutions in PyTorch.

Blocks (:mod:`sepconv.layers`), the model family (:mod:`sepconv.models`), and the tools that act
on any model: cost analysis (:mod:`sepconv.analysis`), benchmarking (:mod:`sepconv.bench`),
conversion (:mod:`sepconv.convert`), deployment (:mod:`sepconv.deploy`), data
(:mod:`sepconv.data`) and training (:mod:`sepconv.train`).

Every public name below is importable from here; each is loaded from its module on first use, so
``import sepconv`` (and the command line, which never imports this facade) pays only for what it
touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sepconv.utils.version import __version__

# Public name -> the module that defines it (one owner per name).
_EXPORTS: dict[str, str] = {
    "ConvComparison": "sepconv.analysis",
    "ConvCost": "sepconv.analysis",
    "CostReport": "sepconv.analysis",
    "LayerCost": "sepconv.analysis",
    "analyze": "sepconv.analysis",
    "compare_conv": "sepconv.analysis",
    "LayerSpec": "sepconv.bench",
    "benchmark": "sepconv.bench",
    "compare_twin": "sepconv.bench",
    "measure_ceilings": "sepconv.bench",
    "measure_latency": "sepconv.bench",
    "per_layer_latency": "sepconv.bench",
    "decouple": "sepconv.convert",
    "separabilize": "sepconv.convert",
    "standard_twin": "sepconv.convert",
    "BatchLoader": "sepconv.data",
    "ImageDataset": "sepconv.data",
    "RandomCropFlip": "sepconv.data",
    "channel_stats": "sepconv.data",
    "load_cifar": "sepconv.data",
    "load_dataset": "sepconv.data",
    "load_fashion_mnist": "sepconv.data",
    "load_image_folder": "sepconv.data",
    "ExportError": "sepconv.deploy",
    "OnnxExport": "sepconv.deploy",
    "export_onnx": "sepconv.deploy",
    "fuse": "sepconv.deploy",
    "ConvNormAct": "sepconv.layers",
    "DepthwiseConv2d": "sepconv.layers",
    "DepthwiseSeparableConv2d": "sepconv.layers",
    "DropPath": "sepconv.layers",
    "InvertedResidual": "sepconv.layers",
    "MBConv": "sepconv.layers",
    "PointwiseConv2d": "sepconv.layers",
    "SqueezeExcite": "sepconv.layers",
    "make_divisible": "sepconv.layers",
    "create_model": "sepconv.models",
    "efficientnet_b0": "sepconv.models",
    "efficientnet_b1": "sepconv.models",
    "efficientnet_b2": "sepconv.models",
    "efficientnet_b3": "sepconv.models",
    "efficientnet_b4": "sepconv.models",
    "efficientnet_b5": "sepconv.models",
    "efficientnet_b6": "sepconv.models",
    "efficientnet_b7": "sepconv.models",
    "list_models": "sepconv.models",
    "load_model": "sepconv.models",
    "load_weights": "sepconv.models",
    "mobilenet_v1": "sepconv.models",
    "mobilenet_v2": "sepconv.models",
    "register_model": "sepconv.models",
    "resnet50": "sepconv.models",
    "save_model": "sepconv.models",
    "vgg16": "sepconv.models",
    "xception": "sepconv.models",
    "EvalResult": "sepconv.train",
    "TrainConfig": "sepconv.train",
    "Trainer": "sepconv.train",
    "evaluate": "sepconv.train",
}

if TYPE_CHECKING:
    from sepconv.analysis import (
        ConvComparison,
        ConvCost,
        CostReport,
        LayerCost,
        analyze,
        compare_conv,
    )
    from sepconv.bench import (
        LayerSpec,
        benchmark,
        compare_twin,
        measure_ceilings,
        measure_latency,
        per_layer_latency,
    )
    from sepconv.convert import decouple, separabilize, standard_twin
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
