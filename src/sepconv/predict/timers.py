"""Timing kernels on a backend: what one kernel (or a chain of them) adds to a model's latency.

- ONNX runtimes (ONNX Runtime, OpenVINO): each chain is a sandwiched ONNX graph
  (:func:`~sepconv.predict.onnx_graph.kernel_graph`) run in the backend's own session settings
  (:func:`sepconv.deploy.onnxruntime_settings`, :func:`sepconv.deploy.openvino_config`). The
  sandwich's own cost is measured once per shape, on a graph of the two sandwich convs alone,
  and taken off: a kernel is charged what it adds between two convs, as inside a model. A
  graph's time is that of a call timed from outside or, for ONNX Runtime with ``profiled``
  (a calibration's default there), the sum of its nodes' durations as the runtime's profiler
  records them (:mod:`sepconv.predict.ort_profiler`). Profiled, a kernel is its own nodes'
  durations alone, the sandwich's left out, where the runtime's plan keeps the sandwich's
  convs apart from the kernel's ops; where it fused them, the sandwich's time is subtracted.
- PyTorch (eager, CPU or CUDA): each chain is a function calling the ops the model calls
  (BatchNorm folded: :mod:`sepconv.predict.torch_calls`), timed on an input in the layout the
  backend runs (NCHW or channels-last); nothing is taken off, since a model pays every call's
  dispatch too.

Every time is the median of the blocks of :func:`~sepconv.predict.quiet.quiet_measure` that no
other process disturbed (on CUDA, of :func:`sepconv.bench.measure`'s blocks, timed with CUDA
events).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import RUNTIME_SETTLE_S, measure, pinned_threads
from sepconv.deploy.backends import (
    onnxruntime_cpu_session,
    onnxruntime_settings,
    openvino_config,
    read_onnx_graph,
)
from sepconv.predict.kernels import Kernel
from sepconv.predict.onnx_graph import (
    as_map,
    kernel_graph,
    plan_settings,
    read_plan,
    sandwich_graph,
)
from sepconv.predict.ort_profiler import Profiled, profiled_seconds, profiler_node_seconds
from sepconv.predict.quiet import RETRIES, quiet_measure
from sepconv.predict.torch_calls import torch_function

__all__ = ["TIMED_BACKENDS", "KernelTimer", "OnnxTimer", "TorchTimer", "make_timers"]

Shape = tuple[int, ...]
# Timed blocks per kernel, and the shortest block: enough for a stable median of
# microsecond kernels without spending the calibration's budget on any one of them.
REPEATS = 7
MIN_BLOCK_S = 2e-3


class KernelTimer(Protocol):
    """Times kernels on one backend, in seconds."""

    def __call__(self, kernels: Sequence[Kernel]) -> float:
        """What the chain ``kernels`` adds to a model's latency."""

    def isolated(self, kernels: Sequence[Kernel]) -> float:
        """The chain run on its own, less an empty call (the fusion test cases)."""

    def network(self, model: nn.Module, shape: Shape, name: str) -> Callable[[], float]:
        """A timer of the whole ``model`` at ``shape``, as the backend runs a model."""

    def close(self) -> None:
        """Release what the timer holds."""


class _Retrying:
    """Retries a disturbed timing (:mod:`sepconv.predict.quiet`) only while before
    ``deadline``, so that a busy machine cannot stretch a calibration past its budget."""

    deadline: float = float("inf")
    repeats: int = REPEATS
    kept: int = 0
    disturbed: int = 0

    def _retries(self) -> int:
        return RETRIES if time.perf_counter() < self.deadline else 0

    def _quiet_seconds(self, run: Callable[[], object]) -> float:
        """Seconds of one call of ``run``: the median of its undisturbed blocks, the kept and
        disturbed blocks counted."""
        timing = quiet_measure(
            run, warmup=2, repeats=self.repeats, min_block_s=MIN_BLOCK_S, retries=self._retries()
        )
        self.kept += timing.kept
        self.disturbed += timing.disturbed
        return timing.median_s


class OnnxTimer(_Retrying):
    """Sandwiched ONNX graphs on ONNX Runtime or OpenVINO (see the module doc)."""

    def __init__(
        self,
        runtime: str,
        threads: int,
        repeats: int = REPEATS,
        profiled: bool = False,
        own_nodes: bool = True,
    ) -> None:
        """``own_nodes``: a profiled kernel is its own nodes where the plan allows (else,
        always the whole graph less the sandwich's time, as before this was possible)."""
        if profiled and runtime != "onnxruntime":
            raise ValueError(f"only ONNX Runtime's kernels can be profiled, not {runtime}'s")
        self.runtime = runtime
        self.profiled = profiled
        self.own_nodes = own_nodes
        self.threads = threads
        self.repeats = repeats
        self._baselines: dict[Shape, float] = {}
        self.kept = self.disturbed = self.profiled_runs = 0
        # Profiled kernels timed by their own nodes, and those with the sandwich subtracted.
        self.kernels_by_own_nodes = self.kernels_less_sandwich = 0
        self._folder = tempfile.TemporaryDirectory(prefix="sepconv-calibrate-")
        # When the sessions of the whole networks this timer ran are idle again (see _settle).
        self._idle_from = 0.0
        self.profiler_node_s = 0.0  # what ONNX Runtime's profiler adds to a node's duration
        if profiled:
            self.profiler_node_s = profiler_node_seconds(self._run)
        self.empty = self._sandwich((1, 8, 1, 1))  # two near-empty kernels (and a call)
        self.call_s = self.empty  # the runtime's fixed cost of a call, timed from outside
        if profiled:
            self.call_s = self._run(*sandwich_graph((1, 8, 1, 1)), profiled=False)
        tiny = Kernel("scale", ((1, 8, 1, 1),), (1, 8, 1, 1))
        self._empty_alone = self._run(*kernel_graph([tiny], sandwich=False))

    def _run(self, model: Any, shapes: Sequence[Shape], profiled: bool | None = None) -> float:
        """Seconds of the graph ``model``: from outside, or by its profile (``profiled``,
        default: the timer's)."""
        if self.profiled if profiled is None else profiled:
            return self._profile(model, shapes).seconds
        run = self._runner(*self._write(model, shapes))
        run()  # first call plans memory; measure's warm-up covers the rest
        seconds = self._quiet_seconds(run)
        del run  # release the session and its threads before the next one starts
        return seconds

    def _profile(self, model: Any, shapes: Sequence[Shape], sandwiched: bool = False) -> Profiled:
        """The graph ``model`` timed by its profile (its kernels' own nodes too, if
        ``sandwiched``)."""
        path, feeds = self._write(model, shapes)
        timed = profiled_seconds(
            path, feeds, self.threads, repeats=self.repeats,
            min_total_s=self.repeats * MIN_BLOCK_S, per_node_s=self.profiler_node_s,
            sandwiched=sandwiched,
        )  # fmt: skip
        self.profiled_runs += timed.runs  # no disturbance check: the median over runs only
        return timed

    def _write(self, model: Any, shapes: Sequence[Shape]) -> tuple[Path, list[np.ndarray]]:
        """The graph's file and its inputs, written once the networks' threads are idle."""
        self._settle()
        path = Path(self._folder.name) / "kernel.onnx"
        path.write_bytes(model.SerializeToString())
        rng = np.random.default_rng(0)
        return path, [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def _settle(self) -> None:
        """Wait until the sessions of the whole networks timed last are idle: a network's
        session outlives its timing, and its worker threads spin for work for tens of
        milliseconds after its last call, taking a core from a kernel timed then (a pointwise
        conv timed right after a network took 1.4-2x its time)."""
        wait = self._idle_from - time.perf_counter()
        if wait > 0:
            time.sleep(wait)

    def _runner(self, path: Path, feeds: list[np.ndarray]) -> Callable[[], object]:
        if self.runtime == "onnxruntime":
            session = onnxruntime_cpu_session(path, onnxruntime_settings(self.threads))
            names = [i.name for i in session.get_inputs()]
            inputs = dict(zip(names, feeds, strict=True))
            return lambda: session.run(None, inputs)
        import openvino as ov

        compiled = ov.Core().compile_model(
            read_onnx_graph(path), "CPU", openvino_config(self.threads, "f32")
        )
        request = compiled.create_infer_request()
        by_index = dict(enumerate(feeds))
        return lambda: request.infer(by_index, share_inputs=True)

    def _sandwich(self, shape: Shape) -> float:
        """Seconds of a graph of only the two sandwich convs on ``shape``."""
        if shape not in self._baselines:
            self._baselines[shape] = self._run(*sandwich_graph(shape))
        return self._baselines[shape]

    def __call__(self, kernels: Sequence[Kernel]) -> float:
        model, shapes = kernel_graph(kernels, sandwich=True)
        if not self.profiled:
            total = self._run(model, shapes)
        else:
            timed = self._profile(model, shapes, sandwiched=self.own_nodes)
            if timed.own_seconds is not None:
                self.kernels_by_own_nodes += 1
                return timed.own_seconds
            self.kernels_less_sandwich += 1
            total = timed.seconds
        ends = [*shapes, as_map(kernels[-1].output)]
        # Each end's half of its sandwich, less the call itself, counted once.
        sides = sum(0.5 * (self._sandwich(s) - self.empty) for s in ends)
        return total - sides - self.empty

    def isolated(self, kernels: Sequence[Kernel]) -> float:
        return self._run(*kernel_graph(kernels, sandwich=False)) - self._empty_alone

    def plan_fuses(self, kernels: Sequence[Kernel]) -> bool | None:
        """Whether ONNX Runtime's plan of the sandwiched chain ``kernels`` (the optimised
        graph it writes when asked, ``optimized_model_filepath``) runs it as convs alone: the
        ops after the first conv fused into it. ``None`` for OpenVINO (not read)."""
        if self.runtime != "onnxruntime":
            return None
        model, _ = kernel_graph(kernels, sandwich=True)
        folder = Path(self._folder.name)
        (folder / "pair.onnx").write_bytes(model.SerializeToString())
        settings = {**onnxruntime_settings(self.threads), **plan_settings(folder / "planned.onnx")}
        onnxruntime_cpu_session(folder / "pair.onnx", settings)
        planned = read_plan(folder / "planned.onnx")
        # Layout conversions (NCHWc) are not the ops tested: a conv is all that may be left.
        return all(
            n.op_type in ("Conv", "FusedConv") or n.op_type.startswith("Reorder")
            for n in planned.graph.node
        )

    def network(self, model: nn.Module, shape: Shape, name: str) -> Callable[[], float]:
        """A timer of the whole ``model`` at ``shape``, as a user deploys it: the file
        ``sepconv.export_onnx`` writes (BatchNorm folded, static shape), loaded once in this
        timer's runtime and threads (``name`` names the file); each call of the timer pauses
        for the runtime's idle threads to stop spinning, then returns the seconds of one call
        (and the kernels timed next wait for this network's threads in turn)."""
        from sepconv.deploy.onnx import export_onnx  # the exporter deployed models go through

        path = Path(self._folder.name) / f"{name}.onnx"
        _, channels, height, width = shape
        export_onnx(model, path, input_size=(channels, height, width), dynamic_batch=False,
                    check_batches=(shape[0],))  # fmt: skip
        feeds = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
        run = self._runner(path, feeds)
        run()  # the first call plans memory

        def seconds() -> float:
            time.sleep(RUNTIME_SETTLE_S)  # another network's session may still spin
            taken = self._quiet_seconds(run)
            self._idle_from = time.perf_counter() + RUNTIME_SETTLE_S  # and this one now
            return taken

        return seconds

    def close(self) -> None:
        self._folder.cleanup()


class TorchTimer(_Retrying):
    """PyTorch ops on ``device``, the inputs in ``layout`` (``"nchw"`` or ``"nhwc"``)."""

    def __init__(
        self, device: str, threads: int, layout: str = "nchw", repeats: int = REPEATS
    ) -> None:
        self.device = torch.device(device)
        self.threads = threads
        self.layout = layout
        self.repeats = repeats
        self._empty: float | None = None
        self.kept = 0
        self.disturbed = 0

    def _input(self, shape: Shape, gen: torch.Generator) -> torch.Tensor:
        x = torch.randn(shape, generator=gen).to(self.device)
        if len(shape) == 4 and self.layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, kernels: Sequence[Kernel]) -> float:
        gen = torch.Generator().manual_seed(0)
        first = kernels[0]
        x = self._input(first.inputs[0], gen)
        steps = []
        for kernel in kernels:
            fn = torch_function(kernel, self.device)
            extra = [self._input(s, gen) for s in kernel.inputs[1:]]
            steps.append((fn, extra))

        def run() -> torch.Tensor:
            y = x
            for fn, extra in steps:
                y = fn(y, *extra)
            return y

        return self.time_call(run)

    def time_call(self, run: Callable[[], object]) -> float:
        """Seconds of one call of ``run`` (the median of the undisturbed blocks), in this
        timer's threads and under ``inference_mode``."""
        if self.device.type == "cuda":
            timing = measure(
                run, warmup=2, repeats=self.repeats, min_block_s=MIN_BLOCK_S, device=self.device
            )
            return timing.median_s
        with pinned_threads(self.threads), torch.inference_mode():
            return self._quiet_seconds(run)

    def network(self, model: nn.Module, shape: Shape, name: str) -> Callable[[], float]:
        """A timer of the whole ``model`` at ``shape`` in this timer's layout: each call
        returns the seconds of one call of it (``name``: unused, as the graph timers')."""
        layout = torch.channels_last if self.layout == "nhwc" else torch.contiguous_format
        x = torch.randn(shape, device=self.device).contiguous(memory_format=layout)
        net = copy.deepcopy(model).to(self.device).to(memory_format=layout)
        return lambda: self.time_call(lambda: net(x))

    def isolated(self, kernels: Sequence[Kernel]) -> float:
        if self._empty is None:
            x = torch.zeros(1)
            self._empty = self.time_call(lambda: x)
        return self(kernels) - self._empty

    def close(self) -> None:
        """Nothing to release."""


#: The backends a calibration can time, by ``(name, device)``: the variants it measures each
#: kernel in. Eager PyTorch runs a model in NCHW or channels-last, whichever is faster
#: (:func:`sepconv.deploy.compile_for_inference`), so both are measured and a prediction takes
#: the faster total; the ONNX runtimes choose their layouts themselves.
TIMED_BACKENDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("eager", "cpu"): ("nchw", "nhwc"),
    ("onnxruntime", "cpu"): ("native",),
    ("openvino", "cpu"): ("native",),
    ("eager", "cuda"): ("nchw", "nhwc"),
}


def make_timers(backend: str, device: str, threads: int, profiler: bool = False) -> dict[str, Any]:
    """One timer per variant of ``TIMED_BACKENDS[(backend, device)]`` (``profiler``: ONNX
    Runtime's kernels timed by its profiler, :mod:`sepconv.predict.ort_profiler`)."""
    variants = TIMED_BACKENDS[(backend, device)]
    if backend in ("onnxruntime", "openvino"):
        return {variants[0]: OnnxTimer(backend, threads, profiled=profiler)}
    return {layout: TorchTimer(device, threads, layout) for layout in variants}
