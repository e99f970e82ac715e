"""Where the time goes: OpenVINO's own per-layer counters (``PERF_COUNT``) for the f32 and the
int8 (NNCF) model of ``inference.py``, summed by layer type and the precision each layer ran
in, so that a small int8 gain shows which layers int8 does not speed up."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
import torch

from sepconv.bench.output import markdown_table

F32_ROW, INT8_ROW = "OpenVINO (plain, f32)", "int8 OpenVINO"  # the rows profiled
HEADERS = ["layer", "f32 ms", "int8 ms", "int8 run in", "f32 / int8"]


def openvino_profile(graph: Any, x: torch.Tensor, threads: int, f32: bool) -> dict[str, float]:
    """OpenVINO's per-layer times on ``x``, summed by ``"<layer type> <precision>"``, in ms
    (the median over 20 calls of each key's sum, after 10 warm-up calls)."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    request = ov.Core().compile_model(graph, "CPU", config).create_infer_request()
    calls: list[dict[str, float]] = []
    for call in range(30):
        request.infer({0: x.numpy()})
        if call < 10:
            continue
        sums: dict[str, float] = {}
        for layer in request.profiling_info:
            if layer.status == layer.Status.EXECUTED:
                key = f"{layer.node_type} {layer.exec_type.rsplit('_', 1)[-1].lower()}"
                sums[key] = sums.get(key, 0.0) + layer.real_time.total_seconds() * 1e3
        calls.append(sums)
    keys = sorted({k for sums in calls for k in sums})
    medians = {k: float(np.median([sums.get(k, 0.0) for sums in calls])) for k in keys}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def by_layer(sums: dict[str, float]) -> dict[str, tuple[float, str]]:
    """``"<layer type> <precision>"`` -> ms, summed by layer type: (ms, the precisions)."""
    out: dict[str, tuple[float, str]] = {}
    for key, ms in sums.items():
        layer, precision = key.split()
        total, names = out.get(layer, (0.0, ""))
        out[layer] = (total + ms, f"{names}, {precision}" if names else precision)
    return out


def layer_rows(f32: dict[str, float], int8: dict[str, float]) -> list[list[str]]:
    """One row per layer type, slowest in f32 first, then the total."""
    a, b = by_layer(f32), by_layer(int8)
    layers = sorted({*a, *b}, key=lambda k: -a.get(k, (0.0, ""))[0])
    table = [
        [
            layer,
            f"{a.get(layer, (0.0, ''))[0]:.2f}",
            f"{b.get(layer, (0.0, ''))[0]:.2f}",
            b.get(layer, (0.0, "-"))[1],
            # a layer OpenVINO fused away in one model has no time of its own there
            f"{a[layer][0] / b[layer][0]:.2f}x"
            if a.get(layer, (0,))[0] and b.get(layer, (0,))[0]
            else "",
        ]
        for layer in layers
    ]
    f32_ms, int8_ms = sum(f32.values()), sum(int8.values())
    total_ratio = f"{f32_ms / int8_ms:.2f}x" if int8_ms else ""
    table.append(["total", f"{f32_ms:.2f}", f"{int8_ms:.2f}", "", total_ratio])
    return table


def profile_section(results: list[dict[str, Any]]) -> str:
    """Markdown: per model, OpenVINO's layer time by layer type and precision, f32 beside int8
    (empty without int8 rows)."""
    parts = [
        f"\n### {result['model']}\n\n"
        + markdown_table(HEADERS, layer_rows(profile[F32_ROW], profile[INT8_ROW]))
        + "\n"
        for result in results
        if (profile := result.get("openvino_profile_ms"))
    ]
    if not parts:
        return ""
    return (
        "## Where the time goes (OpenVINO's per-layer counters)\n\n"
        "Per model: the summed time of OpenVINO's CPU layers by layer type and the precision "
        "it ran in (`PERF_COUNT`, median over 20 calls, each model compiled once more for this), "
        "f32 model beside the int8 (NNCF) one. The layers' sum is below the call's latency "
        "(the rest is the runtime's own overhead). Convolution is the 1x1 and the dense convs, "
        "GroupConvolution the depthwise ones; ReduceMean and Multiply are squeeze-excite's pool "
        "and scaling in EfficientNet.\n" + "".join(parts)
    )
