"""The plain runtimes sepconv's CPU inference path is measured against (``inference.py``,
``precision_auto.py``, ``runtime_config.py``; each times its rows with ``turns.apart``).

A *plain* peer is what a user gets from a runtime without sepconv: the PyTorch model exported
or converted as is and run with the runtime's defaults, only the thread count set (and, for the
fp32 OpenVINO peer, f32 precision: without it OpenVINO computes in bf16 on a CPU with native
bf16, which is not an fp32 result). :func:`onnxruntime_session` and :func:`openvino_session`
build a session with exactly the settings given, every other setting the runtime's default.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from torch import nn

from sepconv.deploy import export_onnx

Runner = Callable[[torch.Tensor], torch.Tensor]


def eager(model: nn.Module) -> Runner:
    """``model`` as users run it: eval mode, ``inference_mode``, NCHW."""

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return run


def onnxruntime_session(path: Path, settings: Mapping[str, object]) -> Runner:
    """A CPU ``InferenceSession`` of ``path`` with the ``SessionOptions`` attributes
    ``settings``; its input is the file's first."""
    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])


def openvino_session(
    graph: Any, settings: Mapping[str, object], shape: tuple[int, ...] | None = None
) -> tuple[Runner, str]:
    """OpenVINO's ``graph`` (``openvino.convert_model``'s) compiled for the CPU with the plugin
    properties ``settings`` (at the static ``shape``, if given), and the inference precision it
    compiled for (OpenVINO's name: ``"f32"``, ``"bf16"``)."""
    if shape is not None:
        graph.reshape(list(shape))
    compiled = ov.Core().compile_model(graph, "CPU", dict(settings))
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.numpy()}, share_inputs=True)
        # The output buffer belongs to the request and is overwritten by the next call.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run, compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def plain_onnxruntime(model: nn.Module, folder: Path, threads: int, x: torch.Tensor) -> Runner:
    """``model`` exported as is (no BatchNorm folding, dynamic batch) into ``folder``, in a
    default ``InferenceSession`` with only ``intra_op_num_threads`` set."""
    exported = export_onnx(
        model, folder / "plain.onnx", input_size=tuple(x.shape[1:]), fold_bn=False,
        check_batches=(len(x),), check_inputs=x,
    )  # fmt: skip
    return onnxruntime_session(exported.path, {"intra_op_num_threads": threads})


def plain_openvino(
    model: nn.Module, example: torch.Tensor, threads: int, f32: bool
) -> tuple[Runner, str]:
    """OpenVINO's PyTorch frontend on ``model``, compiled for the CPU with the thread count set
    (and f32 precision if ``f32``), and the precision it compiled for."""
    graph = ov.convert_model(copy.deepcopy(model), example_input=example)
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return openvino_session(graph, config)
