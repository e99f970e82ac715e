"""How ``gpu_inference.py`` measures one contender: pipelined throughput, single-request
latency and GPU memory.

- **Throughput** (``median_ms``, ``iqr_ms``, ``runs``): :func:`sepconv.bench.measure` on the
  contender's call with the input already on the device, calls queued back to back (the host
  runs ahead of the GPU, as a serving loop does) and timed with CUDA events. ``runs`` separate
  measurements (warm-up, then ``repeats`` timed blocks each); ``runs`` lists each one's median,
  ``median_ms``/``iqr_ms`` are the median and interquartile range of all their blocks together.
- **Latency** (``p50_ms``, ``p99_ms``): one request at a time, timed on the host clock from a
  batch in pinned host memory to the logits back on the host: the host-to-device copy, the call
  and the device-to-host copy (which waits for the GPU), nothing queued behind it.
- **Memory** (MiB, CUDA only): ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` during the
  timed calls less what was allocated before the contender was built (its weights, buffers and
  activations; a CUDA graph's activations live in its private pool, allocated at capture, and
  show in ``held_mb`` instead); ``held_mb`` is the growth of ``torch.cuda.memory_reserved``
  (after releasing the allocator's free blocks) from before the build to after the calls: what
  the contender keeps on the GPU, graph pools included; ``build_peak_mb`` is the peak during
  the build (with torch.compile's autotuning buffers).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sepconv.bench import measure

MIB = 2**20


def measure_contender(
    call: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    device: torch.device,
    *,
    runs: int,
    repeats: int,
    requests: int,
    request_budget_s: float,
) -> dict[str, Any]:
    """Throughput and latency of ``call`` on ``x`` (fp32 NCHW, CPU), ``runs`` times."""
    on_device = x.to(device)
    host = x.pin_memory() if device.type == "cuda" else x
    run_medians: list[float] = []
    samples: list[float] = []
    latencies: list[float] = []
    for _ in range(runs):
        timing = measure(lambda: call(on_device), warmup=3, repeats=repeats, device=device)
        run_medians.append(timing.median_ms)
        samples += [s * 1e3 for s in timing.samples_s]
        latencies += _latencies(call, host, device, requests, request_budget_s)
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    p50, p99 = np.percentile(latencies, [50, 99])
    return {
        "median_ms": float(median),
        "iqr_ms": float(q3 - q1),
        "runs": run_medians,
        "blocks": len(samples),
        "images_per_s": x.shape[0] / (median / 1e3),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "latency_samples": len(latencies),
    }


def _latencies(
    call: Callable[[torch.Tensor], torch.Tensor],
    host: torch.Tensor,
    device: torch.device,
    requests: int,
    budget_s: float,
) -> list[float]:
    """Milliseconds of ``requests`` single requests, fewer (but at least 10) once ``budget_s``
    is spent."""

    def request() -> float:
        start = time.perf_counter()
        call(host.to(device, non_blocking=True)).cpu()
        return (time.perf_counter() - start) * 1e3

    for _ in range(3):
        request()
    out: list[float] = []
    began = time.perf_counter()
    least = min(10, requests)
    while len(out) < requests and (len(out) < least or time.perf_counter() - began < budget_s):
        out.append(request())
    return out


class MemoryWatch:
    """The GPU memory one contender takes (module docstring); every figure ``None`` on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.allocated = self.reserved = 0
        self.build_peak: float | None = None

    def start(self) -> None:
        """Before the build: release what earlier contenders left, zero the peak."""
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.allocated = torch.cuda.memory_allocated()
            self.reserved = torch.cuda.memory_reserved()

    def built(self) -> None:
        """After the build: its peak, then the peak zeroed for the timed calls."""
        if self.cuda:
            torch.cuda.synchronize()
            self.build_peak = (torch.cuda.max_memory_allocated() - self.allocated) / MIB
            torch.cuda.reset_peak_memory_stats()

    def end(self) -> dict[str, float | None]:
        """After the timed calls: ``peak_mem_mb``, ``held_mb``, ``build_peak_mb``."""
        if not self.cuda:
            return {"peak_mem_mb": None, "held_mb": None, "build_peak_mb": None}
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - self.allocated) / MIB
        gc.collect()
        torch.cuda.empty_cache()
        held = (torch.cuda.memory_reserved() - self.reserved) / MIB
        return {"peak_mem_mb": peak, "held_mb": held, "build_peak_mb": self.build_peak}
