"""The rows of ``inference.py``, and the ratio each sepconv row is judged by.

Every sepconv row is timed against a baseline measured in the same run: its fp32 path against
the best plain fp32 runtime (ONNX Runtime, OpenVINO f32), its bf16 path against the best plain
runtime of any precision, int8 against the best fp32 row. With ``--self-control`` a second
session of each plain fp32 runtime is timed as well; the faster runtime's second session over
the best plain fp32 runtime, the *self-control*, is that runtime measured against itself, the
noise floor of sepconv's fp32 ratio. Row and ratio names are the keys of the JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OV_DEFAULT_ROW = "OpenVINO (plain, default)"
REFERENCE_ROWS = ("ONNX Runtime (plain)", "OpenVINO (plain, f32)")  # the plain fp32 runtimes
RUNTIME_NAMES = dict(zip(REFERENCE_ROWS, ("onnxruntime", "openvino"), strict=True))
SEPCONV_ROW = "sepconv compile_for_inference"
SEPCONV_BF16_ROW = "sepconv compile_for_inference (bf16)"
INT8_CROSS_ROW = "int8 OpenVINO (ORT's file)"
INT8_ORT_ROW = "int8 ONNX Runtime"
INT8_ROWS = (INT8_ORT_ROW, "int8 OpenVINO", INT8_CROSS_ROW)
# Plain fp32 runtime -> its second session (``--self-control``), and the ratio they give.
SECOND_SESSION_ROWS = {row: row[:-1] + ", second session)" for row in REFERENCE_ROWS}
SELF_CONTROL = "self-control"
# Names the results of older runs use: a second session was a "twin" then (committed
# results/benchmarks/inference_twins_*.json), which everywhere else in sepconv means the
# standard-conv model of a separable one.
FORMER_NAMES = {
    **{row[:-1] + ", twin)": second for row, second in SECOND_SESSION_ROWS.items()},
    "twin control": SELF_CONTROL,
}

# Row -> the baseline its ratio is taken against (a key of `baselines`) and how it is named.
RATIO_BASELINES = {
    SEPCONV_ROW: ("fp32 runtime", "best fp32 runtime"),
    SELF_CONTROL: ("fp32 runtime", "best fp32 runtime"),  # not a row: see `ratios`
    SEPCONV_BF16_ROW: ("any runtime", "best plain runtime"),
    **{row: ("fp32", "best fp32") for row in INT8_ROWS},
}


def current_names(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of OUT.json with the rows and ratios of older runs under today's names
    (:data:`FORMER_NAMES`), for reports rewritten from committed results."""

    def renamed(mapping: dict[str, Any]) -> dict[str, Any]:
        return {FORMER_NAMES.get(key, key): value for key, value in mapping.items()}

    def model(result: dict[str, Any]) -> dict[str, Any]:
        return {**result, "rows": renamed(result["rows"])}

    out = {**data, "models": [model(result) for result in data["models"]]}
    if "reruns" in data:
        reruns = data["reruns"]
        out["reruns"] = {
            **reruns,
            "ratios": {m: renamed(by_row) for m, by_row in reruns["ratios"].items()},
            "runs": [current_names(run) for run in reruns["runs"]],
        }
    return out


def precisions(result: dict[str, Any]) -> dict[str, str]:
    """Row -> what it computes in: fp32, bf16 or int8."""
    out = {}
    for row in result["rows"]:
        if row in INT8_ROWS:
            out[row] = "int8"
        elif row in result["auto"]:
            out[row] = result["auto"][row]["precision"]
        elif row in result["openvino_precision"]:
            out[row] = "bf16" if result["openvino_precision"][row] == "bf16" else "fp32"
        else:
            out[row] = "fp32"
    return out


def baselines(result: dict[str, Any]) -> dict[str, float]:
    """The medians each ratio is taken against: eager, best fp32 runtime, best plain runtime of
    any precision, best fp32 row (second sessions left out)."""
    ms = {row: r["median_ms"] for row, r in result["rows"].items()}
    kind = precisions(result)
    second = SECOND_SESSION_ROWS.values()
    return {
        "eager": next(v for k, v in ms.items() if k.endswith(" eager") and k != "sepconv eager"),
        "fp32 runtime": min(ms[r] for r in REFERENCE_ROWS),
        "any runtime": min(ms[r] for r in (*REFERENCE_ROWS, OV_DEFAULT_ROW)),
        "fp32": min(v for k, v in ms.items() if kind[k] == "fp32" and k not in second),
    }


def faster_plain(result: dict[str, Any]) -> str:
    """The plain fp32 runtime with the lower median in this run."""
    return min(REFERENCE_ROWS, key=lambda row: result["rows"][row]["median_ms"])


def chosen_backend(result: dict[str, Any], row: str) -> str | None:
    """The backend sepconv's ``row`` chose, or for `SELF_CONTROL` the faster plain runtime."""
    if row == SELF_CONTROL:
        return RUNTIME_NAMES[faster_plain(result)]
    return result["auto"][row]["backend"] if row in result["auto"] else None


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Row -> its median over its baseline's (`RATIO_BASELINES`), for the rows measured, and,
    with second sessions, `SELF_CONTROL`: the faster plain runtime's second session over the
    best plain fp32 runtime."""
    base = baselines(result)
    out = {
        row: result["rows"][row]["median_ms"] / base[baseline]
        for row, (baseline, _) in RATIO_BASELINES.items()
        if row in result["rows"]
    }
    second = SECOND_SESSION_ROWS[faster_plain(result)]
    if second in result["rows"]:
        out[SELF_CONTROL] = result["rows"][second]["median_ms"] / base["fp32 runtime"]
    return out


def over_reruns(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model of the last run and per ratio: its value in every run, their median and worst
    (highest), and the backends the row chose."""
    summary: dict[str, dict[str, Any]] = {}
    for result in runs[-1]["models"]:
        model = result["model"]
        per_run = [next(r for r in run["models"] if r["model"] == model) for run in runs]
        summary[model] = {}
        for row in ratios(result):
            values = [ratios(r)[row] for r in per_run]
            chosen = (chosen_backend(r, row) for r in per_run)
            summary[model][row] = {
                "baseline": RATIO_BASELINES[row][1],
                "per_run": values,
                "median": float(np.median(values)),
                "worst": max(values),
                "backends": [backend for backend in chosen if backend is not None],
            }
    return summary
