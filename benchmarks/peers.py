"""The plain runtimes sepconv's CPU inference path is measured against, and the interleaved
timing every CPU inference benchmark uses (``inference.py``, ``precision_auto.py``,
``runtime_config.py``).

A *plain* peer is what a user gets from a runtime without sepconv: the PyTorch model exported
or converted as is and run with the runtime's defaults, only the thread count set (and, for the
fp32 OpenVINO peer, f32 precision: without it OpenVINO computes in bf16 on a CPU with native
bf16, which is not an fp32 result). :func:`onnxruntime_session` and :func:`openvino_session`
build a session with exactly the settings given, every other setting the runtime's default.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from torch import nn

from sepconv.bench import Timing, measure
from sepconv.bench.timing import RUNTIME_SETTLE_S, interleaved_order
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


def interleaved(
    rows: dict[str, Runner],
    x: torch.Tensor,
    *,
    rounds: int,
    repeats: int,
    threads: int,
) -> dict[str, Timing]:
    """Time every row on ``x`` in ``rounds`` rounds, in an order that changes from round to round
    (``interleaved_order``), so that load from other processes spreads over all rows and no row
    is always timed right after the same other one; each timing starts after a
    ``RUNTIME_SETTLE_S`` pause (ONNX Runtime's worker threads keep spinning after a call and
    slow the row timed next: ``benchmarks/settle.py``)."""
    return {
        name: t for name, (t, _) in interleaved_rounds(rows, x, rounds, repeats, threads).items()
    }


def interleaved_rounds(
    rows: dict[str, Runner], x: torch.Tensor, rounds: int, repeats: int, threads: int
) -> dict[str, tuple[Timing, list[float]]]:
    """:func:`interleaved`'s timings, each with its median in every round (ms)."""
    names = list(rows)
    samples: dict[str, list[float]] = {name: [] for name in names}
    per_round: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, int] = {}
    for r in range(rounds):
        for index in interleaved_order(len(names), r):
            name = names[index]
            t = measure(
                functools.partial(rows[name], x),
                warmup=2,
                repeats=repeats,
                threads=threads,
                settle_s=RUNTIME_SETTLE_S,
            )
            samples[name].extend(t.samples_s)
            per_round[name].append(t.median_ms)
            calls[name] = t.calls_per_block
    return {
        name: (
            Timing.from_samples(s, calls_per_block=calls[name], threads=threads, device="cpu"),
            per_round[name],
        )
        for name, s in samples.items()
    }
