"""Kernels timed by ONNX Runtime's own profiler: each node's duration inside a run.

Timed from outside, a kernel's graph costs its nodes plus a call of ``run`` around them (its
setup, the thread pool waking), which is large and changeable next to a small kernel and has
to be subtracted. With ``enable_profiling`` the runtime records every node's duration in every
run; their sum is the kernels' own time. The profiler's bookkeeping adds a few microseconds to
each node's duration (:func:`profiler_node_seconds` measures how much; a small node's work is
1-3 us), which is taken off every node.

A calibration on ONNX Runtime times its kernels this way by default
(:class:`sepconv.predict.timers.OnnxTimer` with ``profiled=True``; ``sepconv calibrate
--no-profiler`` times them from outside).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepconv.deploy.backends import onnxruntime_cpu_session, onnxruntime_settings
from sepconv.predict.kernels import Kernel
from sepconv.predict.onnx_graph import kernel_graph

__all__ = ["PROFILER_CHAIN", "node_seconds_per_run", "profiled_seconds", "profiler_node_seconds"]

# Runs of a profiled graph left out before its timed runs, and the most runs timed.
WARMUP = 3
MAX_RUNS = 200
#: Nodes in the longer of the two chains that measure what the profiler adds to each node.
PROFILER_CHAIN = 34


def node_seconds_per_run(events: Sequence[dict[str, Any]], per_node_s: float = 0.0) -> list[float]:
    """The summed durations (seconds) of the nodes ONNX Runtime's profiler recorded in each
    ``run`` (its ``model_run`` events, in order), from the profile's ``events``, each node's
    less ``per_node_s`` (what the profiler adds to it)."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    starts = [start for start, _ in runs]
    sums = [0.0] * len(runs)
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
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
) -> tuple[float, int]:
    """The median over runs of the ONNX model at ``path`` of its nodes' summed durations
    (:func:`node_seconds_per_run`), in ``threads`` intra-op threads, and the runs timed: at
    least ``repeats``, and as many as fill ``min_total_s`` (at most :data:`MAX_RUNS`)."""
    settings = {
        **onnxruntime_settings(threads),
        "enable_profiling": True,
        "profile_file_prefix": str(path.with_suffix("")) + "-profile",
    }
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
    return float(np.median(sums)), len(sums)


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
