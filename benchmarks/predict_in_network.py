"""A calibration's kernel timings against the same kernels inside a whole network, on ONNX
Runtime: which of two ways of timing a kernel agrees with the network, and how far either is.

A latency profile times each kernel on its own, between two sandwich convs
(``sepconv.predict.onnx_graph.kernel_graph``), and a model's prediction adds those kernels up.
ONNX Runtime's profiler records every node's duration in a run, so the same kernel can also be
read inside the whole model, where its inputs come from the kernel before it and the other
kernels' weights have been through the caches. For each conv kernel of each ``--models``
network (exported as ``sepconv.export_onnx`` writes it), this benchmark reads, ``--tries``
times, interleaved:

- *in the network*: the kernel's node in the whole network's profile (median over runs);
- *own nodes*: the sandwiched kernel's own nodes in its profile, the calibration's way
  (``OnnxTimer(profiled=True)``);
- *less sandwich*: the sandwiched graph's nodes less the sandwich convs' time measured on their
  own graph (``OnnxTimer(profiled=True, own_nodes=False)``), the calibration's way before.

Every duration has what the profiler adds to a node taken off. The report gives, by kind of
conv, the kernels' summed time each way and its ratio to the network's, the spread of the
errors about their median, and how much each way's tries spread.

Run:
    .venv/bin/python benchmarks/predict_in_network.py [--models mobilenet_v2 ...] [--tries 3]
    .venv/bin/python benchmarks/predict_in_network.py --smoke   # one small network, 2 tries

Writes results/benchmarks/predict_in_network.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from predict_validation import randomize_norms

from sepconv import create_model, export_onnx
from sepconv.bench.output import markdown_table
from sepconv.deploy import onnxruntime_settings
from sepconv.deploy.backends import onnxruntime_cpu_session
from sepconv.predict import Kernel, extract_kernels
from sepconv.predict.fusion import detect_fusions
from sepconv.predict.timers import OnnxTimer

WAYS = ("own nodes", "less sandwich")
WARMUP, NETWORK_RUNS = 3, 50  # runs of a whole network left out, then timed
HEADERS = [
    "model", "kind", "kernels", "in the network (ms)",
    *(f"{w}: sum / network" for w in WAYS),
    *(f"{w}: spread of errors" for w in WAYS),
    *(f"{w}: tries' spread" for w in WAYS),
]  # fmt: skip


def kind(kernel: Kernel) -> str:
    """What kind of conv ``kernel`` is: depthwise, an expanding or a projecting 1x1, or
    another (full, grouped) conv."""
    cin, cout = kernel.inputs[0][1], kernel.output[1]
    if kernel.groups > 1 and kernel.groups == cin:
        return "depthwise"
    if kernel.kernel_size == 1 and kernel.groups == 1:
        return "1x1, expanding" if cout > cin else "1x1, projecting"
    return "other"


def network_conv_seconds(path: Path, side: int, threads: int, per_node_s: float) -> list[float]:
    """The medians over runs of the durations of the network's conv nodes, in the order of the
    first run, less ``per_node_s``."""
    settings = {
        **onnxruntime_settings(threads),
        "enable_profiling": True,
        "profile_file_prefix": str(path.with_suffix("")) + "-profile",
    }
    session = onnxruntime_cpu_session(path, settings)
    x = np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32)
    for _ in range(WARMUP + NETWORK_RUNS):
        session.run(None, {session.get_inputs()[0].name: x})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    durations: dict[str, list[float]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["ts"]):
        args = e.get("args", {})
        if e.get("cat") != "Node" or args.get("op_name") not in ("Conv", "FusedConv"):
            continue
        if not e["name"].endswith("_kernel_time"):
            continue
        durations[e["name"]].append(e["dur"] * 1e-6 - per_node_s)
    return [float(np.median(d[WARMUP:])) for d in durations.values()]


def measure_model(
    name: str, side: int, width: float, tries: int, timers: dict[str, OnnxTimer], seed: int
) -> list[dict[str, Any]]:
    """Every conv kernel of the network, timed each way in ``tries`` interleaved tries."""
    kwargs = {} if width == 1.0 else {"width_mult": width}
    torch.manual_seed(seed)
    model = randomize_norms(create_model(name, **kwargs), np.random.default_rng(seed)).eval()
    first = next(iter(timers.values()))
    fusions, _ = detect_fusions(first.isolated, plan_fuses=first.plan_fuses)
    every = extract_kernels(model, (1, 3, side, side), fusions)
    kernels = [k for k in every if k.kind == "conv"]
    # The network's conv nodes in order: one per conv kernel, and the two of each
    # squeeze-excite kernel (timed as a whole by a calibration, so left out here).
    mine = [k.kind == "conv" for k in every for _ in range({"conv": 1, "se": 2}.get(k.kind, 0))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.onnx"
        export_onnx(model, path, input_size=(3, side, side), dynamic_batch=False,
                    check_batches=(1,))  # fmt: skip
        rows = [{"kernel": k.to_dict(), "kind": kind(k), **{w: [] for w in ("network", *WAYS)}}
                for k in kernels]  # fmt: skip
        for index in range(tries):
            network = network_conv_seconds(path, side, first.threads, first.profiler_node_s)
            if len(network) != len(mine):
                raise SystemExit(
                    f"{name}: the network ran {len(network)} convs, its kernels have "
                    f"{len(mine)}; they cannot be paired"
                )
            network = [t for t, conv in zip(network, mine, strict=True) if conv]
            for row, kernel, seconds in zip(rows, kernels, network, strict=True):
                row["network"].append(seconds)
                order = WAYS if index % 2 == 0 else WAYS[::-1]
                for way in order:
                    row[way].append(timers[way]([kernel]))
            print(f"{name}: try {index + 1}/{tries} done", flush=True)
    return rows


def summarize(name: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per kind of conv (and one for all)."""
    table = []
    for what in (*sorted({r["kind"] for r in rows}), "all"):
        part = [r for r in rows if what in ("all", r["kind"])]
        network = np.array([np.median(r["network"]) for r in part])
        ratios, spreads, tries = [], [], []
        for way in WAYS:
            timed = np.array([np.median(r[way]) for r in part])
            errors = timed / network - 1
            ratios.append(f"{timed.sum() / network.sum():.2f}")
            spreads.append(f"{100 * np.sqrt(np.mean((errors - np.median(errors)) ** 2)):.0f}%")
            spread = [(max(r[way]) - min(r[way])) / abs(np.median(r[way])) for r in part]
            tries.append(f"{100 * np.median(spread):.0f}%")
        table.append([name, what, str(len(part)), f"{1e3 * network.sum():.2f}",
                      *ratios, *spreads, *tries])  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["mobilenet_v2", "mobilenet_v1", "efficientnet_b0"],
        help="registry names",
    )  # fmt: skip
    parser.add_argument("--input-size", type=positive_int, default=224)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--tries", type=positive_int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    add_smoke_flag(parser, "MobileNetV2 at width 0.35 and 96 pixels, 2 tries")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.smoke:
        args.models, args.input_size, args.width_mult, args.tries = ["mobilenet_v2"], 96, 0.35, 2
    timers = {
        WAYS[0]: OnnxTimer("onnxruntime", args.threads, profiled=True),
        WAYS[1]: OnnxTimer("onnxruntime", args.threads, profiled=True, own_nodes=False),
    }
    timers[WAYS[1]].profiler_node_s = timers[WAYS[0]].profiler_node_s  # one reading for all
    try:
        results = {
            name: measure_model(
                name, args.input_size, args.width_mult, args.tries, timers, args.seed
            )
            for name in args.models
        }
    finally:
        for timer in timers.values():
            timer.close()
    rows = [row for name, kernels in results.items() for row in summarize(name, kernels)]
    table = markdown_table(HEADERS, rows)
    print(table)
    data = {
        **run.record(args.threads),
        "input_size": args.input_size,
        "width_mult": args.width_mult,
        "profiler_node_s": timers[WAYS[0]].profiler_node_s,
        "kernels": results,
    }
    run.write(
        data,
        header("A calibration's kernel timings against the same kernels in a network", data)
        + f"\n\nONNX Runtime, {args.threads} threads, batch 1, {args.input_size} pixels, width "
        f"{args.width_mult:g}; each conv kernel timed {args.tries} times each way, interleaved "
        f"(the module doc says how). What the profiler adds to a node "
        f"({1e6 * data['profiler_node_s']:.1f} us) is taken off every duration. *sum / "
        "network*: the kernels' summed time over their summed time in the network. *spread of "
        "errors*: RMS about their median of the kernels' errors against the network (what a "
        "single scale cannot correct). *tries' spread*: the median over kernels of the range "
        f"of its tries over their median.\n\n{table}\n",
    )


if __name__ == "__main__":
    main()
