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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
    """

    peak_gflops: float
    bandwidth_gbs: float
    threads: int
    dtype: str
    device: str = "cpu"
    bf16_peak_gflops: float | None = None

    @property
    def ridge(self) -> float:
        """Ridge-point intensity ``P / B`` in FLOP/byte: the boundary between the two bounds."""
        return self.peak_gflops / self.bandwidth_gbs

    def attainable_gflops(self, intensity: float) -> float:
        """Roofline bound ``min(P, B * I)`` in GFLOP/s at ``intensity`` FLOP/byte."""
        return min(self.peak_gflops, self.bandwidth_gbs * intensity)

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
    return Ceilings(
        peak,
        bandwidth,
        timing.threads,
        str(dtype).removeprefix("torch."),
        device=str(dev),
        bf16_peak_gflops=bf16,
    )


@dataclass(frozen=True)
class RooflinePoint:
    """One kernel on the roofline.

    Attributes:
        intensity: FLOPs per byte moved (FLOP/byte).
        achieved_gflops: FLOPs / measured time, GFLOP/s.
        bound: ``"memory"`` left of the ridge, ``"compute"`` right of it.
        fraction_of_bound: Achieved rate / attainable rate at this intensity (1.0 = on the roof).
    """

    intensity: float
    achieved_gflops: float
    bound: Literal["memory", "compute"]
    fraction_of_bound: float


def place(flops: float, bytes_moved: float, seconds: float, ceilings: Ceilings) -> RooflinePoint:
    """Place a kernel with ``flops`` FLOPs and ``bytes_moved`` bytes, taking ``seconds``.

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
    return RooflinePoint(
        intensity=intensity,
        achieved_gflops=achieved,
        bound="memory" if intensity < ceilings.ridge else "compute",
        fraction_of_bound=achieved / ceilings.attainable_gflops(intensity),
    )
