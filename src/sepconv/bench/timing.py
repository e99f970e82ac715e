"""The one timing harness: warm-up, repeated blocks, median and interquartile range.

Every latency sepconv reports comes from :func:`measure`. It pins the intra-op thread count
(and reports it), runs under :func:`torch.inference_mode`, warms up, sizes a block of calls so
that one block is long enough for the clock, then times many blocks. On CUDA each block is
bracketed by CUDA events and followed by a synchronisation, so queued kernels are counted.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from sepconv.bench.allocator import allocator_state
from sepconv.utils.validation import invalid, positive_int, positive_number, thread_count

#: Interquartile range above this fraction of the median marks a timing as noisy
#: (:attr:`Timing.noisy`): on a quiet machine repeated blocks agree far better.
NOISY_SPREAD = 0.25


@dataclass(frozen=True)
class Timing:
    """Per-call wall times of one measured callable, with robust summary statistics.

    Attributes:
        samples_s: Per-call time of each timed block, in seconds (block time / ``calls_per_block``).
        calls_per_block: Calls averaged inside one block.
        threads: Intra-op threads PyTorch used while timing.
        device: Where the work ran (``"cpu"`` or ``"cuda:0"``, …).
        median_s: Median of ``samples_s``.
        q1_s: First quartile (25th percentile, linear interpolation) of ``samples_s``.
        q3_s: Third quartile (75th percentile) of ``samples_s``.
    """

    samples_s: tuple[float, ...]
    calls_per_block: int
    threads: int
    device: str
    median_s: float
    q1_s: float
    q3_s: float

    @classmethod
    def from_samples(
        cls, samples_s: Sequence[float], *, calls_per_block: int = 1, threads: int, device: str
    ) -> Timing:
        """Summarise per-call times: median and quartiles as ``numpy.percentile`` computes them.

        Example:
            >>> t = Timing.from_samples([4.0, 1.0, 3.0, 2.0, 5.0], threads=1, device="cpu")
            >>> (t.median_s, t.q1_s, t.q3_s, t.iqr_s)
            (3.0, 2.0, 4.0, 2.0)
        """
        if len(samples_s) == 0:
            raise invalid("samples_s", "at least one time", [])
        values = np.asarray(samples_s, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise invalid("samples_s", "finite non-negative seconds", list(samples_s))
        q1, median, q3 = np.percentile(values, [25.0, 50.0, 75.0])
        return cls(
            samples_s=tuple(float(v) for v in values),
            calls_per_block=calls_per_block,
            threads=threads,
            device=device,
            median_s=float(median),
            q1_s=float(q1),
            q3_s=float(q3),
        )

    @property
    def iqr_s(self) -> float:
        """Interquartile range ``q3 - q1`` in seconds: the spread that ignores outliers."""
        return self.q3_s - self.q1_s

    @property
    def median_ms(self) -> float:
        """Median per-call time in milliseconds."""
        return self.median_s * 1e3

    @property
    def iqr_ms(self) -> float:
        """Interquartile range in milliseconds."""
        return self.iqr_s * 1e3

    @property
    def spread(self) -> float:
        """The interquartile range as a fraction of the median (0 for a zero median)."""
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0

    @property
    def noisy(self) -> bool:
        """Whether the spread exceeds :data:`NOISY_SPREAD`: blocks of one measurement that
        differ this much mean something else was using the machine, and the median is not a
        figure to compare."""
        return self.spread > NOISY_SPREAD

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, including the derived milliseconds."""
        out = asdict(self)
        out["samples_s"] = list(self.samples_s)
        out.update(median_ms=self.median_ms, iqr_ms=self.iqr_ms)
        return out


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Set PyTorch's intra-op thread count for the block, restore it after; yield the count.

    Args:
        threads: Threads to use, or ``None`` to keep the current setting.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise invalid("threads", "a positive integer or None", threads)
        thread_count("threads", threads)
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _block_timer(device: torch.device) -> Callable[[Callable[[], object], int], float]:
    """Return ``time_block(fn, calls) -> seconds`` suited to ``device``."""
    if device.type == "cuda":

        def time_cuda(fn: Callable[[], object], calls: int) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3  # events report milliseconds

        return time_cuda

    def time_host(fn: Callable[[], object], calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start

    return time_host


# Pause that lets another runtime's spinning worker threads go idle before timing starts (see
# `measure`'s settle_s; benchmarks/settle.py measures the effect).
RUNTIME_SETTLE_S = 0.1


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeats: int = 20,
    min_block_s: float = 2e-3,
    max_time_s: float | None = None,
    threads: int | None = None,
    device: torch.device | str = "cpu",
    settle_s: float = 0.0,
) -> Timing:
    """Time ``fn()`` and return per-call statistics.

    The call is warmed up ``warmup`` times (allocator, caches, lazy initialisation, compiled
    kernels), then run in blocks of ``calls_per_block`` calls, sized from the last warm-up call
    so that a block lasts at least ``min_block_s``; each block gives one per-call sample. This is
    the blocked scheme of ``torch.utils.benchmark.Timer.blocked_autorange`` with a fixed number
    of blocks, so short and long callables both get ``repeats`` samples.

    Args:
        fn: The work to time; called with no arguments, result ignored.
        warmup: Untimed calls before measuring (>= 1).
        repeats: Timed blocks (samples); at least 3 are always taken.
        min_block_s: Shortest block, so timer resolution and loop overhead stay negligible.
        max_time_s: Optional budget for the timed blocks: once spent, stop early (but never
            with fewer than 3 samples). Use it for slow models.
        threads: Intra-op threads to pin while timing (``None`` keeps the current count).
        device: Where ``fn`` runs; on CUDA, blocks are timed with CUDA events.
        settle_s: Seconds to sleep before the warm-up. When different runtimes are timed one
            after another, the worker threads of the previous one may still be spinning for
            work and take the cores: ONNX Runtime's intra-op pool slows an OpenVINO model
            timed right after it; :data:`RUNTIME_SETTLE_S` removes that
            (``python benchmarks/settle.py``, results/benchmarks/settle.md).

    Returns:
        A :class:`Timing` whose ``threads`` is the thread count actually in effect.

    Example:
        >>> x = torch.randn(64, 64)
        >>> t = measure(lambda: x @ x, warmup=1, repeats=5, threads=1)
        >>> len(t.samples_s), t.threads
        (5, 1)
    """
    positive_int("warmup", warmup)
    positive_int("repeats", repeats)
    positive_number("min_block_s", min_block_s)
    if max_time_s is not None:
        positive_number("max_time_s", max_time_s)
    if settle_s < 0:
        raise invalid("settle_s", ">= 0", settle_s)
    dev = torch.device(device)
    time_block = _block_timer(dev)
    time.sleep(settle_s)
    with pinned_threads(threads) as used_threads, torch.inference_mode():
        for _ in range(warmup - 1):
            fn()
        one_call = time_block(fn, 1)
        calls = max(1, math.ceil(min_block_s / max(one_call, 1e-9)))
        samples: list[float] = []
        spent = 0.0
        while len(samples) < max(repeats, 3):
            block = time_block(fn, calls)
            samples.append(block / calls)
            spent += block
            if max_time_s is not None and spent >= max_time_s and len(samples) >= 3:
                break
    return Timing.from_samples(
        samples, calls_per_block=calls, threads=used_threads, device=str(dev)
    )


def interleaved_order(count: int, round_index: int) -> list[int]:
    """The order in which ``count`` things are timed in round ``round_index`` of an interleaved
    comparison: a Williams design, balanced for the thing timed just before.

    A rotation of one fixed order leaves every item after the same other one in every round, so
    whatever one item leaves behind (a runtime's spinning threads, a cold cache) always lands on
    the same next one. Here the first round runs ``0, 1, n-1, 2, n-2, ...`` and round ``r`` adds
    ``r`` to each (mod ``n``); for an odd ``n``, rounds ``n .. 2n-1`` run those reversed. Over
    ``n`` rounds (``2n`` for an odd ``n``) every item is then timed right after every other
    one equally often, and in every position equally often.

    Example:
        >>> [interleaved_order(4, r) for r in range(4)]
        [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    positive_int("count", count)
    base = [0]
    low, high = 1, count - 1
    while len(base) < count:
        base.append(low)
        low += 1
        if len(base) < count:
            base.append(high)
            high -= 1
    order = [(i + round_index) % count for i in base]
    if count % 2 and (round_index // count) % 2:
        order.reverse()
    return order


def _cpu_model() -> str:
    """Best human-readable CPU name: /proc/cpuinfo on Linux, else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall through to what the platform module knows
    return platform.processor() or platform.machine()


def bf16_native() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware (AVX512-BF16 or AMX).

    Without it PyTorch still runs bf16, but by conversion, which measures the emulation rather
    than the model; sweeps therefore include bf16 by default only when this is true.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


# The instruction sets reduced precision depends on -> the /proc/cpuinfo flags that name them.
_FEATURES = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "bf16": ("avx512_bf16", "amx_bf16"),
    "AMX": ("amx_tile",),
}


def cpu_features() -> list[str] | None:
    """Which of AVX2, AVX-512, VNNI (int8 dot products), bf16 arithmetic and AMX this CPU has,
    from ``/proc/cpuinfo``'s flags; ``None`` where the OS does not list them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = (line for line in f if line.startswith("flags"))
            flags = next((line.split(":", 1)[1].split() for line in lines), None)
    except OSError:
        return None
    if flags is None:
        return None
    have = set(flags)
    return [name for name, names in _FEATURES.items() if have.intersection(names)]


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment(threads: int | None = None) -> dict[str, Any]:
    """Describe the machine a measurement ran on, for the header of every result file.

    Args:
        threads: The pinned thread count to report (default: PyTorch's current setting).
    """
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native(),
        "cpu_features": cpu_features(),
        "allocator": allocator_state(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **(gpu_environment() if torch.cuda.is_available() else {}),
    }


def _proc_driver_version() -> str | None:
    """The NVIDIA kernel module's version from ``/proc/driver/nvidia/version`` (Linux), or
    ``None``; e.g. ``"550.54.15"`` from "NVRM version: NVIDIA UNIX x86_64 Kernel Module
    550.54.15 ..."."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as file:
            first = file.readline()
    except OSError:
        return None
    words = first.split("Kernel Module", 1)[-1].split()
    return words[0] if "Kernel Module" in first and words else None


def gpu_environment() -> dict[str, Any]:
    """The GPU facts a CUDA result needs: name, memory, compute capability, CUDA runtime PyTorch
    was built with, cuDNN, and the driver version (from ``nvidia-smi``, when it is on PATH)."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    driver: str | None
    try:
        driver = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.split("\n")[0]
            .strip()
        )
    except (OSError, subprocess.SubprocessError):
        driver = _proc_driver_version()  # no nvidia-smi: the kernel module says it
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_driver": driver,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
