"""sepconv's ONNX Runtime and OpenVINO settings against the runtimes' own defaults, per model.

For every model (default: all of ``sepconv.list_models()``), randomly initialised with its
BatchNorm statistics measured on random images (with the initial ones a random network's
activations shrink towards denormal floats, which time differently), one BN-folded ONNX file is
exported (``export_onnx``, static batch 1), and that same file is run by:

- ``onnxruntime / default``: a default ``InferenceSession``, only ``intra_op_num_threads`` set;
- ``onnxruntime / sepconv``: the ``SessionOptions`` of ``sepconv.deploy.backends``
  (``onnxruntime_settings``);
- ``openvino / default f32``: OpenVINO's CPU defaults, only ``INFERENCE_NUM_THREADS`` and
  ``INFERENCE_PRECISION_HINT=f32`` set (without the latter OpenVINO computes in bf16 on a CPU
  with native bf16, which is not an fp32 result);
- ``openvino / + LATENCY``, ``openvino / + NUM_STREAMS=1``: the default f32 config plus one of
  the two hints sepconv used to set, to see which setting does what;
- ``openvino / sepconv``: the properties of ``sepconv.deploy.backends`` (``openvino_config``);
- ``openvino / default f32, PyTorch graph``: the default f32 config on the graph
  ``openvino.convert_model`` makes from the BN-folded PyTorch model itself (its PyTorch
  frontend) instead of from the ONNX file: the path ``benchmarks/inference.py``'s plain
  OpenVINO rows take, to see whether the graph rather than the config makes a difference.

A row whose settings equal another's is timed once (the table says which rows it stands for).
All rows of a model live in one process and are timed in alternating rounds (the order changes
each round, ``interleaved_order``), each block after a ``RUNTIME_SETTLE_S`` pause so that the
previous runtime's spinning worker threads go idle (``benchmarks/settle.py``). *ratio*: a
row's median over the median of its runtime's default row, in the same run; *faster in*: in
how many rounds the row's median beat the default's.

Run:
    .venv/bin/python benchmarks/runtime_config.py [--threads 2] [--models a,b] [--rounds 8]
    .venv/bin/python benchmarks/runtime_config.py --smoke   # 2 small models at 64x64

Writes results/benchmarks/runtime_config.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from rich.console import Console

import sepconv
from sepconv.bench.output import markdown_environment, markdown_table, terminal_table
from sepconv.bench.timing import RUNTIME_SETTLE_S, environment, interleaved_order, measure
from sepconv.deploy.backends import (
    onnxruntime_session,
    onnxruntime_settings,
    openvino_compiled,
    openvino_config,
)
from sepconv.deploy.fuse import fuse
from sepconv.deploy.onnx import export_onnx, relative_error
from sepconv.train import update_bn_statistics
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
SMOKE_MODELS = ("mobilenet_v1_025", "mobilenet_v2_050")
TORCH_GRAPH = "default f32, PyTorch graph"
HEADERS = ["model", "runtime", "config", "median ms", "IQR ms", "ratio", "faster in", "settings"]


def configs(threads: int) -> dict[tuple[str, str], dict[str, object]]:
    """(runtime, row name) -> the settings that row sets; every other setting is the default."""
    f32 = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    return {
        ("onnxruntime", "default"): {"intra_op_num_threads": threads},
        ("onnxruntime", "sepconv"): onnxruntime_settings(threads),
        ("openvino", "default f32"): f32,
        ("openvino", "+ LATENCY"): {**f32, "PERFORMANCE_HINT": "LATENCY"},
        ("openvino", "+ NUM_STREAMS=1"): {**f32, "NUM_STREAMS": 1},
        ("openvino", "sepconv"): openvino_config(threads, "f32"),
        ("openvino", TORCH_GRAPH): f32,
    }


def describe(settings: dict[str, object]) -> str:
    """``key=value`` pairs, with ONNX Runtime's enums by their short name."""
    return ", ".join(f"{k}={str(v).rsplit('.', 1)[-1]}" for k, v in sorted(settings.items()))


def build(
    runtime: str, path: Path, shape: tuple[int, int, int, int], settings: dict[str, object]
) -> Callable[[torch.Tensor], torch.Tensor]:
    if runtime == "onnxruntime":
        return onnxruntime_session(path, settings)
    return openvino_compiled(path, shape, settings)[0]


# What an OpenVINO compiled model reports it runs with, whatever was asked for.
EFFECTIVE = (
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "INFERENCE_PRECISION_HINT",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "SCHEDULING_CORE_TYPE",
)


def openvino_effective(
    path: Path, shape: tuple[int, int, int, int], settings: dict[str, object]
) -> str:
    """The properties of :data:`EFFECTIVE` as the CPU plugin reports them after compiling."""
    graph = ov.convert_model(str(path))
    graph.reshape(list(shape))
    compiled = ov.Core().compile_model(graph, "CPU", settings)
    values = (compiled.get_property(name) for name in EFFECTIVE)
    values = (v.get_type_name() if isinstance(v, ov.Type) else str(v) for v in values)
    return ", ".join(f"{k}={v.rsplit('.', 1)[-1]}" for k, v in zip(EFFECTIVE, values, strict=True))


def openvino_from_torch(
    model: torch.nn.Module, x: torch.Tensor, settings: dict[str, object]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """OpenVINO on the graph its PyTorch frontend makes of ``model`` (static shape of ``x``)."""
    graph = ov.convert_model(model, example_input=x)
    graph.reshape(list(x.shape))
    request = ov.Core().compile_model(graph, "CPU", settings).create_infer_request()

    def run(inputs: torch.Tensor) -> torch.Tensor:
        request.infer({0: inputs.numpy()}, share_inputs=True)
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    size = (3, args.size, args.size)
    shape = (1, *size)
    torch.manual_seed(0)
    images = torch.randn(16, *size, generator=torch.Generator().manual_seed(1))
    model = update_bn_statistics(sepconv.create_model(name), images.split(8))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(x)
    # Rows with equal settings share one runner: (runtime, settings text) -> first row name.
    rows: dict[tuple[str, str], dict[str, object]] = configs(args.threads)
    first: dict[tuple[str, str], str] = {}
    same_as: dict[str, str] = {}
    for (runtime, row), settings in rows.items():
        key = (runtime, describe(settings) + (" torch" if row == TORCH_GRAPH else ""))
        same_as[f"{runtime} / {row}"] = f"{runtime} / {first.setdefault(key, row)}"
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    effective: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sepconv-runtime-config-") as tmp:
        path = export_onnx(
            model, Path(tmp) / f"{name}.onnx", input_size=size, dynamic_batch=False,
            check_batches=(1,), check_inputs=x,
        ).path  # fmt: skip
        for (runtime, row), settings in rows.items():
            label = f"{runtime} / {row}"
            if row == TORCH_GRAPH:
                runners[label] = openvino_from_torch(fuse(model), x, settings)
            elif same_as[label] == label:
                runners[label] = build(runtime, path, shape, settings)
            if runtime == "openvino" and row != TORCH_GRAPH:
                effective[label] = openvino_effective(path, shape, settings)
    errors = {label: relative_error(run(x), expected) for label, run in runners.items()}
    labels = list(runners)
    per_round: dict[str, list[float]] = {label: [] for label in labels}
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(args.rounds):
        # No row always timed right after a given other one.
        for label in (labels[i] for i in interleaved_order(len(labels), r)):
            t = measure(
                functools.partial(runners[label], x),
                warmup=2,
                repeats=args.repeats,
                threads=args.threads,
                settle_s=RUNTIME_SETTLE_S,
            )
            samples[label].extend(t.samples_s)
            per_round[label].append(t.median_ms)
    del runners  # the sessions' thread pools go with them before the next model is built
    out_rows = []
    for (runtime, row), settings in rows.items():
        label = f"{runtime} / {row}"
        timed = same_as[label]
        default = f"{runtime} / {'default' if runtime == 'onnxruntime' else 'default f32'}"
        values = np.asarray(samples[timed]) * 1e3
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        default_median = float(np.median(np.asarray(samples[default]) * 1e3))
        wins = sum(a < b for a, b in zip(per_round[timed], per_round[default], strict=True))
        out_rows.append(
            {
                "runtime": runtime,
                "config": row,
                "timed_as": timed,
                "settings": describe(settings),
                "median_ms": float(median),
                "iqr_ms": float(q3 - q1),
                "ratio_to_default": float(median) / default_median,
                "faster_rounds": wins if timed != default else None,
                "round_medians_ms": per_round[timed],
                "max_rel_error": errors[timed],
                "openvino_effective": effective.get(label),
            }
        )
    return {"model": name, "rows": out_rows}


def effective_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per model, the OpenVINO configs grouped by the properties they compiled to."""
    lines = []
    for result in results:
        groups: dict[str, list[str]] = {}
        for row in result["rows"]:
            if row["openvino_effective"]:
                groups.setdefault(row["openvino_effective"], []).append(row["config"])
        for props, configs in groups.items():
            lines.append(f"- {result['model']}: {', '.join(configs)} -> {props}")
    return lines


def table_rows(results: list[dict[str, Any]], rounds: int) -> list[list[str]]:
    table = []
    for result in results:
        for row in result["rows"]:
            label = f"{row['runtime']} / {row['config']}"
            config = row["config"] + (
                f" (= {row['timed_as'].split(' / ')[1]})" if row["timed_as"] != label else ""
            )
            wins = row["faster_rounds"]
            table.append(
                [
                    result["model"],
                    row["runtime"],
                    config,
                    f"{row['median_ms']:.2f}",
                    f"{row['iqr_ms']:.2f}",
                    f"{row['ratio_to_default']:.3f}",
                    "" if wins is None else f"{wins}/{rounds}",
                    row["settings"],
                ]
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models", type=lambda s: s.split(","), default=None,
        help="comma-separated registry names (default: every registered model)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=8, help="alternating timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per row per round")
    parser.add_argument("--smoke", action="store_true", help="2 small models at 64x64, 2 rounds")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--out", default="runtime_config", help="writes OUT.{json,md}")
    parser.add_argument(
        "--report-only", action="store_true",
        help="measure nothing: rewrite OUT.md (and print the table) from OUT.json",
    )  # fmt: skip
    args = parser.parse_args()
    json_path = args.results_dir / f"{args.out}.json"
    if args.report_only:
        report(json.loads(json_path.read_text(encoding="utf-8")), args.results_dir, args.out)
        return
    args.size = 64 if args.smoke else 224
    if args.smoke:
        args.models = args.models or list(SMOKE_MODELS)
        args.rounds, args.repeats = 2, 3
    models = args.models or sepconv.list_models()
    unknown = [m for m in models if m not in sepconv.list_models()]
    if unknown:
        parser.error(f"--models: unknown model(s) {', '.join(unknown)}")
    command = " ".join(["python", "benchmarks/runtime_config.py", *sys.argv[1:]])
    torch.set_num_threads(args.threads)
    load_start, started = os.getloadavg(), time.perf_counter()
    results = []
    for name in models:
        print(f"{name} ...", flush=True)
        results.append(bench_model(name, args))
    load_end = os.getloadavg()
    data = {
        "command": command,
        "environment": environment(args.threads),
        "versions": {"onnxruntime": ort.__version__, "openvino": ov.__version__},
        "input_shape": [1, 3, args.size, args.size],
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "settle_s": RUNTIME_SETTLE_S,
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "elapsed_s": time.perf_counter() - started,
        "models": results,
    }
    write_json(json_path, data)
    report(data, args.results_dir, args.out)


def report(data: dict[str, Any], folder: Path, out: str) -> None:
    """Print the table, and write FOLDER/OUT.md, from the data."""
    results, rounds, repeats = data["models"], data["rounds"], data["repeats"]
    size = data["input_shape"][-1]
    rows = table_rows(results, rounds)
    title = f"batch 1, {size}x{size}, {data['threads']} thread(s), fp32, CPU"
    Console(width=200).print(terminal_table(title, HEADERS, rows))
    loads = (", ".join(f"{v:.2f}" for v in data[k]) for k in ("loadavg_start", "loadavg_end"))
    write_text(
        folder / f"{out}.md",
        "# sepconv's runtime settings against the runtimes' defaults\n\n"
        f"{markdown_environment(data['environment'], data['command'])}  \n"
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + f"  \nLoad average (1, 5, 15 min) at start: {next(loads)}; at end: {next(loads)}. "
        f"Whole run: {data['elapsed_s'] / 60:.1f} min.\n\n"
        f"Batch 1, {size}x{size}, fp32, random weights with BatchNorm statistics measured on "
        "random images; every row runs the same BN-folded ONNX file, except the PyTorch-graph "
        "row, which gives OpenVINO the BN-folded PyTorch model. All rows of a model are timed "
        f"in one process in {rounds} alternating rounds (order changed each round) x {repeats} "
        f"timed blocks, each after a {data['settle_s']:g} s pause; *median ms*, *IQR ms* over "
        "all blocks. *ratio*: the row's median over its runtime's default row (below 1: faster "
        "than the default). *faster in*: rounds in which the row's median beat the default's. "
        "A row marked (= other) has the same settings as the other row and was timed once. "
        "*settings*: everything the row sets; the rest is the runtime's default. A load "
        "average above the thread count means other processes shared the cores during the "
        "run: times then vary by tens of percent from round to round, and only rows that "
        "compiled to different properties (list below the table) can differ for a reason "
        "other than noise.\n\n"
        f"{markdown_table(HEADERS, rows)}\n\n"
        "What the OpenVINO CPU plugin reports each config (on the ONNX file) compiled to; "
        "configs on one line compiled to the same properties, so their times differ only by "
        "noise:\n\n" + "\n".join(effective_lines(results)) + "\n",
    )


if __name__ == "__main__":
    main()
