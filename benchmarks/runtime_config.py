"""sepconv's ONNX Runtime and OpenVINO settings against the runtimes' own defaults, per model.

For every model (default: all of ``sepconv.list_models()``), randomly initialised with its
BatchNorm statistics measured on random images (with the initial ones a random network's
activations shrink towards denormal floats, which time differently), one BN-folded ONNX file is
exported (``export_onnx``, static batch 1), and that same file is run by:

- ``onnxruntime / default``: a default ``InferenceSession``, only ``intra_op_num_threads`` set;
- ``onnxruntime / sepconv``: the ``SessionOptions`` sepconv sets
  (``sepconv.deploy.onnxruntime_settings``);
- ``openvino / default f32``: OpenVINO's CPU defaults, only ``INFERENCE_NUM_THREADS`` and
  ``INFERENCE_PRECISION_HINT=f32`` set (without the latter OpenVINO computes in bf16 on a CPU
  with native bf16, which is not an fp32 result);
- ``openvino / + LATENCY``, ``openvino / + NUM_STREAMS=1``: the default f32 config plus one of
  the two hints sepconv used to set, to see which setting does what;
- ``openvino / sepconv``: the properties sepconv compiles with (``sepconv.deploy.openvino_config``);
- ``openvino / default f32, PyTorch graph``: the default f32 config on the graph
  ``openvino.convert_model`` makes from the BN-folded PyTorch model itself (its PyTorch
  frontend) instead of from the ONNX file: the path ``inference.py``'s plain OpenVINO rows
  take, to see whether the graph rather than the config makes a difference.

A row whose settings equal another's is timed once (the table says which rows it stands for).
Each timed row is built in a process of its own, and the rows of a model take turns in
interleaved rounds (``turns.apart``). *ratio*: a row's median over the median of its runtime's
default row, in the same run; *faster in*: in how many rounds the row's median beat the
default's.

Run:
    .venv/bin/python benchmarks/runtime_config.py [--threads 2] [--models a,b] [--rounds 8]
    .venv/bin/python benchmarks/runtime_config.py --smoke   # a small model at 64x64

Writes results/benchmarks/runtime_config.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import onnxruntime as ort
import openvino as ov
import torch
from harness import Run, add_output_flags, add_smoke_flag, positive_int
from peers import Runner, onnxruntime_session, openvino_session
from runtime_config_report import describe, report
from turns import METHOD, Built, apart, overall_max

import sepconv
from sepconv.bench.timing import RUNTIME_SETTLE_S
from sepconv.deploy import export_onnx, fuse, onnxruntime_settings, openvino_config
from sepconv.deploy.onnx_check import relative_error
from sepconv.train import update_bn_statistics

SMOKE_MODELS = ("mobilenet_v1_025",)
TORCH_GRAPH = "default f32, PyTorch graph"
# What an OpenVINO compiled model reports it runs with, whatever was asked for.
EFFECTIVE = (
    "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
    "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE",
)  # fmt: skip


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


def build(
    runtime: str, path: Path, shape: tuple[int, int, int, int], settings: dict[str, object]
) -> Runner:
    """The ONNX file ``path`` in ``runtime`` with ``settings``, at the static ``shape``."""
    if runtime == "onnxruntime":
        return onnxruntime_session(path, settings)
    return openvino_session(ov.convert_model(str(path)), settings, shape)[0]


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


def seeded_model(name: str, size: tuple[int, int, int]) -> tuple[torch.nn.Module, torch.Tensor]:
    """Model ``name`` as every process builds it (seeded; BatchNorm statistics measured on
    random images), and its timed input."""
    torch.manual_seed(0)
    images = torch.randn(16, *size, generator=torch.Generator().manual_seed(1))
    model = update_bn_statistics(sepconv.create_model(name), images.split(8))
    return model, torch.randn((1, *size), generator=torch.Generator().manual_seed(2))


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """In a worker process: the rows ``names`` (``"runtime / row"``) on the ONNX file
    ``settings["path"]``, or, for the PyTorch-graph row, on the seeded model itself; timed on
    ``settings["x"]``."""
    torch.set_num_threads(settings["threads"])
    x = settings["x"]
    shape = tuple(x.shape)
    rows = configs(settings["threads"])
    runners: dict[str, Runner] = {}
    for label in names:
        runtime, row = label.split(" / ", 1)
        config = rows[(runtime, row)]
        if row == TORCH_GRAPH:
            model, _ = seeded_model(settings["model"], tuple(x.shape[1:]))
            graph = ov.convert_model(fuse(model), example_input=x)
            runners[label] = openvino_session(graph, config, shape)[0]
        else:
            runners[label] = build(runtime, Path(settings["path"]), shape, config)  # type: ignore[arg-type]
    return Built(runners, x)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    size = (3, args.size, args.size)
    shape = (1, *size)
    model, x = seeded_model(name, size)
    with torch.inference_mode():
        expected = model(x)
    # Rows with equal settings share one runner: (runtime, settings text) -> first row name.
    rows: dict[tuple[str, str], dict[str, object]] = configs(args.threads)
    first: dict[tuple[str, str], str] = {}
    same_as: dict[str, str] = {}
    for (runtime, row), settings in rows.items():
        key = (runtime, describe(settings) + (" torch" if row == TORCH_GRAPH else ""))
        same_as[f"{runtime} / {row}"] = f"{runtime} / {first.setdefault(key, row)}"
    effective: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sepconv-runtime-config-") as tmp:
        path = export_onnx(
            model, Path(tmp) / f"{name}.onnx", input_size=size, dynamic_batch=False,
            check_batches=(1,), check_inputs=x,
        ).path  # fmt: skip
        for (runtime, row), settings in rows.items():
            if runtime == "openvino" and row != TORCH_GRAPH:
                effective[f"{runtime} / {row}"] = openvino_effective(path, shape, settings)
        # Each timed row in its own process, the rows taking turns.
        worker_settings = {
            "model": name, "x": x, "path": str(path), "threads": args.threads,
            "repeats": args.repeats,
        }  # fmt: skip
        timed_rows = apart(
            list(dict.fromkeys(same_as.values())), worker_settings, setup, rounds=args.rounds
        )
    errors = {label: relative_error(t.output, expected) for label, t in timed_rows.items()}
    timed = {label: (t.timing, t.round_medians_ms) for label, t in timed_rows.items()}
    out_rows = []
    for (runtime, row), settings in rows.items():
        label = f"{runtime} / {row}"
        timing, per_round = timed[same_as[label]]
        default = f"{runtime} / {'default' if runtime == 'onnxruntime' else 'default f32'}"
        default_timing, default_rounds = timed[default]
        wins = sum(a < b for a, b in zip(per_round, default_rounds, strict=True))
        out_rows.append(
            {
                "runtime": runtime,
                "config": row,
                "timed_as": same_as[label],
                "settings": describe(settings),
                "median_ms": timing.median_ms,
                "iqr_ms": timing.iqr_ms,
                "ratio_to_default": timing.median_ms / default_timing.median_ms,
                "faster_rounds": wins if same_as[label] != default else None,
                "round_medians_ms": per_round,
                "max_rel_error": errors[same_as[label]],
                "waiting_cpu_share": timed_rows[same_as[label]].waiting_cpu_share,
                "openvino_effective": effective.get(label),
            }
        )
    return {"model": name, "rows": out_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument(
        "--models", type=lambda s: s.split(","), default=None,
        help="comma-separated registry names (default: every registered model)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=positive_int, default=8, help="interleaved rounds")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed blocks per round")
    add_smoke_flag(parser, "a small model at 64x64, 2 rounds")
    add_output_flags(parser, report_only=True)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.report_only:
        report(run.read(), run)
        return
    args.size = 64 if args.smoke else 224
    if args.smoke:
        args.models = args.models or list(SMOKE_MODELS)
        args.rounds, args.repeats = 2, 3
    models = args.models or sepconv.list_models()
    unknown = [m for m in models if m not in sepconv.list_models()]
    if unknown:
        parser.error(f"--models: unknown model(s) {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    results = []
    for name in models:
        print(f"{name} ...", flush=True)
        results.append(bench_model(name, args))
    data = {
        **run.record(args.threads),
        "versions": {"onnxruntime": ort.__version__, "openvino": ov.__version__},
        "input_shape": [1, 3, args.size, args.size],
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "settle_s": RUNTIME_SETTLE_S,
        "timing_method": METHOD,
        "waiting_cpu_share_max": overall_max(
            [row["waiting_cpu_share"] for m in results for row in m["rows"]]
        ),
        "models": results,
    }
    run.write_json(data)
    report(data, run)


if __name__ == "__main__":
    main()
