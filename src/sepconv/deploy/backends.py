"""The CPU backends of :func:`sepconv.deploy.runtime.compile_for_inference`: how each is built
and run. Their rows are in :data:`sepconv.deploy.registry.BACKEND_TABLE`.

Each builder returns a function from a float32 CPU tensor of the compiled shape to the output
tensor, and the precision it computes in: eager PyTorch (NCHW or channels-last, whichever is
faster on the compiled shape), torch.compile (inductor with frozen weights), ONNX Runtime and
OpenVINO, each with a pinned thread count and otherwise the settings that are fastest (for the
two runtimes: their defaults, see :func:`onnxruntime_settings` and :func:`openvino_config`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import bf16_native, measure, pinned_threads
from sepconv.deploy._extras import ONNXRUNTIME, OPENVINO, require
from sepconv.deploy.compiled import Runner, Target
from sepconv.deploy.fuse import fuse

__all__ = [
    "build_compiled",
    "build_eager",
    "onnxruntime_cpu_session",
    "onnxruntime_options",
    "onnxruntime_session",
    "onnxruntime_settings",
    "openvino_compiled",
    "openvino_config",
    "read_onnx_graph",
    "run_onnxruntime",
    "run_openvino",
]

CpuPrecision = Literal["fp32", "bf16"]


def build_eager(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """The ``"eager"`` CPU backend: the BatchNorm-folded model under ``inference_mode``, in
    channels-last layout where that is faster on ``example``, under bf16 autocast for
    ``target.precision == "bf16"``."""
    bf16 = target.precision == "bf16"
    return eager_runner(model, example, target.threads, bf16), target.precision


def build_compiled(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """The ``"compile"`` CPU backend: ``torch.compile`` with frozen weights, compiled now."""
    bf16 = target.precision == "bf16"
    return compiled_runner(model, example, target.threads, bf16), target.precision


def run_onnxruntime(path: Path, target: Target) -> tuple[Runner, str]:
    """The ``"onnxruntime"`` backend: a CPU session of ``path`` (fp32 or int8 QDQ), computing in
    fp32 (its CPU provider has no bf16 convolutions)."""
    return onnxruntime_runner(path, target.threads), "fp32"


def run_openvino(path: Path, target: Target) -> tuple[Runner, str]:
    """The ``"openvino"`` backend: ``path`` compiled for the CPU at ``target.shape``, in bf16
    where asked for and the CPU has it natively, else f32."""
    precision: CpuPrecision = "bf16" if target.precision == "bf16" else "fp32"
    return openvino_runner(path, target.shape, target.threads, precision)


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


def onnxruntime_settings(threads: int) -> dict[str, object]:
    """The ``SessionOptions`` attributes sepconv sets on an ONNX Runtime CPU session."""
    # Only the thread count: ONNX Runtime's defaults are already all graph optimisations and
    # sequential execution (the inter-op pool is then unused), and setting them again measured
    # no faster than a default session on MobileNetV1/V2, EfficientNet-B0 and ResNet-50
    # (python benchmarks/runtime_config.py, results/benchmarks/runtime_config.md).
    return {"intra_op_num_threads": threads}


def onnxruntime_options(settings: Mapping[str, object]) -> Any:
    """ONNX Runtime ``SessionOptions`` with the attributes ``settings`` (the rest keep ONNX
    Runtime's defaults)."""
    ort = require(ONNXRUNTIME, "The onnxruntime backend")
    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    return options


def onnxruntime_cpu_session(path: str | Path, settings: Mapping[str, object]) -> Any:
    """A CPU ``InferenceSession`` of the ONNX file ``path`` with the ``SessionOptions``
    attributes ``settings`` (the rest keep ONNX Runtime's defaults)."""
    ort = require(ONNXRUNTIME, "The onnxruntime backend")
    options = onnxruntime_options(settings)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_session(path: Path, settings: dict[str, object]) -> Runner:
    """A runner over a CPU ``InferenceSession`` of ``path`` with the ``SessionOptions``
    attributes ``settings`` (the rest keep ONNX Runtime's defaults)."""
    session = onnxruntime_cpu_session(path, settings)
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


def read_onnx_graph(path: Path) -> Any:
    """OpenVINO's graph of the ONNX file ``path``, read by ``openvino.Core().read_model``.

    ``openvino.convert_model`` reads an ONNX file with the same frontend, but it is the Python
    conversion tool, and unless the user opted out it sends usage telemetry from background
    threads, each message in a forked process: work that runs on while ``backend="auto"`` times
    its candidates. The native reader sends nothing (``import openvino`` itself sends one
    event, whose process ``auto`` waits for before its race).

    For an fp32 file both give the same graph: the same outputs bit for bit, at the same speed.
    For an int8 (QDQ) file ``convert_model`` also compresses the quantized weights and folds
    the dequantisation before the CPU plugin sees the graph, and the plugin then runs it a
    little differently: on sepconv's trained MobileNets at 224x224 the two agree with fp32 on
    the same test images within 0.2 points, at about the same speed (the native reader's
    0.98-1.09x the time over three runs); on a barely trained EfficientNet-B0, whose int8
    fails either way, the native reader's agreed on 74.6% of them against 31.8% and took
    1.10-1.21x the time (``benchmarks/openvino_reader.py``,
    results/benchmarks/openvino_reader.md; tests/test_deploy_openvino_read.py checks the
    outputs of both on a small network).
    """
    ov = require(OPENVINO, "The openvino backend")
    return ov.Core().read_model(str(path))


def openvino_compiled(
    path: Path, shape: tuple[int, int, int, int], config: dict[str, object]
) -> tuple[Runner, str]:
    """A runner over ``path`` compiled for the CPU at the static ``shape`` with the plugin
    properties ``config`` (the rest keep OpenVINO's defaults), and the inference precision the
    plugin compiled for (OpenVINO's name: ``"f32"``, ``"bf16"``)."""
    ov = require(OPENVINO, "The openvino backend")
    graph = read_onnx_graph(path)
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
