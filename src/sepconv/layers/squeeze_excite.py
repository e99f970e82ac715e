"""Squeeze-and-excitation channel attention (Hu et al., CVPR 2018), and how a block sizes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sepconv.layers.rounding import make_divisible
from sepconv.utils.validation import check_input_channels, invalid, one_of, positive_int


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate computed from global context.

    ``y = x * gate(conv_expand(act(conv_reduce(mean_hw(x)))))``; the two 1x1 convs are the two
    fully connected layers of Hu et al. 2018 (eq. 3), ``reduced_channels`` is ``C / r``.
    Parameters: ``2 * C * C_r + C + C_r``.

    Args:
        channels: Channels ``C`` of the input (and output).
        reduced_channels: Width ``C_r`` of the bottleneck.
        act: Activation between the two convs (EfficientNet uses SiLU).
        gate: Gating function (sigmoid; MobileNetV3 uses hard-sigmoid).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Example:
        >>> SqueezeExcite(96, 4)(torch.randn(1, 96, 28, 28)).shape
        torch.Size([1, 96, 28, 28])
    """

    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        act: Callable[[], nn.Module] = nn.SiLU,
        gate: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        positive_int("reduced_channels", reduced_channels)
        self.conv_reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = act()
        self.conv_expand = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.channels, "SqueezeExcite")
        scale = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        scale = self.conv_expand(self.act(self.conv_reduce(scale)))
        return x * self.gate(scale)


def squeeze_channels(in_channels: int, se_ratio: float) -> int:
    """Squeeze-excite width from the block's input channels, as in EfficientNet (Tan & Le 2019)."""
    if (
        isinstance(se_ratio, bool)
        or not isinstance(se_ratio, (int, float))
        or not 0 < se_ratio <= 1
    ):
        raise invalid("se_ratio", "a number in (0, 1]", se_ratio)
    return max(1, int(in_channels * se_ratio))


SEBase = Literal["input", "expanded"]
"""Which width a block's ``se_ratio`` applies to: its input or its expanded channels."""


@dataclass(frozen=True)
class SEStyle:
    """How a block sizes and gates its squeeze-excite; the ratio itself is the block's
    ``se_ratio`` (``r`` below, ``1 / r`` being Hu et al.'s reduction ratio).

    The families differ in three ways, and this records all three:

    - ``base``: EfficientNet takes ``r`` of the block's *input* channels (Tan & Le 2019,
      Section 4), MobileNetV3 of its *expanded* channels (Howard et al. 2019, Section 5.3).
    - ``divisor``: 1 floors the width (``max(1, int(base * r))``, EfficientNet); 8 rounds it to a
      multiple of 8 with :func:`~sepconv.layers.make_divisible` (MobileNetV3).
    - ``act`` and ``gate``: the activation between the two 1x1 convs (``None``: the block's own)
      and the gate (sigmoid; MobileNetV3's hard-sigmoid).

    Example:
        >>> SEStyle().channels(0.25, in_channels=40, expanded_channels=240)
        10
        >>> SE_MOBILENET_V3.channels(0.25, in_channels=40, expanded_channels=240)
        64
    """

    base: SEBase = "input"
    divisor: int = 1
    act: Callable[[], nn.Module] | None = None
    gate: Callable[[], nn.Module] = nn.Sigmoid

    def __post_init__(self) -> None:
        one_of("base", self.base, ("input", "expanded"))
        positive_int("divisor", self.divisor)

    def channels(self, se_ratio: float, *, in_channels: int, expanded_channels: int) -> int:
        """The reduced width ``C_r`` for a block of these input and expanded channels."""
        base = in_channels if self.base == "input" else expanded_channels
        floored = squeeze_channels(base, se_ratio)  # validates se_ratio
        return floored if self.divisor == 1 else make_divisible(base * se_ratio, self.divisor)

    def build(
        self,
        se_ratio: float,
        *,
        in_channels: int,
        expanded_channels: int,
        block_act: Callable[[], nn.Module],
    ) -> SqueezeExcite:
        """The :class:`SqueezeExcite` over ``expanded_channels`` of a block with this style."""
        reduced = self.channels(
            se_ratio, in_channels=in_channels, expanded_channels=expanded_channels
        )
        act = self.act if self.act is not None else block_act
        return SqueezeExcite(expanded_channels, reduced, act=act, gate=self.gate)


SE_EFFICIENTNET = SEStyle()
"""EfficientNet's squeeze-excite (Tan & Le 2019): ``max(1, int(C_in * r))`` channels, the
block's activation, sigmoid gate."""
SE_MOBILENET_V3 = SEStyle(base="expanded", divisor=8, act=nn.ReLU, gate=nn.Hardsigmoid)
"""MobileNetV3's squeeze-excite (Howard et al. 2019, Section 5.3): ``r`` of the expanded
channels rounded to a multiple of 8, ReLU inside, hard-sigmoid gate."""
