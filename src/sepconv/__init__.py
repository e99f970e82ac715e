"""sepconv: depthwise separable convolutions in PyTorch.

Blocks (:mod:`sepconv.layers`), the model family (:mod:`sepconv.models`), model files and
weights (:mod:`sepconv.modelfile`), and the tools that act on any model: cost analysis
(:mod:`sepconv.analysis`), benchmarking (:mod:`sepconv.bench`), conversion
(:mod:`sepconv.convert`), deployment (:mod:`sepconv.deploy`), data (:mod:`sepconv.data`) and
training (:mod:`sepconv.train`).

Every public name is importable from here; each is loaded from its module on first use, so
``import sepconv`` (and the command line, which never imports this facade) pays only for what it
touches.

The public names are written once, as the imports of the ``TYPE_CHECKING`` block below: type
checkers and IDEs read them there (``name as name`` marks a re-export), and ``__all__``, the
lazy ``__getattr__`` and ``__dir__`` are derived from the same lines, read from this file's
source (the scheme of Scientific Python's SPEC 1, ``lazy_loader.attach_stub``). A new public
name is one import line.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepconv.utils.version import __version__ as __version__

if TYPE_CHECKING:
    from sepconv.analysis import ConvComparison as ConvComparison
    from sepconv.analysis import ConvCost as ConvCost
    from sepconv.analysis import CostReport as CostReport
    from sepconv.analysis import LayerCost as LayerCost
    from sepconv.analysis import analyze as analyze
    from sepconv.analysis import compare_conv as compare_conv
    from sepconv.bench import LayerSpec as LayerSpec
    from sepconv.bench import benchmark as benchmark
    from sepconv.bench import compare_twin as compare_twin
    from sepconv.bench import measure_ceilings as measure_ceilings
    from sepconv.bench import measure_latency as measure_latency
    from sepconv.bench import per_layer_latency as per_layer_latency
    from sepconv.convert import decouple as decouple
    from sepconv.convert import separabilize as separabilize
    from sepconv.convert import standard_twin as standard_twin
    from sepconv.data import BatchLoader as BatchLoader
    from sepconv.data import ImageDataset as ImageDataset
    from sepconv.data import RandomCropFlip as RandomCropFlip
    from sepconv.data import channel_stats as channel_stats
    from sepconv.data import load_cifar as load_cifar
    from sepconv.data import load_dataset as load_dataset
    from sepconv.data import load_fashion_mnist as load_fashion_mnist
    from sepconv.data import load_image_folder as load_image_folder
    from sepconv.deploy import ExportError as ExportError
    from sepconv.deploy import OnnxExport as OnnxExport
    from sepconv.deploy import export_onnx as export_onnx
    from sepconv.deploy import fuse as fuse
    from sepconv.layers import ConvNeXtBlock as ConvNeXtBlock
    from sepconv.layers import ConvNormAct as ConvNormAct
    from sepconv.layers import DepthwiseConv2d as DepthwiseConv2d
    from sepconv.layers import DepthwiseSeparableConv2d as DepthwiseSeparableConv2d
    from sepconv.layers import DropPath as DropPath
    from sepconv.layers import FusedMBConv as FusedMBConv
    from sepconv.layers import InvertedResidual as InvertedResidual
    from sepconv.layers import LayerNorm2d as LayerNorm2d
    from sepconv.layers import LayerScale as LayerScale
    from sepconv.layers import MBConv as MBConv
    from sepconv.layers import PointwiseConv2d as PointwiseConv2d
    from sepconv.layers import SEStyle as SEStyle
    from sepconv.layers import SqueezeExcite as SqueezeExcite
    from sepconv.layers import UniversalInvertedResidual as UniversalInvertedResidual
    from sepconv.layers import get_activation as get_activation
    from sepconv.layers import make_divisible as make_divisible
    from sepconv.modelfile import load_model as load_model
    from sepconv.modelfile import load_weights as load_weights
    from sepconv.modelfile import save_model as save_model
    from sepconv.models import create_model as create_model
    from sepconv.models import list_models as list_models
    from sepconv.models import register_model as register_model
    from sepconv.models.convnext import convnext_small as convnext_small
    from sepconv.models.convnext import convnext_tiny as convnext_tiny
    from sepconv.models.efficientnet import efficientnet_b0 as efficientnet_b0
    from sepconv.models.efficientnet import efficientnet_b1 as efficientnet_b1
    from sepconv.models.efficientnet import efficientnet_b2 as efficientnet_b2
    from sepconv.models.efficientnet import efficientnet_b3 as efficientnet_b3
    from sepconv.models.efficientnet import efficientnet_b4 as efficientnet_b4
    from sepconv.models.efficientnet import efficientnet_b5 as efficientnet_b5
    from sepconv.models.efficientnet import efficientnet_b6 as efficientnet_b6
    from sepconv.models.efficientnet import efficientnet_b7 as efficientnet_b7
    from sepconv.models.efficientnet_v2 import efficientnet_v2_l as efficientnet_v2_l
    from sepconv.models.efficientnet_v2 import efficientnet_v2_m as efficientnet_v2_m
    from sepconv.models.efficientnet_v2 import efficientnet_v2_s as efficientnet_v2_s
    from sepconv.models.mobilenet_v1 import mobilenet_v1 as mobilenet_v1
    from sepconv.models.mobilenet_v2 import mobilenet_v2 as mobilenet_v2
    from sepconv.models.mobilenet_v3 import mobilenet_v3_large as mobilenet_v3_large
    from sepconv.models.mobilenet_v3 import mobilenet_v3_small as mobilenet_v3_small
    from sepconv.models.mobilenet_v4 import mobilenet_v4_conv_medium as mobilenet_v4_conv_medium
    from sepconv.models.mobilenet_v4 import mobilenet_v4_conv_small as mobilenet_v4_conv_small
    from sepconv.models.resnet import resnet50 as resnet50
    from sepconv.models.vgg import vgg16 as vgg16
    from sepconv.models.xception import xception as xception
    from sepconv.predict import predict_latency as predict_latency
    from sepconv.train import EvalResult as EvalResult
    from sepconv.train import TrainConfig as TrainConfig
    from sepconv.train import Trainer as Trainer
    from sepconv.train import evaluate as evaluate


def _public_names() -> dict[str, str]:
    """Public name -> the module it is loaded from, read off the ``TYPE_CHECKING`` imports."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


_EXPORTS = _public_names()

__all__ = sorted(["__version__", *_EXPORTS])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sepconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
