"""Whole-model latency and throughput over batch size, input size, dtype, memory format and mode.

Every point is one call of :func:`sepconv.bench.timing.measure` on a fresh random input, with the
model in ``eval()`` mode, converted to the requested dtype and memory format (and compiled, for
``compile=True``) before warm-up, so conversion and compilation are never timed.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch
from torch import nn
from tqdm import tqdm

from sepconv.bench.timing import Timing, bf16_native, measure
from sepconv.utils.devices import check_device
from sepconv.utils.validation import invalid, positive_int

DTYPES: Final[dict[str, torch.dtype]] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# fp16 only on CUDA: a CPU has no fp16 convolution kernels worth timing (PyTorch converts).
CPU_DTYPES: Final[tuple[str, ...]] = ("fp32", "bf16")


def dtypes_for(device: torch.device) -> tuple[str, ...]:
    """The dtypes a latency point may use on ``device``: fp16 only on CUDA."""
    return tuple(DTYPES) if device.type == "cuda" else CPU_DTYPES


@dataclass(frozen=True)
class LatencyPoint:
    """One measured configuration of a model.

    Attributes:
        batch: Images per call ``N``.
        input_size: Square input side ``H = W``.
        dtype: ``"fp32"``, ``"bf16"`` or (CUDA only) ``"fp16"``.
        channels_last: Whether model and input used ``torch.channels_last`` (NHWC) memory.
        compiled: Whether the model ran through :func:`torch.compile` (default inductor backend).
        timing: Per-call timing (CUDA events around each block on a GPU).
        device: Where it ran (``"cpu"``, ``"cuda:0"``…).
    """

    batch: int
    input_size: int
    dtype: str
    channels_last: bool
    compiled: bool
    timing: Timing
    device: str = "cpu"

    @property
    def images_per_s(self) -> float:
        """Throughput: ``batch / median latency``."""
        return self.batch / self.timing.median_s

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (samples included, so statistics can be recomputed)."""
        return {
            "batch": self.batch,
            "input_size": self.input_size,
            "dtype": self.dtype,
            "channels_last": self.channels_last,
            "compiled": self.compiled,
            "device": self.device,
            "images_per_s": self.images_per_s,
            **self.timing.to_dict(),
        }


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise invalid(name, f"one of {list(choices)}", value)


def _prepare(
    model: nn.Module,
    dtype: torch.dtype,
    channels_last: bool,
    compiled: bool,
    device: torch.device,
) -> nn.Module:
    # A copy, so the caller's model keeps its dtype, device and memory format between points.
    prepared = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    if compiled:
        return torch.compile(prepared)  # type: ignore[return-value]
    return prepared


def measure_latency(
    model: nn.Module,
    *,
    batch: int = 1,
    input_size: int = 224,
    in_channels: int = 3,
    dtype: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    max_time_s: float | None = None,
    device: torch.device | str = "cpu",
) -> LatencyPoint:
    """Measure the forward latency of ``model`` on a ``(batch, in_channels, H, H)`` input.

    Args:
        model: Any image model; it is copied, put in ``eval()`` mode and converted, never changed.
        batch: Batch size ``N``.
        input_size: Input side ``H = W``.
        in_channels: Input channels.
        dtype: ``"fp32"``, ``"bf16"`` (bf16 on a CPU without native bf16 measures emulation;
            see :func:`sepconv.bench.timing.bf16_native`) or, on CUDA only, ``"fp16"``. The
            model and input are cast to it (no autocast).
        channels_last: Use NHWC memory for weights and input.
        compile: Run through :func:`torch.compile`; compilation happens during warm-up.
        threads: Intra-op threads to pin (``None``: PyTorch's current setting).
        warmup: Untimed calls first.
        repeats: Timed blocks.
        max_time_s: Optional time budget for the timed blocks (see :func:`measure`).
        device: ``"cpu"`` or a CUDA device; on CUDA each timed block is bracketed by CUDA
            events and synchronised, so queued kernels are counted.

    Returns:
        A :class:`LatencyPoint`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> point = measure_latency(net, batch=2, input_size=32, repeats=3)
        >>> point.batch, point.timing.median_s > 0
        (2, True)
    """
    dev = check_device(device)
    _check_choice("dtype", dtype, list(dtypes_for(dev)))
    for name, value in (("batch", batch), ("input_size", input_size), ("in_channels", in_channels)):
        positive_int(name, value)
    prepared = _prepare(model, DTYPES[dtype], channels_last, compile, dev)
    x = torch.randn(batch, in_channels, input_size, input_size, dtype=DTYPES[dtype], device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    timing = measure(
        lambda: prepared(x),
        warmup=warmup,
        repeats=repeats,
        max_time_s=max_time_s,
        threads=threads,
        device=dev,
    )
    return LatencyPoint(batch, input_size, dtype, channels_last, compile, timing, str(dev))


def default_dtypes(device: torch.device | str = "cpu") -> tuple[str, ...]:
    """On CUDA ``("fp32", "bf16", "fp16")``; on a CPU ``("fp32", "bf16")`` where it has native
    bf16, else ``("fp32",)``."""
    if torch.device(device).type == "cuda":
        return tuple(DTYPES)
    return ("fp32", "bf16") if bf16_native() else ("fp32",)


def benchmark(
    model: nn.Module,
    *,
    batches: Sequence[int] = (1,),
    input_sizes: Sequence[int] = (224,),
    dtypes: Sequence[str] | None = None,
    channels_last: Sequence[bool] = (False,),
    compile: Sequence[bool] = (False,),
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    max_time_s: float | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> list[LatencyPoint]:
    """Measure every combination of the given settings, with a tqdm progress bar.

    Args:
        model: The model (never modified).
        batches, input_sizes: Values of ``batch`` and ``input_size`` to cover.
        dtypes: Values of ``dtype``; default :func:`default_dtypes`.
        channels_last, compile: Memory formats and execution modes to cover.
        threads, warmup, repeats, max_time_s: As in :func:`measure_latency`, for every point.
        progress: Show the progress bar.
        device: ``"cpu"`` or a CUDA device (checked to exist before any work).

    Returns:
        One :class:`LatencyPoint` per combination, in ``itertools.product`` order.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3))
        >>> points = benchmark(
        ...     net, batches=(1, 2), input_sizes=(16,), dtypes=("fp32",), repeats=3, progress=False
        ... )
        >>> [p.batch for p in points]
        [1, 2]
    """
    dev = check_device(device)
    dtypes = default_dtypes(dev) if dtypes is None else dtypes
    for dtype in dtypes:
        _check_choice("dtypes", dtype, list(dtypes_for(dev)))
    # Every value up front, as the CLI checks its flags: not after the first points are timed.
    for name, values in (("batches", batches), ("input_sizes", input_sizes)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise invalid(name, "a non-empty sequence of positive integers", values)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                expected = "a sequence of positive integers"
                raise invalid(name, expected, value, note=f" in {values!r}")
    grid = list(itertools.product(batches, input_sizes, dtypes, channels_last, compile))
    return [
        measure_latency(
            model,
            batch=batch,
            input_size=size,
            dtype=dtype,
            channels_last=cl,
            compile=comp,
            threads=threads,
            warmup=warmup,
            repeats=repeats,
            max_time_s=max_time_s,
            device=dev,
        )
        for batch, size, dtype, cl, comp in tqdm(grid, desc="latency", disable=not progress)
    ]
