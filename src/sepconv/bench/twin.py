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
from typing import Any, cast

import torch
from torch import nn

from sepconv.analysis import analyze
from sepconv.bench.capture import ModuleCall, capture
from sepconv.bench.timing import Timing, measure
from sepconv.layers import DepthwiseSeparableConv2d


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


def _is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == module.in_channels > 1
        and module.out_channels % module.in_channels == 0
    )


def _is_pointwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding == (0, 0)
    )


def _on_a_branch(calls: list[ModuleCall], dw: ModuleCall, pw: ModuleCall) -> bool:
    """Whether ``pw`` reads something other than what a module entered after ``dw`` received.

    A container entered after the depthwise conv (the ``ConvNormAct`` of a pointwise conv) passes
    its input straight to the conv; a squeeze-excite instead feeds its convs a pooled branch,
    which at 1x1 resolution has the depthwise output's shape but is a different tensor.
    """
    return any(
        dw.end < c.start < pw.start and pw.end < c.end and c.input_ptr != pw.input_ptr
        for c in calls
    )


def _find_pairs(calls: list[ModuleCall]) -> list[tuple[ModuleCall, ModuleCall, list[ModuleCall]]]:
    """Each depthwise call, the pointwise call that consumes its output, and what ran between.

    The pointwise conv is the first one whose input has the depthwise output's shape and that
    does not read a branch (see :func:`_on_a_branch`); everything
    that ran wholly between the two must keep that shape (norm, activation, squeeze-excite),
    else the pair is not a separable conv and is left alone. Modules run more than once are
    shared and left alone too.
    """
    pairs = []
    for i, dw in enumerate(calls):
        if not (_is_depthwise(dw.module) and dw.calls == 1):
            continue
        pw = next(
            (
                c
                for c in calls[i + 1 :]
                if c.is_leaf
                and _is_pointwise(c.module)
                and c.input_shapes[:1] == (dw.output_shape,)
                and not _on_a_branch(calls, dw, c)
            ),
            None,
        )
        if pw is None or pw.calls != 1:
            continue
        between = [c for c in calls if dw.end < c.start and c.end < pw.start]
        # Keep only the outermost modules: replacing a parent replaces its children.
        outer = [
            c for c in between if not any(o.start < c.start and c.end < o.end for o in between)
        ]
        if all(c.calls == 1 and c.output_shape == dw.output_shape for c in outer):
            pairs.append((dw, pw, outer))
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def standard_twin(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """Return a copy of ``model`` with every depthwise+pointwise pair made one standard conv.

    Pairs are found from one forward pass on ``example`` (module order and shapes), so any
    model works: sepconv blocks, torchvision and timm models, user code. The new conv has the
    depthwise conv's kernel, stride, padding and dilation, its input channels, the pointwise
    conv's output channels, and a bias if the pointwise conv had one; it is randomly initialised.
    Ancestors of the pointwise conv that record ``in_channels`` for input checks (``ConvNormAct``)
    are updated to the channels they now receive.

    Args:
        model: The separable model (not modified).
        example: An input it accepts, e.g. ``torch.randn(1, 3, 224, 224)``.

    Returns:
        ``(twin, number of pairs replaced)``.

    Example:
        >>> x = torch.randn(1, 32, 16, 16)
        >>> twin, pairs = standard_twin(LayerSpec(32, 64, 16).separable(), x)
        >>> pairs, twin(x).shape
        (1, torch.Size([1, 64, 16, 16]))
    """
    twin = copy.deepcopy(model)
    calls = capture(twin, example, keep_inputs=False)
    pairs = _find_pairs(calls)
    for dw, pw, between in pairs:
        # _find_pairs only pairs nn.Conv2d modules.
        dw_conv, pw_conv = cast(nn.Conv2d, dw.module), cast(nn.Conv2d, pw.module)
        standard = nn.Conv2d(
            dw_conv.in_channels,
            pw_conv.out_channels,
            dw_conv.kernel_size,  # type: ignore[arg-type]
            stride=dw_conv.stride,  # type: ignore[arg-type]
            padding=dw_conv.padding,  # type: ignore[arg-type]
            dilation=dw_conv.dilation,  # type: ignore[arg-type]
            bias=pw_conv.bias is not None,
        )
        _set(twin, dw.name, standard)
        _set(twin, pw.name, nn.Identity())
        for call in between:
            _set(twin, call.name, nn.Identity())
        for ancestor in _ancestors(pw.name):
            owner = twin.get_submodule(ancestor)
            if ancestor not in _ancestors(dw.name) and hasattr(owner, "in_channels"):
                setattr(owner, "in_channels", pw_conv.out_channels)  # noqa: B010 (mypy: Module)
    return twin, len(pairs)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


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
) -> TwinComparison:
    """Count and time ``model`` and its :func:`standard_twin` on ``example``.

    Args:
        model: The separable model or layer (put in ``eval()`` mode on a copy; not modified).
        example: The input, in NCHW; converted to channels_last with the models when asked.
        label: Name for the report (default: the model's class name).
        channels_last: Time both in ``torch.channels_last`` memory format.
        threads, warmup, repeats: Passed to :func:`sepconv.bench.timing.measure`.

    Raises:
        ValueError: If ``model`` has no depthwise+pointwise pair to replace.

    Example:
        >>> spec = LayerSpec(64, 128, 56)
        >>> cmp = compare_twin(spec.separable(), spec.example(), repeats=3)  # doctest: +SKIP
        >>> round(cmp.mac_ratio, 1)  # doctest: +SKIP
        8.4
    """
    separable = copy.deepcopy(model).eval()
    twin, pairs = standard_twin(separable, example)
    if pairs == 0:
        raise ValueError(
            f"Invalid value for argument `model`: expected a model with at least one depthwise "
            f"conv followed by a pointwise conv, received {type(model).__name__} with none."
        )
    macs = [analyze(m, tuple(example.shape)).macs for m in (separable, twin)]
    x = example
    if channels_last:
        separable, twin = (m.to(memory_format=torch.channels_last) for m in (separable, twin))
        x = example.contiguous(memory_format=torch.channels_last)
    timings = [
        measure(partial(m, x), warmup=warmup, repeats=repeats, threads=threads)
        for m in (separable, twin)
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
