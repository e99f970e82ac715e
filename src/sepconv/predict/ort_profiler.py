"""Kernels timed by ONNX Runtime's own profiler: each node's duration inside a run.

Timed from outside, a kernel's graph costs its nodes plus a call of ``run`` around them (its
setup, the thread pool waking), which is large and changeable next to a small kernel and has
to be subtracted. With ``enable_profiling`` the runtime records every node's duration in every
run; their sum is the kernels' own time. The profiler's bookkeeping adds a few microseconds to
each node's duration (:func:`profiler_node_seconds` measures how much; a small node's work is
1-3 us), which is taken off every node.

In a sandwiched graph (:func:`sepconv.predict.onnx_graph.kernel_graph`) the nodes of the
sandwich are told from the kernels' by the plan the runtime writes of the graph
(:func:`sepconv.predict.onnx_graph.sandwich_nodes`), and the kernels' own nodes are summed
alone: nothing measured at another time is subtracted, so a kernel's time carries the noise of
its own nodes only (``benchmarks/predict_in_network.py`` compares both ways with the kernels'
nodes inside whole networks).

A calibration on ONNX Runtime times its kernels this way by default
(:class:`sepconv.predict.timers.OnnxTimer` with ``profiled=True``; ``sepconv calibrate
--no-profiler`` times them from outside).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepconv.deploy.backends import onnxruntime_cpu_session, onnxruntime_settings
from sepconv.predict.kernels import Kernel
from sepconv.predict.onnx_graph import kernel_graph, plan_settings, read_plan, sandwich_nodes

__all__ = [
    "PROFILER_CHAIN",
    "Profiled",
    "node_seconds_per_run",
    "profiled_seconds",
    "profiler_node_seconds",
]

# Runs of a profiled graph left out before its timed runs, and the most runs timed.
WARMUP = 3
MAX_RUNS = 200
#: Nodes in the longer of the two chains that measure what the profiler adds to each node.
PROFILER_CHAIN = 34


_NODE_EVENT = "_kernel_time"  # what the profiler appends to a node's name for its duration


@dataclass(frozen=True)
class Profiled:
    """A graph's time by its profile: medians over runs (seconds) of the summed durations of all
    its nodes, and of the nodes outside its sandwich (``None`` when not asked for, or when the
    sandwich could not be told apart: :func:`sepconv.predict.onnx_graph.sandwich_nodes`)."""

    seconds: float
    own_seconds: float | None
    runs: int


def node_seconds_per_run(
    events: Sequence[dict[str, Any]], per_node_s: float = 0.0, leave_out: Collection[str] = ()
) -> list[float]:
    """The summed durations (seconds) of the nodes ONNX Runtime's profiler recorded in each
    ``run`` (its ``model_run`` events, in order), from the profile's ``events``, each node's
    less ``per_node_s`` (what the profiler adds to it); the nodes named in ``leave_out`` not
    counted."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    starts = [start for start, _ in runs]
    sums = [0.0] * len(runs)
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "Node" and name.endswith(_NODE_EVENT):
            if name.removesuffix(_NODE_EVENT) in leave_out:
                continue
            i = bisect.bisect_right(starts, e["ts"]) - 1
            if i >= 0 and e["ts"] <= runs[i][1]:
                sums[i] += e["dur"] * 1e-6 - per_node_s
    return sums


def profiled_seconds(
    path: Path,
    feeds: Sequence[np.ndarray],
    threads: int,
    *,
    repeats: int,
    min_total_s: float,
    per_node_s: float = 0.0,
    sandwiched: bool = False,
) -> Profiled:
    """The ONNX model at ``path`` timed by its profile (:func:`node_seconds_per_run`) in
    ``threads`` intra-op threads, for at least ``repeats`` runs and as many as fill
    ``min_total_s`` (at most :data:`MAX_RUNS`); with ``sandwiched`` (a graph of
    :func:`~sepconv.predict.onnx_graph.kernel_graph` with its sandwich), its kernels' own nodes
    summed too."""
    stem = str(path.with_suffix(""))
    settings = {
        **onnxruntime_settings(threads),
        "enable_profiling": True,
        "profile_file_prefix": stem + "-profile",
    }
    plan = Path(stem + "-plan.onnx")
    if sandwiched:  # the plan names the nodes the profile times
        settings |= plan_settings(plan)
    session = onnxruntime_cpu_session(path, settings)
    inputs = dict(zip([i.name for i in session.get_inputs()], feeds, strict=True))
    began = time.perf_counter()
    for _ in range(WARMUP):
        session.run(None, inputs)
    one = (time.perf_counter() - began) / WARMUP
    runs = min(max(repeats, round(min_total_s / max(one, 1e-9))), MAX_RUNS)
    for _ in range(runs):
        session.run(None, inputs)
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    sums = node_seconds_per_run(events, per_node_s)[WARMUP:]
    own = None
    if sandwiched:
        sandwich = sandwich_nodes(read_plan(plan))
        plan.unlink()
        if sandwich is not None:
            own = float(np.median(node_seconds_per_run(events, per_node_s, sandwich)[WARMUP:]))
    return Profiled(float(np.median(sums)), own, len(sums))


def profiler_node_seconds(
    time_graph: Callable[[Any, Sequence[tuple[int, ...]], bool], float],
    tries: int = 3,
) -> float:
    """How much longer a node's profiled duration is than its share of a call timed from
    outside (the profiler's bookkeeping): chains of 2 and of :data:`PROFILER_CHAIN` sigmoid
    nodes, each timed both ways (``time_graph(model, input_shapes, profiled)``), the extra
    time per extra node; the median of ``tries``, never below 0. About 3-4 us a node on an
    AMD EPYC."""
    act = Kernel("act", ((1, 64, 14, 14),), (1, 64, 14, 14), act="sigmoid")
    graphs = [kernel_graph([act] * count, sandwich=False) for count in (2, PROFILER_CHAIN)]
    added = []
    for _ in range(tries):
        extra = [time_graph(m, s, True) - time_graph(m, s, False) for m, s in graphs]
        added.append((extra[1] - extra[0]) / (PROFILER_CHAIN - 2))
    return max(float(np.median(added)), 0.0)
