"""The standard-convolution twin of a separable layer or model, and how much it really costs.

The twin replaces every depthwise ``K x K`` conv -> pointwise 1x1 conv pair with one standard
``K x K`` conv of the pair's input and output channels, stride, padding and dilation; whatever ran
between the two (the depthwise norm, activation and squeeze-excite) goes, and what follows the
pointwise conv stays. Comparing the two answers the question the separable design poses: its
counted MAC saving (Howard et al., "MobileNets", 2017, eq. 5: ``1/C_out + 1/K^2``) against
the speed-up measured on this machine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from sepconv.analysis import analyze
from sepconv.bench.timing import Timing, measure
from sepconv.convert.twin import standard_twin
from sepconv.layers import DepthwiseSeparableConv2d
from sepconv.utils.devices import check_device
from sepconv.utils.validation import invalid


@dataclass(frozen=True)
class LayerSpec:
    """One convolution layer: channels, input size and kernel geometry.

    Attributes:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        size: Input side ``H = W``.
        kernel_size: ``K``.
        stride: Stride of the spatial (depthwise / standard) conv.
        dilation: Its dilation.
    """

    in_channels: int
    out_channels: int
    size: int
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1

    def __str__(self) -> str:
        return f"{self.in_channels}->{self.out_channels}@{self.size}"

    def separable(self) -> nn.Module:
        """The bare depthwise separable layer: depthwise conv then pointwise conv, no norm/act."""
        return DepthwiseSeparableConv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            dilation=self.dilation,
            norm=None,
            act=None,
        )

    def example(self, batch: int = 1) -> torch.Tensor:
        """A random input ``(batch, C_in, H, H)``."""
        return torch.randn(batch, self.in_channels, self.size, self.size)


@dataclass(frozen=True)
class TwinComparison:
    """A separable model or layer against its standard twin.

    Attributes:
        label: What was compared (a layer spec or model name).
        pairs: Depthwise+pointwise pairs replaced.
        separable_macs: Headline MACs of the separable version (:func:`sepconv.analyze`).
        standard_macs: Headline MACs of the twin.
        separable: Timing of the separable version.
        standard: Timing of the twin (same input, threads and memory format).
        channels_last: Memory format of both runs.
    """

    label: str
    pairs: int
    separable_macs: int
    standard_macs: int
    separable: Timing
    standard: Timing
    channels_last: bool

    @property
    def mac_ratio(self) -> float:
        """Theoretical speed-up: standard MACs / separable MACs."""
        return self.standard_macs / self.separable_macs

    @property
    def latency_ratio(self) -> float:
        """Measured speed-up: standard median time / separable median time."""
        return self.standard.median_s / self.separable.median_s

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "label": self.label,
            "pairs": self.pairs,
            "channels_last": self.channels_last,
            "separable_macs": self.separable_macs,
            "standard_macs": self.standard_macs,
            "mac_ratio": self.mac_ratio,
            "latency_ratio": self.latency_ratio,
            "separable": self.separable.to_dict(),
            "standard": self.standard.to_dict(),
        }


def compare_twin(
    model: nn.Module,
    example: torch.Tensor,
    *,
    label: str = "",
    channels_last: bool = False,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    device: torch.device | str = "cpu",
    separable_timing: Timing | None = None,
) -> TwinComparison:
    """Count and time ``model`` and its :func:`standard_twin` on ``example``.

    Args:
        model: The separable model or layer (put in ``eval()`` mode on a copy; not modified).
        example: The input, in NCHW; converted to channels_last with the models when asked.
        label: Name for the report (default: the model's class name).
        channels_last: Time both in ``torch.channels_last`` memory format.
        threads, warmup, repeats: Passed to :func:`sepconv.bench.timing.measure`.
        device: Where both are timed (``"cpu"`` or a CUDA device; CUDA-event timing there).
            The twin is built and counted on the CPU first.
        separable_timing: The timing of ``model`` itself on ``example`` when the caller has
            measured it already with the same settings: reused (one model, one figure), and
            only the twin is timed here.

    Raises:
        ValueError: If ``model`` has no depthwise+pointwise pair to replace.

    Example:
        >>> spec = LayerSpec(64, 128, 56)
        >>> cmp = compare_twin(spec.separable(), spec.example(), repeats=3)  # doctest: +SKIP
        >>> round(cmp.mac_ratio, 1)  # doctest: +SKIP
        8.4
    """
    dev = check_device(device)
    separable = copy.deepcopy(model).cpu().eval()
    example = example.cpu()
    twin, pairs = standard_twin(separable, example)
    if pairs == 0:
        raise invalid(
            "model",
            "a model with at least one depthwise conv followed by a pointwise conv",
            type(model).__name__,
            note=" with none",
        )
    macs = [analyze(m, tuple(example.shape)).macs for m in (separable, twin)]
    separable, twin = separable.to(dev), twin.to(dev)
    x = example.to(dev)
    if channels_last:
        separable, twin = (m.to(memory_format=torch.channels_last) for m in (separable, twin))
        x = x.contiguous(memory_format=torch.channels_last)
    timings = [
        timing
        if timing is not None
        else measure(partial(m, x), warmup=warmup, repeats=repeats, threads=threads, device=dev)
        for m, timing in ((separable, separable_timing), (twin, None))
    ]
    return TwinComparison(
        label=label or type(model).__name__,
        pairs=pairs,
        separable_macs=macs[0],
        standard_macs=macs[1],
        separable=timings[0],
        standard=timings[1],
        channels_last=channels_last,
    )
