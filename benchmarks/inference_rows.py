"""The rows of ``inference.py``: the reference model each sepconv model is checked against,
and how every row is built in the worker process that times it (``turns.apart``)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import time
from pathlib import Path
from typing import Any

import openvino as ov
import timm
import torch
import torchvision
from inference_profile import F32_ROW, INT8_ROW, openvino_profile
from inference_ratios import (
    INT8_CROSS_ROW,
    INT8_ORT_ROW,
    OV_DEFAULT_ROW,
    REFERENCE_ROWS,
    SECOND_SESSION_ROWS,
    SEPCONV_BF16_ROW,
    SEPCONV_ROW,
)
from peers import Runner, eager, plain_onnxruntime, plain_openvino
from torch import nn
from turns import Built

import sepconv
from sepconv.bench.timing import bf16_native
from sepconv.deploy import compile_for_inference, load_onnx, quantize
from sepconv.deploy.runtime import Precision
from sepconv.train import update_bn_statistics

# sepconv name -> (library, its name for the same architecture)
MODELS: dict[str, tuple[str, str]] = {
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "resnet50": ("torchvision", "resnet50"),
}


def reference_model(library: str, name: str) -> nn.Module:
    if library == "timm":
        return timm.create_model(name, pretrained=False).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def reference_pair(name: str, calib: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """The seeded reference model of ``name`` (BatchNorm statistics from ``calib``) and the
    sepconv model of the same architecture with its weights: every process builds the same."""
    library, ref_name = MODELS[name]
    torch.manual_seed(0)
    reference = update_bn_statistics(reference_model(library, ref_name), calib.split(8))
    model = sepconv.load_weights(sepconv.create_model(name), reference.state_dict()).eval()
    return reference, model


def row_names(name: str, args: argparse.Namespace) -> list[str]:
    """The rows of model ``name`` in this run, in the order they are built."""
    rows = [f"{MODELS[name][0]} eager", "sepconv eager"]
    rows += ["torch.compile"] if args.compile else []
    rows += [*REFERENCE_ROWS, OV_DEFAULT_ROW]
    rows += list(SECOND_SESSION_ROWS.values()) if args.self_control else []
    rows += [SEPCONV_ROW] + ([SEPCONV_BF16_ROW] if bf16_native() else [])
    rows += [INT8_ORT_ROW, INT8_ROW, INT8_CROSS_ROW] if args.int8 else []
    return rows


def build_row(
    row: str, reference: nn.Module, model: nn.Module, settings: dict[str, Any], folder: Path
) -> tuple[Runner, dict[str, Any]]:
    """Row ``row``'s runner, and what its build says about it."""
    threads, x, calib = settings["threads"], settings["x"], settings["calib"]
    size = tuple(x.shape[1:])
    if row == "torch.compile":
        fast = compile_for_inference(
            model, backend="compile", input_size=size, threads=threads, example=x
        )
        return fast, {}
    if row in (REFERENCE_ROWS[0], SECOND_SESSION_ROWS[REFERENCE_ROWS[0]]):
        return plain_onnxruntime(reference, folder, threads, x), {}
    if row in (REFERENCE_ROWS[1], OV_DEFAULT_ROW, SECOND_SESSION_ROWS[REFERENCE_ROWS[1]]):
        runner, precision = plain_openvino(reference, x, threads, row != OV_DEFAULT_ROW)
        return runner, {"openvino_precision": precision}
    if row in (SEPCONV_ROW, SEPCONV_BF16_ROW):
        asked: Precision = "fp32" if row == SEPCONV_ROW else "bf16"
        fast = compile_for_inference(
            model, input_size=size, threads=threads, precision=asked, example=x
        )
        auto = {"backend": fast.backend, "precision": fast.precision}
        timings = {"timings_ms": dict(fast.timings), "race_busy_share": fast.race_busy_share}
        return fast, {"auto": {**auto, **timings}}
    if row in (INT8_ORT_ROW, INT8_ROW, INT8_CROSS_ROW):
        # The cross row runs the ONNX Runtime quantizer's file in OpenVINO; its build time is
        # the loading of that file, as if the other row had made it.
        backend = "openvino" if row == INT8_ROW else "onnxruntime"
        path = folder / f"int8.{backend}.onnx"
        start = time.perf_counter()
        runner = quantize(
            model, calib, path, num_samples=len(calib), backend=backend,
            quantizer="nncf" if row == INT8_ROW else "onnxruntime", threads=threads,
        )  # fmt: skip
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if row == INT8_CROSS_ROW:
            start = time.perf_counter()
            runner = load_onnx(path, backend="openvino", threads=threads)
            return runner, {"build_s": time.perf_counter() - start, "int8_file_sha256": digest}
        info: dict[str, Any] = {
            "int8_file_bytes": path.stat().st_size,
            "int8_file_sha256": digest,
            "build_s": time.perf_counter() - start,  # before the profiling below
        }
        if row == INT8_ROW:
            f32_graph = ov.convert_model(copy.deepcopy(reference), example_input=x)
            int8_graph = ov.Core().read_model(str(path))
            info["openvino_profile_ms"] = {
                F32_ROW: openvino_profile(f32_graph, x, threads, f32=True),
                INT8_ROW: openvino_profile(int8_graph, x, threads, f32=False),
            }
        return runner, info
    if row == "sepconv eager":
        return eager(model), {}
    if row == f"{MODELS[settings['model']][0]} eager":
        return eager(reference), {}
    raise ValueError(f"no such row: {row!r}")


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """In a worker process: the rows ``names`` of ``settings["model"]``, each with its build
    time and what its build says."""
    torch.set_num_threads(settings["threads"])
    reference, model = reference_pair(settings["model"], settings["calib"])
    runners: dict[str, Runner] = {}
    info: dict[str, dict[str, Any]] = {}
    for row in names:
        start = time.perf_counter()
        runners[row], info[row] = build_row(row, reference, model, settings, folder)
        info[row].setdefault("build_s", time.perf_counter() - start)
    return Built(runners, settings["x"], info)
