"""Deployment: batch-norm folding, checked ONNX export, inference on the fastest backend and
int8 quantization.

Optional runtimes (onnx, onnxruntime, onnxscript, openvino, nncf) are imported when first used; a
missing one raises an ImportError naming the extra to install (``pip install 'sepconv[onnx]'``,
``'sepconv[openvino]'``).
"""

from sepconv.deploy.agreement import Agreement, agreement_interval, compare_top1, top1_classes
from sepconv.deploy.backends import onnxruntime_settings, openvino_config
from sepconv.deploy.calibration import calibration_images
from sepconv.deploy.compiled import CandidateReport
from sepconv.deploy.cuda_backends import capture_graph
from sepconv.deploy.fuse import fuse
from sepconv.deploy.onnx import OnnxExport, export_onnx
from sepconv.deploy.onnx_check import ExportError
from sepconv.deploy.precision import split_calibration
from sepconv.deploy.quantize import prepare_images, quantize
from sepconv.deploy.runtime import (
    BackendMismatchError,
    InferenceModel,
    compile_for_inference,
    load_onnx,
)
from sepconv.deploy.runtime_ops import openvino_layers, quantized_ops

__all__ = [
    "Agreement",
    "BackendMismatchError",
    "CandidateReport",
    "ExportError",
    "InferenceModel",
    "OnnxExport",
    "agreement_interval",
    "calibration_images",
    "capture_graph",
    "compare_top1",
    "compile_for_inference",
    "export_onnx",
    "fuse",
    "load_onnx",
    "onnxruntime_settings",
    "openvino_config",
    "openvino_layers",
    "prepare_images",
    "quantize",
    "quantized_ops",
    "split_calibration",
    "top1_classes",
]
