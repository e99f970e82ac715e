"""The standard-convolution twin of a separable model: the inverse of :func:`decouple`.

:func:`standard_twin` replaces every depthwise ``K x K`` conv -> pointwise 1x1 conv pair with one
standard ``K x K`` conv of the pair's input and output channels, stride, padding and dilation;
whatever ran between the two (the depthwise norm, activation and squeeze-excite) goes, and what
follows the pointwise conv stays. Where :func:`sepconv.convert.decouple` turns a trained standard
conv into a separable one, the twin goes the other way, for comparison: its cost against the
separable model's is what :func:`sepconv.bench.compare_twin` measures.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

from sepconv.utils.capture import ModuleCall, capture


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
        >>> from sepconv.layers import DepthwiseSeparableConv2d
        >>> x = torch.randn(1, 32, 16, 16)
        >>> layer = DepthwiseSeparableConv2d(32, 64, norm=None, act=None)
        >>> twin, pairs = standard_twin(layer, x)
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
    if pairs and getattr(model, "arch_name", None) is not None:
        # Its identity: the architecture's standard twin, traced at this input (C, H, W), so a
        # file written from it says how to rebuild it (sepconv.modelfile.record.ModelRecord.of).
        setattr(twin, "arch_twin", tuple(int(v) for v in example.shape[1:]))  # noqa: B010
    return twin, len(pairs)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
