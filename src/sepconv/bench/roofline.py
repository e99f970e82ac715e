"""Machine ceilings measured on the spot, and layers placed on the roofline.

The roofline model (Williams, Waterman & Patterson, "Roofline: an insightful visual performance
model", CACM 2009) bounds a kernel's attainable rate by ``min(P, B * I)``: ``P`` the compute
peak, ``B`` the memory bandwidth and ``I`` the arithmetic intensity (FLOPs per byte moved).
Kernels left of the ridge point ``P / B`` are memory-bound, those right of it compute-bound.
Both ceilings come from measurement here: a large matrix product for ``P`` and a large copy for
``B``, timed by the same harness as the layers. A ceiling is a maximum, so it is taken from the
fastest timed block, not the median: on a shared machine the median of a 10-block run drifts
below what the hardware attains. FLOPs are 2 x MACs throughout.

On a GPU the same three measurements run on the device itself, timed with CUDA events: an fp32
matmul (TF32 as PyTorch is configured), a bf16 matmul (the tensor-core peak mixed-precision
models can reach) and a device-to-device copy of a buffer far larger than the L2 cache.

A layer timed over and over keeps its working set (weights, input and output) in the last-level
cache when it fits there, and then beats the DRAM roof honestly. So a second memory ceiling is
measured: the copy rate of a buffer that fits in that cache (its size read from the operating
system, or the GPU's L2 size). :func:`place` holds each layer against the roof of the level its
bytes fit in, and says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from sepconv.bench.timing import Timing, measure
from sepconv.utils.devices import check_device
from sepconv.utils.validation import invalid


@dataclass(frozen=True)
class Ceilings:
    """Measured compute peak and memory bandwidth of one device at one thread count.

    Attributes:
        peak_gflops: Attainable compute, GFLOP/s (FLOP = 2 x MAC), from a square matmul.
        bandwidth_gbs: Attainable memory bandwidth, GB/s (1e9 bytes), from a large copy.
        threads: Intra-op threads used for both measurements.
        dtype: The element type of the compute peak (``"float32"``…).
        device: Where both were measured (``"cpu"``, ``"cuda:0"``…).
        bf16_peak_gflops: On CUDA, the bf16 matmul peak as well (``None`` elsewhere); the
            roofline itself uses ``peak_gflops``.
        cache_bytes: Size of the last-level cache (``None``: unknown, no cache roof).
        cache_bandwidth_gbs: Copy rate of a buffer that fits in it, GB/s.
    """

    peak_gflops: float
    bandwidth_gbs: float
    threads: int
    dtype: str
    device: str = "cpu"
    bf16_peak_gflops: float | None = None
    cache_bytes: int | None = None
    cache_bandwidth_gbs: float | None = None

    @property
    def ridge(self) -> float:
        """Ridge-point intensity ``P / B`` in FLOP/byte: the boundary between the two bounds."""
        return self.peak_gflops / self.bandwidth_gbs

    def level(self, bytes_moved: float) -> Literal["dram", "cache"]:
        """The memory level a kernel moving ``bytes_moved`` bytes runs from when repeated:
        ``"cache"`` when they fit in the last-level cache (and its roof was measured)."""
        if self.cache_bytes is None or self.cache_bandwidth_gbs is None:
            return "dram"
        return "cache" if bytes_moved <= self.cache_bytes else "dram"

    def bandwidth(self, level: Literal["dram", "cache"] = "dram") -> float:
        """The memory ceiling of ``level`` in GB/s."""
        if level == "cache" and self.cache_bandwidth_gbs is not None:
            return self.cache_bandwidth_gbs
        return self.bandwidth_gbs

    def attainable_gflops(
        self, intensity: float, level: Literal["dram", "cache"] = "dram"
    ) -> float:
        """Roofline bound ``min(P, B * I)`` in GFLOP/s at ``intensity`` FLOP/byte, with the
        bandwidth ``B`` of memory ``level``."""
        return min(self.peak_gflops, self.bandwidth(level) * intensity)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, including the ridge point."""
        return {**asdict(self), "ridge_flop_per_byte": self.ridge}


def measure_peak_gflops(
    *,
    size: int = 2048,
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[float, Timing]:
    """Measure the compute ceiling: GFLOP/s of a ``size x size`` matrix product.

    A large square matmul is the most compute-dense kernel the BLAS offers (intensity grows with
    ``size``), so its rate is as close to the machine's peak as software gets.

    Returns:
        ``(GFLOP/s from the fastest block, the timing)``; the product has ``2 * size**3`` FLOPs.
    """
    dev = check_device(device)
    a = torch.randn(size, size, dtype=dtype, device=dev)
    b = torch.randn(size, size, dtype=dtype, device=dev)
    out = torch.empty(size, size, dtype=dtype, device=dev)
    timing = measure(
        lambda: torch.mm(a, b, out=out), warmup=2, repeats=10, threads=threads, device=dev
    )
    return 2 * size**3 / min(timing.samples_s) / 1e9, timing


def measure_bandwidth_gbs(
    *, megabytes: int = 128, threads: int | None = None, device: torch.device | str = "cpu"
) -> tuple[float, Timing]:
    """Measure the memory ceiling: GB/s of copying a buffer far larger than the caches.

    A copy reads and writes each byte once, so ``2 * bytes`` cross the memory bus per call.

    Returns:
        ``(GB/s from the fastest block, the timing)``.
    """
    dev = check_device(device)
    numel = megabytes * 2**20 // 4
    src = torch.ones(numel, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), warmup=2, repeats=10, threads=threads, device=dev)
    return 2 * src.nbytes / min(timing.samples_s) / 1e9, timing


def last_level_cache_bytes(device: torch.device | str = "cpu") -> int | None:
    """Size of the last-level cache in bytes: the GPU's L2, or on Linux the highest cache level
    the operating system lists for CPU 0 (``None`` where it says nothing)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        size = int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0))
        return size or None
    best: tuple[int, int] | None = None
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit() and (best is None or level > best[0]):
            best = (level, int(digits) * scale)
    return None if best is None else best[1]


def measure_ceilings(
    *,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Ceilings:
    """Measure both ceilings at ``threads`` intra-op threads, on ``device``.

    On CUDA the matmul is 8192 x 8192 and the copy 1 GiB (an H100's 50 MB L2 would hold a
    128 MB copy's reads long enough to flatter it), and the bf16 peak is measured too.

    Example:
        >>> c = measure_ceilings(threads=1)  # doctest: +SKIP
        >>> c.ridge  # FLOP/byte; a few tens on a desktop CPU  # doctest: +SKIP
    """
    dev = check_device(device)
    cuda = dev.type == "cuda"
    size, megabytes = (8192, 1024) if cuda else (2048, 128)
    peak, timing = measure_peak_gflops(size=size, dtype=dtype, threads=threads, device=dev)
    bandwidth, _ = measure_bandwidth_gbs(megabytes=megabytes, threads=threads, device=dev)
    bf16 = None
    if cuda:
        bf16, _ = measure_peak_gflops(size=size, dtype=torch.bfloat16, device=dev)
    cache = last_level_cache_bytes(dev)
    cache_bandwidth = None
    if cache is not None and cache >= 2**20:
        # Source and destination together fill half the cache: both stay in it between calls.
        cache_bandwidth, _ = measure_bandwidth_gbs(
            megabytes=max(1, cache // 4 // 2**20), threads=threads, device=dev
        )
    return Ceilings(
        peak,
        bandwidth,
        timing.threads,
        str(dtype).removeprefix("torch."),
        device=str(dev),
        bf16_peak_gflops=bf16,
        cache_bytes=cache if cache_bandwidth is not None else None,
        cache_bandwidth_gbs=cache_bandwidth,
    )


@dataclass(frozen=True)
class RooflinePoint:
    """One kernel on the roofline.

    Attributes:
        intensity: FLOPs per byte moved (FLOP/byte).
        achieved_gflops: FLOPs / measured time, GFLOP/s.
        bound: ``"memory"`` left of the ridge of its level, ``"compute"`` right of it.
        fraction_of_bound: Achieved rate / attainable rate at this intensity on the roof of its
            level (1.0 = on the roof).
        level: ``"cache"`` when the kernel's bytes fit in the last-level cache (held against
            the cache roof), else ``"dram"``.
    """

    intensity: float
    achieved_gflops: float
    bound: Literal["memory", "compute"]
    fraction_of_bound: float
    level: Literal["dram", "cache"] = "dram"

    @property
    def above_roof(self) -> bool:
        """Whether the kernel ran faster than its roof allows: timing noise, or a working set
        held in a cache closer than the level measured (e.g. L1/L2 below the last level)."""
        return self.fraction_of_bound > 1.0


def place(flops: float, bytes_moved: float, seconds: float, ceilings: Ceilings) -> RooflinePoint:
    """Place a kernel with ``flops`` FLOPs and ``bytes_moved`` bytes, taking ``seconds``, on the
    roof of the memory level its bytes fit in (:meth:`Ceilings.level`).

    Example:
        >>> c = Ceilings(peak_gflops=100.0, bandwidth_gbs=10.0, threads=1, dtype="float32")
        >>> p = place(flops=2e6, bytes_moved=1e6, seconds=1e-3, ceilings=c)
        >>> p.bound, p.intensity, p.achieved_gflops, p.fraction_of_bound
        ('memory', 2.0, 2.0, 0.1)
    """
    for name, value in (("flops", flops), ("bytes_moved", bytes_moved), ("seconds", seconds)):
        if not value > 0:
            raise invalid(name, "a positive number", value)
    intensity = flops / bytes_moved
    achieved = flops / seconds / 1e9
    level = ceilings.level(bytes_moved)
    ridge = ceilings.peak_gflops / ceilings.bandwidth(level)
    return RooflinePoint(
        intensity=intensity,
        achieved_gflops=achieved,
        bound="memory" if intensity < ridge else "compute",
        fraction_of_bound=achieved / ceilings.attainable_gflops(intensity, level),
        level=level,
    )
