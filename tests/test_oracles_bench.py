"""Benchmarking checked by what the model actually receives and by independent timings.

A recording model notes the dtype and memory format of every input it is given and the dtype
and format of its own weights, so a sweep that labels a point bf16 or channels_last but runs
fp32 / NCHW fails. The roofline ceilings are checked twice: as arithmetic (the rate reported is
``2 n^3 / t`` and ``2 bytes / t`` of the times the harness measured) and against a matmul and a
copy timed here with ``time.perf_counter``, within a generous factor.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable

import pytest
import torch
from torch import nn

from sepconv.bench import roofline
from sepconv.bench import timing as timing_module
from sepconv.bench.latency import benchmark, measure_latency
from sepconv.bench.roofline import Ceilings, measure_ceilings, place
from sepconv.bench.timing import Timing

# What the recording model saw: (input dtype, input channels_last, weight dtype, weight
# channels_last). A module-level list, because the benchmark deep-copies the model it is given.
SEEN: list[tuple[torch.dtype, bool, torch.dtype, bool]] = []


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight
        SEEN.append(
            (
                x.dtype,
                x.is_contiguous(memory_format=torch.channels_last),
                weight.dtype,
                weight.is_contiguous(memory_format=torch.channels_last),
            )
        )
        return self.conv(x)


def _as_seen(dtype: str, channels_last: bool) -> tuple[torch.dtype, bool, torch.dtype, bool]:
    wanted = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    return (wanted, channels_last, wanted, channels_last)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_measure_latency_runs_the_requested_dtype_and_layout(
    dtype: str, channels_last: bool
) -> None:
    SEEN.clear()
    model = Recorder()
    point = measure_latency(
        model,
        batch=2,
        input_size=8,
        dtype=dtype,
        channels_last=channels_last,
        warmup=1,
        repeats=3,
        threads=1,
    )
    assert (point.dtype, point.channels_last) == (dtype, channels_last)
    # 2x3x8x8 in NCHW is not channels_last-contiguous, and the 4x3x3x3 weight neither
    assert SEEN and set(SEEN) == {_as_seen(dtype, channels_last)}
    # the caller's model is left as it was
    assert model.conv.weight.dtype == torch.float32
    assert not model.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_benchmark_applies_every_grid_point_in_product_order() -> None:
    SEEN.clear()
    points = benchmark(
        Recorder(),
        batches=(1,),
        input_sizes=(8,),
        dtypes=("fp32", "bf16"),
        channels_last=(False, True),
        warmup=1,
        repeats=3,
        threads=1,
        progress=False,
    )
    grid = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    assert [(p.dtype, p.channels_last) for p in points] == grid
    # the distinct configurations the model saw, in the order it saw them
    order: list[tuple[torch.dtype, bool, torch.dtype, bool]] = []
    for seen in SEEN:
        if not order or order[-1] != seen:
            order.append(seen)
    assert order == [_as_seen(d, cl) for d, cl in grid]


def test_ceilings_are_the_rates_of_the_times_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the harness by fixed times: the ceilings are then plain arithmetic."""
    calls: list[object] = []
    samples = (0.5, 0.25, 1.0)  # the fastest block gives the ceiling

    def fake_measure(fn: Callable[[], object], **kwargs: object) -> Timing:
        calls.append(fn())  # the matmul's output, then the copy's destination
        return Timing.from_samples(samples, threads=3, device="cpu")

    monkeypatch.setattr(roofline, "measure", fake_measure)
    cache = 8 * 2**20
    monkeypatch.setattr(roofline, "last_level_cache_bytes", lambda device: cache)
    ceilings = measure_ceilings(device="cpu")
    product, copied, cached = calls
    assert isinstance(product, torch.Tensor) and isinstance(copied, torch.Tensor)
    n = product.shape[0]
    assert product.shape == (n, n) and n >= 1024
    assert ceilings.peak_gflops == pytest.approx(2 * n**3 / 0.25 / 1e9, rel=1e-12)
    # a copy reads and writes every byte once
    nbytes = copied.numel() * copied.element_size()
    assert nbytes >= 64 * 2**20  # far larger than a CPU's caches
    assert ceilings.bandwidth_gbs == pytest.approx(2 * nbytes / 0.25 / 1e9, rel=1e-12)
    assert ceilings.ridge == pytest.approx(ceilings.peak_gflops / ceilings.bandwidth_gbs)
    assert (ceilings.threads, ceilings.dtype) == (3, "float32")
    # The cache roof: a copy whose source and destination together fit in the cache.
    cached_bytes = cached.numel() * cached.element_size()
    assert 2 * cached_bytes <= cache
    assert ceilings.cache_bytes == cache
    assert ceilings.cache_bandwidth_gbs == pytest.approx(2 * cached_bytes / 0.25 / 1e9, rel=1e-12)


def test_each_layer_is_held_against_the_roof_of_the_level_its_bytes_fit_in() -> None:
    c = Ceilings(
        peak_gflops=100.0, bandwidth_gbs=10.0, threads=1, dtype="float32",
        cache_bytes=1_000_000, cache_bandwidth_gbs=50.0,
    )  # fmt: skip
    # 1 MB at 1 FLOP/B in 0.1 ms: 10 GFLOP/s, which is the DRAM roof but a fifth of the cache's.
    fits = place(1e6, 1e6, 1e-4, c)
    assert (fits.level, fits.fraction_of_bound, fits.above_roof) == ("cache", 0.2, False)
    spills = place(2e6, 2e6, 2e-4, c)
    assert (spills.level, spills.fraction_of_bound) == ("dram", 1.0)
    # Against its own level's ridge (100 / 50 = 2 FLOP/B), 3 FLOP/B in cache is compute-bound,
    # while the same intensity from DRAM (ridge 10) is memory-bound.
    assert place(3e6, 1e6, 1e-3, c).bound == "compute"
    assert place(6e6, 2e6, 1e-3, c).bound == "memory"
    # Faster than the roof allows is said so.
    assert place(1e6, 1e6, 1e-5, c).above_roof
    # Without a measured cache roof every layer is held against DRAM.
    plain = Ceilings(peak_gflops=100.0, bandwidth_gbs=10.0, threads=1, dtype="float32")
    assert place(1e6, 1e6, 1e-4, plain).level == "dram"


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_ceilings_agree_with_an_independent_measurement() -> None:
    ceilings = measure_ceilings(threads=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = 1024
        a, b = torch.randn(n, n), torch.randn(n, n)
        flops = 2 * n**3 / _best_seconds(lambda: a @ b, 8) / 1e9
        src = torch.ones(16 * 2**20)  # 64 MiB
        dst = torch.empty_like(src)
        bandwidth = 2 * src.nbytes / _best_seconds(lambda: dst.copy_(src), 8) / 1e9
    finally:
        torch.set_num_threads(previous)
    # Generous bounds: the machine is shared, and both sides take their fastest run.
    assert 0.3 < ceilings.peak_gflops / flops < 3.0
    assert 0.3 < ceilings.bandwidth_gbs / bandwidth < 3.0
    assert ceilings.threads == 1


def test_measure_reports_per_call_times_of_a_known_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that every call advances by exactly 0.7 ms: blocks of several calls must
    still report 0.7 ms per call."""
    now = [0.0]

    def call() -> None:
        now[0] += 7e-4

    clock = types.SimpleNamespace(perf_counter=lambda: now[0], sleep=lambda s: None)
    monkeypatch.setattr(timing_module, "time", clock)
    result = timing_module.measure(call, warmup=2, repeats=5, min_block_s=2e-3, threads=1)
    assert result.calls_per_block == 3  # ceil(2 ms / 0.7 ms)
    assert len(result.samples_s) == 5
    assert result.samples_s == pytest.approx((7e-4,) * 5, rel=1e-9)
    assert result.median_s == pytest.approx(7e-4, rel=1e-9)
