"""What a runtime really executes for an ONNX file: its ops after fusion, and their precision.

After :func:`sepconv.deploy.quantize.quantize` these say which parts of the model run in int8 on
ONNX Runtime (:func:`quantized_ops`) and on OpenVINO's CPU plugin (:func:`openvino_layers`).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

from sepconv.deploy._extras import ONNX, ONNXRUNTIME, OPENVINO, require

__all__ = ["ORT_INT8_OPS", "is_int8_layer", "is_int8_op", "openvino_layers", "quantized_ops"]

#: The ops of :func:`quantized_ops` that are ONNX Runtime's int8 kernels.
ORT_INT8_OPS = (
    "QLinearConv",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QGemm",
    "MatMulInteger",
)


def quantized_ops(path: str | os.PathLike[str]) -> dict[str, int]:
    """Count the ops ONNX Runtime executes for an ONNX file, after its QDQ fusions.

    The session is built with the hardware-independent ``ORT_ENABLE_EXTENDED`` optimisations,
    which turn each ``DequantizeLinear -> op -> QuantizeLinear`` group with an int8 kernel into
    that kernel (``QLinearConv``, ``QLinearAdd``, ``QLinearMul``, ``QLinearSigmoid``, ``QGemm``,
    ...); ops left in float keep their names, with the Q/DQ pairs around them.

    Example:
        >>> quantized_ops("mobilenet_v2.int8.onnx")  # doctest: +SKIP
        {'QLinearConv': 52, 'QLinearAdd': 10, 'QGemm': 1, ...}
    """
    ort = require(ONNXRUNTIME, "Counting the ops of an ONNX file")
    onnx = require(ONNX, "Counting the ops of an ONNX file")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {str(file)!r} does not exist.")
    with tempfile.TemporaryDirectory(prefix="sepconv-ops-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def openvino_layers(path: str | os.PathLike[str]) -> dict[str, int]:
    """Count the layers OpenVINO's CPU plugin executes for an ONNX file, by type and precision.

    The file is compiled for the CPU at fp32 inference precision; each layer of the compiled
    (runtime) graph reports its type and the precision it runs in, counted as
    ``"<type> <precision>"``: ``"Convolution i8"`` / ``"Convolution u8"`` is an int8
    convolution on signed / unsigned (after ReLU) activations, its activation fused in;
    ``"Reorder f32"`` a layout or precision conversion between kernels. Constants,
    inputs and outputs are left out.

    Example:
        >>> openvino_layers("efficientnet_b0.int8.onnx")  # doctest: +SKIP
        {'Convolution i8': 49, 'Convolution f32': 32, 'Reduce i8': 17, ...}
    """
    ov = require(OPENVINO, "Counting the layers OpenVINO runs")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {str(file)!r} does not exist.")
    compiled = ov.Core().compile_model(
        str(file), "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    )
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in ("Const", "Input", "Output"):
            counts[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
    return dict(counts.most_common())


def is_int8_op(op: str) -> bool:
    """Whether an op type of :func:`quantized_ops` is one of ONNX Runtime's int8 kernels.

    Example:
        >>> is_int8_op("QLinearConv"), is_int8_op("Conv")
        (True, False)
    """
    return op in ORT_INT8_OPS


def is_int8_layer(layer: str) -> bool:
    """Whether a ``"<type> <precision>"`` key of :func:`openvino_layers` runs in int8 (``i8``
    on signed, ``u8`` on unsigned activations).

    Example:
        >>> is_int8_layer("Convolution u8"), is_int8_layer("Convolution f32")
        (True, False)
    """
    return layer.endswith((" i8", " u8"))
