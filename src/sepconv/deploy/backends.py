"""The CPU backends of :func:`sepconv.deploy.runtime.compile_for_inference`, and
:func:`load_onnx`.

Each ``*_runner`` returns a function from a float32 CPU tensor of the compiled shape to the
output tensor: eager PyTorch (NCHW or channels-last, whichever measured faster), torch.compile
(inductor with frozen weights), ONNX Runtime and OpenVINO, each set up for low-latency CPU
inference with a pinned thread count.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import bf16_native, measure, pinned_threads
from sepconv.deploy._extras import require
from sepconv.deploy.compiled import InferenceModel, Runner
from sepconv.deploy.fuse import fuse
from sepconv.utils.validation import invalid, positive_int

__all__ = ["OnnxBackend", "build_cpu_runner", "load_onnx", "require_runtime"]

OnnxBackend = Literal["onnxruntime", "openvino"]
CpuPrecision = Literal["fp32", "bf16"]


def choices(names: Sequence[str]) -> str:
    """``names`` quoted and comma-separated, for error messages."""
    return ", ".join(repr(n) for n in names)


def check_threads(threads: int | None) -> int:
    """``threads``, or PyTorch's intra-op thread count for ``None``; else a ValueError."""
    if threads is None:
        return torch.get_num_threads()
    return positive_int("threads", threads)


def load_onnx(
    path: str | Path,
    *,
    backend: OnnxBackend = "onnxruntime",
    batch_size: int = 1,
    threads: int | None = None,
) -> InferenceModel:
    """Run an ONNX file on ONNX Runtime or OpenVINO with the settings of
    :func:`compile_for_inference` (fp32 or int8 QDQ files alike).

    The file must have one input of shape ``(N, C, H, W)`` with static ``C, H, W`` (``N`` may be
    dynamic; it is fixed to ``batch_size``) and one output. A file containing QuantizeLinear
    nodes is reported as ``precision="int8"``.

    Args:
        path: The ``.onnx`` file.
        backend: ``"onnxruntime"`` or ``"openvino"``.
        batch_size: ``N`` of the inputs the returned model takes.
        threads: Intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an invalid argument, or a file whose input or outputs do not fit.
        ImportError: the runtime (or ``onnx``) is not installed; the message names the extra.

    Example:
        >>> int8 = load_onnx("mobilenet_v2.int8.onnx", backend="openvino")  # doctest: +SKIP
        >>> int8.precision  # doctest: +SKIP
        'int8'
    """
    if backend not in get_args(OnnxBackend):
        raise invalid("backend", f"one of {choices(get_args(OnnxBackend))}", backend)
    positive_int("batch_size", batch_size)
    used_threads = check_threads(threads)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {str(file)!r} does not exist.")
    onnx = require("onnx", "reading an ONNX file")
    try:
        proto = onnx.load(str(file), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others for a damaged file
        raise ValueError(
            f"File {str(file)!r} is not a readable ONNX model ({err}); re-export it."
        ) from err
    graph_inputs = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in graph_inputs]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or min(dims[1:]) < 1 or len(proto.graph.output) != 1:
        raise ValueError(
            f"ONNX file {str(file)!r} does not fit: expected one input of shape (N, C, H, W) with "
            f"fixed C, H, W and one output, received {len(inputs)} input(s) of dims {dims} and "
            f"{len(proto.graph.output)} output(s)."
        )
    shape = (batch_size, dims[1], dims[2], dims[3])
    int8 = any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
    runner = (
        onnxruntime_runner(file, used_threads)
        if backend == "onnxruntime"
        else openvino_runner(file, shape, used_threads, "fp32")[0]
    )
    return InferenceModel(
        backend=backend,
        input_shape=shape,
        threads=used_threads,
        run=runner,
        precision="int8" if int8 else "fp32",
        path=file,
    )


def eager_runner(model: nn.Module, example: torch.Tensor, threads: int, bf16: bool) -> Runner:
    fused = fuse(model).float().cpu()
    faster = _channels_last_faster(fused, example, threads, bf16)
    layout = torch.channels_last if faster else torch.contiguous_format
    fused = fused.to(memory_format=layout)

    def run(x: torch.Tensor) -> torch.Tensor:
        with pinned_threads(threads), torch.inference_mode(), _autocast(bf16):
            return fused(x.contiguous(memory_format=layout)).float()

    return run


def _autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _channels_last_faster(
    model: nn.Module, example: torch.Tensor, threads: int, bf16: bool
) -> bool:
    """Whether ``model`` runs ``example`` faster in channels-last than in NCHW, measured."""
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_nhwc = example.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(bf16):
        nchw_ms = measure(lambda: model(example), warmup=2, repeats=5, threads=threads).median_ms
        nhwc_ms = measure(lambda: nhwc(x_nhwc), warmup=2, repeats=5, threads=threads).median_ms
    return nhwc_ms < nchw_ms


def compiled_runner(model: nn.Module, example: torch.Tensor, threads: int, bf16: bool) -> Runner:
    # freezing turns parameters into constants so that inductor can fold them and pre-pack conv
    # weights for oneDNN; it is only valid for inference, which this copy is.
    fused = fuse(model).float().cpu()
    compiled = torch.compile(fused, dynamic=False, options={"freezing": True})

    def run(x: torch.Tensor) -> torch.Tensor:
        with pinned_threads(threads), torch.inference_mode(), _autocast(bf16):
            return compiled(x).float()

    run(example)  # compile now (the generated kernels bake in the thread count), not on call 1
    return run


def require_runtime(backend: str) -> None:
    """Import the runtime ``backend`` needs, or raise the ImportError that names its extra."""
    if backend in ("onnxruntime", "openvino"):
        require(backend, f"The {backend} backend")


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    ort = require("onnxruntime", "The onnxruntime backend")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One image at a time: parallelism comes from inside each op, not from running ops side by
    # side, so the inter-op pool would only add threads competing for the same cores.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return run


def openvino_runner(
    path: Path, shape: tuple[int, int, int, int], threads: int, precision: CpuPrecision
) -> tuple[Runner, CpuPrecision]:
    """The runner, and the precision OpenVINO compiled it for (bf16 only where asked for and the
    CPU has it)."""
    ov = require("openvino", "The openvino backend")
    asked = "bf16" if precision == "bf16" and bf16_native() else "f32"
    graph = ov.convert_model(str(path))
    graph.reshape(list(shape))  # static shape: the CPU plugin plans memory and kernels once
    compiled = ov.Core().compile_model(
        graph,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": asked,
        },
    )
    # What the plugin compiled for, read back rather than assumed.
    used: CpuPrecision = (
        "bf16"
        if compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        else "fp32"
    )
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.numpy()}, share_inputs=True)
        # The output buffer belongs to the request and is overwritten by the next call.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run, used


def build_cpu_runner(
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    onnx_file: Path,
    threads: int,
    precision: CpuPrecision,
) -> tuple[Runner, CpuPrecision]:
    """The runner of backend ``name`` and the precision it computes in."""
    bf16 = precision == "bf16"
    if name == "eager":
        return eager_runner(model, example, threads, bf16), precision
    if name == "compile":
        return compiled_runner(model, example, threads, bf16), precision
    if name == "onnxruntime":
        return onnxruntime_runner(onnx_file, threads), "fp32"
    shape = tuple(example.shape)
    return openvino_runner(onnx_file, shape, threads, precision)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
