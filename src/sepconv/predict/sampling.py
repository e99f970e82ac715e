"""Where a calibration samples: kernels of random networks of the design space, and the
neighbours of the kernels it predicted worst (adaptive sampling, as nn-Meter's).

:class:`KernelPool` draws networks from :mod:`sepconv.predict.space` (every style, so that the
blocks of the newer families are covered too), extracts their kernels with the backend's
fusions and hands them out a few per network, never one already measured, those of the kernel
groups handed out least so far first (so that even a short calibration measures every group a
network has, its one stem conv and classifier included). Its first networks are inverted ones
of every activation and squeeze-excite style in turn, so that every group of the space is met
however short the calibration (a random draw may leave one out: hard-swish with EfficientNet's
SE is one inverted network in nine). Now and then a
standard or pointwise conv is handed out grouped (2, 4 or 8 groups), since no network of the
space has grouped convs. :func:`neighbours` perturbs a kernel's channels and map size a little,
which is where the next samples go when its prediction missed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

import numpy as np

from sepconv.predict.kernels import Kernel, extract_kernels
from sepconv.predict.regression import group_key
from sepconv.predict.space import ACTS, SE_KINDS, STYLES, SEKind, Style, sample_network

__all__ = ["KernelPool", "neighbours", "resized"]

# Kernels taken from one drawn network before the next is drawn: spreads samples over networks.
PER_NETWORK = 12
# Share of the standard and pointwise convs handed out grouped instead.
GROUPED_SHARE = 0.15


def _out_side(side: int, kernel: Kernel) -> int:
    reach = kernel.dilation * (kernel.kernel_size - 1) + 1
    return (side + 2 * kernel.padding - reach) // kernel.stride + 1


def resized(
    kernel: Kernel, *, cin: int | None = None, cout: int | None = None, side: int | None = None
) -> Kernel | None:
    """``kernel`` with other input channels, output channels or input side (``None``: keep),
    its other shapes made consistent; ``None`` when no such kernel exists."""
    shape = kernel.inputs[0]
    n = shape[0]
    c_in = cin or shape[1]
    if kernel.kind == "linear":
        c_out = cout or kernel.output[1]
        return replace(kernel, inputs=((n, c_in),), output=(n, c_out)) if c_in > 0 else None
    h = side or shape[2]
    if kernel.kind == "conv":
        depthwise = kernel.conv_type == "depthwise"
        c_out = c_in * (kernel.output[1] // shape[1]) if depthwise else (cout or kernel.output[1])
        groups = c_in if depthwise else kernel.groups
        if c_in % groups or c_out % groups or c_in < 1 or c_out < 1:
            return None
        oh = _out_side(h, kernel)
        if oh < 1:
            return None
        out = (n, c_out, oh, oh)
        inputs = ((n, c_in, h, h), out) if kernel.add else ((n, c_in, h, h),)
        return replace(kernel, inputs=inputs, output=out, groups=groups)
    if c_in < 1 or h < 1:
        return None
    full = (n, c_in, h, h)
    if kernel.kind in ("pool",):
        return replace(kernel, inputs=(full,), output=(n, c_in, 1, 1))
    if kernel.kind == "mul" and kernel.inputs[1] != kernel.inputs[0]:
        return replace(kernel, inputs=(full, (n, c_in, 1, 1)), output=full)
    if kernel.kind == "se" and kernel.hidden > c_in:
        return None
    return replace(kernel, inputs=tuple(full for _ in kernel.inputs), output=full)


def neighbours(kernel: Kernel, rng: np.random.Generator, count: int = 3) -> list[Kernel]:
    """Up to ``count`` kernels near ``kernel``: channels +-8 or +-16, or the map 20% larger
    or smaller (the steps by which the family's widths and resolutions differ)."""
    found: list[Kernel] = []
    shape = kernel.inputs[0]
    for _ in range(4 * count):
        move = rng.integers(3)
        step = int(rng.choice((-16, -8, 8, 16)))
        if move == 0:
            candidate = resized(kernel, cin=shape[1] + step)
        elif move == 1 and kernel.kind in ("conv", "linear"):
            candidate = resized(kernel, cout=kernel.output[1] + step)
        elif len(shape) == 4 and shape[2] > 1:
            side = max(1, round(shape[2] * float(rng.choice((0.8, 1.25)))))
            candidate = resized(kernel, side=side)
        else:
            continue
        if candidate is not None and candidate != kernel and candidate not in found:
            found.append(candidate)
        if len(found) == count:
            break
    return found


class KernelPool:
    """Kernels of random networks, handed out a few per network, each at most once.

    Args:
        rng: The random generator.
        fusions: The backend's fused pairs (the kernels it really runs).
        batch_sizes: Batch sizes to draw networks at (the first drawn 3 times as often).
        styles: The styles of :mod:`sepconv.predict.space` to draw from.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        fusions: Collection[str],
        batch_sizes: Sequence[int] = (1,),
        styles: tuple[Style, ...] = STYLES,
    ) -> None:
        self.rng = rng
        self.fusions = frozenset(fusions)
        self.batch_sizes = tuple(batch_sizes)
        self.styles = styles
        self.seen: set[Kernel] = set()
        self.counts: dict[tuple[object, ...], int] = {}
        self._buffer: list[Kernel] = []
        # Every activation with each SE style, one network each, first (SE-less blocks too:
        # a fifth of an SE network's blocks have none).
        self._first: list[tuple[str, SEKind]] = (
            [(act, se) for se in SE_KINDS if se for act in ACTS] if "inverted" in styles else []
        )

    def _refill(self) -> None:
        if self._first:
            act, se_kind = self._first.pop(0)
            spec = sample_network(self.rng, ("inverted",), act=act, se_kind=se_kind)
        else:
            spec = sample_network(self.rng, self.styles)
        weights = np.array([3.0] + [1.0] * (len(self.batch_sizes) - 1))
        batch = self.batch_sizes[int(self.rng.choice(len(weights), p=weights / weights.sum()))]
        model = spec.build()
        shape = (batch, 3, spec.resolution, spec.resolution)
        fresh = [k for k in dict.fromkeys(extract_kernels(model, shape, self.fusions))]
        fresh = [self._maybe_grouped(replace(k, layer="")) for k in fresh]
        fresh = [k for k in fresh if k not in self.seen]
        jitter = self.rng.random(len(fresh))
        order = sorted(
            range(len(fresh)), key=lambda i: (self.counts.get(group_key(fresh[i]), 0), jitter[i])
        )
        # Popped from the end: the least-sampled groups go last into the buffer.
        self._buffer.extend(fresh[i] for i in reversed(order[:PER_NETWORK]))

    def _maybe_grouped(self, kernel: Kernel) -> Kernel:
        if kernel.kind != "conv" or kernel.conv_type not in ("standard", "pointwise"):
            return kernel
        if self.rng.random() >= GROUPED_SHARE:
            return kernel
        groups = int(self.rng.choice((2, 4, 8)))
        cin, cout = kernel.inputs[0][1], kernel.output[1]
        if cin % groups or cout % groups:
            return kernel
        return replace(kernel, groups=groups)

    def draw(self, count: int) -> list[Kernel]:
        """``count`` kernels not handed out before (marked as seen)."""
        out: list[Kernel] = []
        while len(out) < count:
            if not self._buffer:
                self._refill()
                continue
            kernel = self._buffer.pop()
            if kernel not in self.seen:
                self.mark([kernel])
                out.append(kernel)
        return out

    def mark(self, kernels: Sequence[Kernel]) -> None:
        """Count ``kernels`` as handed out (neighbours measured outside the pool)."""
        for kernel in kernels:
            if kernel not in self.seen:
                self.seen.add(kernel)
                key = group_key(kernel)
                self.counts[key] = self.counts.get(key, 0) + 1
