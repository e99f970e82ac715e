"""ONNX Runtime's kernels timed by its own profiler: node durations summed per run, less what
the profiler adds to each node, on real sessions; and kernels kept clear of the threads of the
whole networks timed between them."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from sepconv.bench.timing import RUNTIME_SETTLE_S
from sepconv.deploy.backends import onnxruntime_cpu_session, onnxruntime_settings
from sepconv.predict import Kernel, Profile, calibrate, timers
from sepconv.predict.onnx_graph import (
    SANDWICH,
    kernel_graph,
    plan_settings,
    read_plan,
    sandwich_nodes,
)
from sepconv.predict.ort_profiler import (
    PROFILER_CHAIN,
    node_seconds_per_run,
    profiled_seconds,
    profiler_node_seconds,
)
from sepconv.predict.timers import OnnxTimer


def conv(channels: int, side: int) -> Kernel:
    shape = (1, channels, side, side)
    return Kernel("conv", (shape,), shape, kernel_size=1, groups=1, act="relu")


def write(
    kernels: Sequence[Kernel], folder: Path, sandwich: bool = True
) -> tuple[Path, list[np.ndarray]]:
    model, shapes = kernel_graph(kernels, sandwich=sandwich)
    path = folder / "graph.onnx"
    path.write_bytes(model.SerializeToString())
    rng = np.random.default_rng(0)
    return path, [rng.standard_normal(s).astype(np.float32) for s in shapes]


def profile_events(path: Path, feeds: list[np.ndarray], runs: int) -> list[dict[str, Any]]:
    prefix = str(path.parent / "events")
    settings = {**onnxruntime_settings(1), "enable_profiling": True, "profile_file_prefix": prefix}
    session = onnxruntime_cpu_session(path, settings)
    inputs = dict(zip([i.name for i in session.get_inputs()], feeds, strict=True))
    for _ in range(runs):
        session.run(None, inputs)
    events: list[dict[str, Any]] = json.loads(Path(session.end_profiling()).read_text())
    return events


def test_node_durations_are_summed_run_by_run(tmp_path: Path) -> None:
    path, feeds = write([conv(32, 16), conv(32, 16)], tmp_path)
    events = profile_events(path, feeds, runs=4)
    runs = [e for e in events if e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    sums = node_seconds_per_run(events)
    assert len(sums) == len(runs) == 4
    # Each run's nodes, found by their time stamps here, lie within its model_run event.
    for run, total in zip(sorted(runs, key=lambda e: e["ts"]), sums, strict=True):
        inside = [n for n in nodes if run["ts"] <= n["ts"] <= run["ts"] + run["dur"]]
        assert len(inside) >= 4  # the two sandwich convs and the two kernels, at least
        assert total == pytest.approx(sum(n["dur"] for n in inside) * 1e-6)
        assert 0 < total <= run["dur"] * 1e-6
    per_run = len(nodes) // 4
    less = node_seconds_per_run(events, per_node_s=1e-6)
    assert less == pytest.approx([s - per_run * 1e-6 for s in sums])
    assert node_seconds_per_run([]) == []


def test_a_larger_kernel_takes_longer_by_its_profile(tmp_path: Path) -> None:
    small = profiled_seconds(*write([conv(16, 8)], tmp_path), 1, repeats=5, min_total_s=0)
    large = profiled_seconds(
        *write([conv(256, 56)], tmp_path), 1, repeats=5, min_total_s=0
    )  # 12,544x the MACs
    assert large.runs == 5
    assert large.seconds > 20 * small.seconds > 0
    assert large.own_seconds is small.own_seconds is None  # not asked for


def planned(kernels: Sequence[Kernel], folder: Path) -> Any:
    """ONNX Runtime's plan of the sandwiched ``kernels``, as the file it writes when asked."""
    path, _ = write(kernels, folder)
    plan = folder / "plan.onnx"
    onnxruntime_cpu_session(path, {**onnxruntime_settings(1), **plan_settings(plan)})
    return read_plan(plan)


def act(name: str) -> Kernel:
    return Kernel("act", ((1, 16, 8, 8),), (1, 16, 8, 8), act=name)


def test_the_sandwich_is_told_from_the_kernels_in_the_runtimes_plan(tmp_path: Path) -> None:
    pair = [conv(16, 8), Kernel("se", ((1, 16, 8, 8),), (1, 16, 8, 8), hidden=4, act="silu",
                                gate="sigmoid")]  # fmt: skip
    plan = planned(pair, tmp_path)
    found = sandwich_nodes(plan)
    assert found is not None
    by_name = {n.name: n for n in plan.graph.node}
    convs = {n for n in found if n.startswith(SANDWICH + "_")}
    assert len(convs) == 2 and all(by_name[n].op_type == "Conv" for n in convs)
    layout = found - convs  # NCHWc conversions at the graph's input and output only
    assert layout and all(by_name[n].op_type.startswith("Reorder") for n in layout)
    ends = {plan.graph.input[0].name, plan.graph.output[0].name}
    assert all(ends & {*by_name[n].input, *by_name[n].output} for n in layout)
    # The kernels' nodes stay: the conv, the squeeze-excite's pool and convs, and the
    # conversions the squeeze-excite needs between the convs' layout and its own.
    rest = set(by_name) - found
    assert {by_name[n].op_type for n in rest} >= {"Conv", "ReduceMean", "ReorderOutput"}


@pytest.mark.parametrize(
    "kernels",
    [
        [act("relu6")],  # Clip fused into the sandwich's conv, renamed after it
        [act("hardswish")],  # fused, the conv keeping its name with an activation
        [Kernel("add", ((1, 16, 8, 8),) * 2, (1, 16, 8, 8))],  # summed into a sandwich conv
    ],
    ids=["renamed", "activation", "sum"],
)
def test_a_sandwich_fused_with_a_kernel_is_not_split(kernels: list[Kernel], tmp_path: Path) -> None:
    assert sandwich_nodes(planned(kernels, tmp_path)) is None


def test_a_sandwiched_kernel_is_its_own_nodes_and_leaves_no_files(tmp_path: Path) -> None:
    big = [Kernel("conv", ((1, 256, 28, 28),), (1, 256, 28, 28), kernel_size=1, groups=1)]
    timed = profiled_seconds(*write(big, tmp_path), 1, repeats=5, min_total_s=0, sandwiched=True)
    alone = profiled_seconds(
        *write(big, tmp_path, sandwich=False), 1, repeats=5, min_total_s=0
    )  # the same conv with no sandwich: its node and the layout conversions around it
    assert timed.own_seconds is not None
    assert 0 < timed.own_seconds < timed.seconds
    assert 0.5 * alone.seconds < timed.own_seconds < 1.5 * alone.seconds
    fused = profiled_seconds(
        *write([act("relu6")], tmp_path), 1, repeats=5, min_total_s=0, sandwiched=True
    )
    assert fused.own_seconds is None and fused.seconds > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.onnx"]


def test_what_the_profiler_adds_per_node_is_recovered() -> None:
    """On a synthetic runtime whose profiler adds 4 us to each node and whose calls cost
    30 us each, besides 2 us a node."""
    seen: list[int] = []

    def time_graph(model: Any, shapes: Sequence[tuple[int, ...]], profiled: bool) -> float:
        nodes = len(model.graph.node)
        seen.append(nodes)
        return nodes * (2e-6 + (4e-6 if profiled else 0.0)) + (0.0 if profiled else 30e-6)

    assert profiler_node_seconds(time_graph) == pytest.approx(4e-6)
    assert set(seen) == {2, PROFILER_CHAIN}


def test_a_profiled_timer_times_kernels_and_calls_and_leaves_no_profiles() -> None:
    timer = OnnxTimer("onnxruntime", 1, profiled=True)
    profiles = Path(tempfile.gettempdir()).glob("sepconv-calibrate-*/*profile*")
    try:
        assert timer.profiled and timer.profiler_node_s >= 0
        # The fixed cost of a call is timed from outside, not by the nodes' durations.
        assert timer.call_s > 0 and timer.call_s != timer.empty
        small, large = timer([conv(16, 8)]), timer([conv(256, 56)])
        assert large > 20 * max(small, 1e-7)
        assert timer.profiled_runs >= 2 * timer.repeats
        counts = lambda: (timer.kernels_by_own_nodes, timer.kernels_less_sandwich)  # noqa: E731
        assert counts() == (2, 0)  # the convs: their own nodes
        timer([act("relu6")])  # fused with the sandwich's conv: the sandwich subtracted
        assert counts() == (2, 1)
        assert not list(profiles)  # every profiler's file read and removed
    finally:
        timer.close()
    assert not OnnxTimer("onnxruntime", 1).profiled


def test_a_kernel_timed_after_a_network_waits_for_its_threads_to_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A network's session stays open and its threads spin after its last call: the next
    kernel waits out what is left of the settling pause, and a later one does not wait."""
    timer = OnnxTimer("onnxruntime", 1)
    clock = [0.0]  # the timer module's clock: advanced by its sleeps only, so exact
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    try:
        network = timer.network(torch.nn.Conv2d(3, 8, 3).eval(), (1, 3, 16, 16), "net")
        # The timer's own pauses (not those of the retries of a disturbed timing).
        monkeypatch.setattr(
            timers, "time", SimpleNamespace(sleep=sleep, perf_counter=lambda: clock[0])
        )
        network()
        assert slept == [RUNTIME_SETTLE_S]  # before the network: the one timed before it
        timer([conv(8, 4)])  # waits out what is left of the pause: all of it on this clock
        assert slept == [RUNTIME_SETTLE_S, RUNTIME_SETTLE_S]
        timer([conv(8, 4)])
        assert len(slept) == 2  # the network has been idle long enough
    finally:
        timer.close()


def test_only_onnx_runtime_is_profiled() -> None:
    with pytest.raises(ValueError, match="only ONNX Runtime"):
        OnnxTimer("openvino", 1, profiled=True)
    with pytest.raises(ValueError, match="argument `profiler`: expected None or False with"):
        calibrate("eager", threads=1, budget_s=20, profiler=True)


@pytest.mark.slow
def test_an_onnx_runtime_calibration_is_profiled_and_says_so(tmp_path: Path) -> None:
    profile = calibrate("onnxruntime", threads=1, budget_s=30, max_kernels=60)
    assert profile.validation["kernel_timing"] == "profiler"
    assert 0 <= profile.validation["profiler_node_s"] < 1e-3
    # Every kernel timed one way or the other; a conv never fuses into the sandwich's conv.
    own, less = (profile.validation[k] for k in ("kernels_by_own_nodes", "kernels_less_sandwich"))
    assert own + less >= len(profile.samples)
    assert own >= sum(k.kind == "conv" for k, _ in profile.samples)
    assert profile.describe().endswith(", timed by its profiler")
    assert all(np.isfinite(list(s.values())).all() for _, s in profile.samples)
    profile.save(tmp_path / "p.json")
    assert Profile.load(tmp_path / "p.json").describe() == profile.describe()
