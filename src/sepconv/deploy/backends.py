"""The CPU backends of :func:`sepconv.deploy.runtime.compile_for_inference`, and
:func:`load_onnx`.

Each ``*_runner`` returns a function from a float32 CPU tensor of the compiled shape to the
output tensor: eager PyTorch (NCHW or channels-last, whichever measured faster), torch.compile
(inductor with frozen weights), ONNX Runtime and OpenVINO, each with a pinned thread count and
otherwise the settings that measured fastest (for the two runtimes: their defaults, see
:func:`onnxruntime_settings` and :func:`openvino_config`).
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


def onnxruntime_settings(threads: int) -> dict[str, object]:
    """The ``SessionOptions`` attributes sepconv sets on an ONNX Runtime CPU session."""
    # Only the thread count: ONNX Runtime's defaults are already all graph optimisations and
    # sequential execution (the inter-op pool is then unused), and setting them again measured
    # no faster than a default session on MobileNetV1/V2, EfficientNet-B0 and ResNet-50
    # (python benchmarks/runtime_config.py, results/benchmarks/runtime_config.md).
    return {"intra_op_num_threads": threads}


def onnxruntime_session(path: Path, settings: dict[str, object]) -> Runner:
    """A runner over a CPU ``InferenceSession`` of ``path`` with the ``SessionOptions``
    attributes ``settings`` (the rest keep ONNX Runtime's defaults)."""
    ort = require("onnxruntime", "The onnxruntime backend")
    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return run


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    return onnxruntime_session(path, onnxruntime_settings(threads))


def openvino_config(threads: int, precision: str) -> dict[str, object]:
    """The CPU plugin properties sepconv compiles with; ``precision`` is OpenVINO's name of the
    inference precision (``"f32"`` or ``"bf16"``)."""
    # Only what differs from OpenVINO's defaults: the thread count, and the precision (on a CPU
    # with native bf16 the default is bf16, which is not an fp32 result). The LATENCY hint and
    # NUM_STREAMS=1 sepconv used to add compile to exactly the properties the defaults give
    # (one stream, latency hint, the same threads and pinning), and measured no faster
    # (python benchmarks/runtime_config.py, results/benchmarks/runtime_config.md); leaving them
    # out keeps sepconv's OpenVINO model the one a default-configured user gets.
    return {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}


def openvino_compiled(
    path: Path, shape: tuple[int, int, int, int], config: dict[str, object]
) -> tuple[Runner, str]:
    """A runner over ``path`` compiled for the CPU at the static ``shape`` with the plugin
    properties ``config`` (the rest keep OpenVINO's defaults), and the inference precision the
    plugin compiled for (OpenVINO's name: ``"f32"``, ``"bf16"``)."""
    ov = require("openvino", "The openvino backend")
    graph = ov.convert_model(str(path))
    graph.reshape(list(shape))  # static shape: the CPU plugin plans memory and kernels once
    compiled = ov.Core().compile_model(graph, "CPU", config)
    # What the plugin compiled for, read back rather than assumed.
    used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.numpy()}, share_inputs=True)
        # The output buffer belongs to the request and is overwritten by the next call.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run, used


def openvino_runner(
    path: Path, shape: tuple[int, int, int, int], threads: int, precision: CpuPrecision
) -> tuple[Runner, CpuPrecision]:
    """The runner, and the precision OpenVINO compiled it for (bf16 only where asked for and the
    CPU has it)."""
    asked = "bf16" if precision == "bf16" and bf16_native() else "f32"
    run, used = openvino_compiled(path, shape, openvino_config(threads, asked))
    return run, "bf16" if used == "bf16" else "fp32"


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
