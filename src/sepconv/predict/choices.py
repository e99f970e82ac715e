"""The MobileNet configurations whose ImageNet top-1 is published, and the budget picker.

:data:`PUBLISHED` lists every (model, width, resolution) of MobileNetV1, MobileNetV2 and
EfficientNet with a published ImageNet-1k top-1, each with its source: the registered
variants (their figures are the registry's, :func:`sepconv.models.get_model_info`) and, in
:data:`EXTRA_ROWS`, the width x resolution grids of the papers and of the TF-Slim checkpoint
tables. :func:`pick` predicts each on a profile's machine, keeps those under a latency
budget, and ranks them by top-1.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sepconv.models import create_model, get_model_info
from sepconv.predict.latency import LatencyPrediction, input_shape, predict_trace
from sepconv.predict.profile import Profile
from sepconv.predict.trace import Trace, trace_ops
from sepconv.utils.validation import finite_number

__all__ = ["EXTRA_ROWS", "PUBLISHED", "Choice", "Published", "pick"]

_HOWARD_T7 = "Howard et al. 2017, Table 7 (resolution multiplier, 1.0 MobileNet)"
_SLIM_V1 = "TF-Slim MobileNetV1 checkpoints (2018_02_22), research/slim/nets/mobilenet_v1.md"
_SLIM_V2 = "TF-Slim MobileNetV2 checkpoints, research/slim/nets/mobilenet/README.md"


@dataclass(frozen=True)
class Published:
    """One configuration with a published top-1.

    Attributes:
        model: The registered builder (``"mobilenet_v2"``, ``"mobilenet_v1_050"``...).
        width: The ``width_mult`` passed to it (``None``: the builder's own).
        resolution: The input side it was evaluated at.
        top1: Published ImageNet-1k top-1 accuracy (%), single crop.
        source: Where ``top1`` was published.
    """

    model: str
    width: float | None
    resolution: int
    top1: float
    source: str

    @property
    def label(self) -> str:
        """``"mobilenet_v2 x0.75 @160"``."""
        width = f" x{self.width:g}" if self.width is not None else ""
        return f"{self.model}{width} @{self.resolution}"

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model (random weights), on ``device`` (``"meta"``: shapes only, instant)."""
        kwargs = {} if self.width is None else {"width_mult": self.width}
        with torch.device(device):
            return create_model(self.model, **kwargs).eval()


def _registered(name: str) -> Published:
    info = get_model_info(name)
    return Published(name, None, info.input_size, info.top1, info.source)


# The registered variants: their resolution, top-1 and source are the registry's.
REGISTERED = (
    "mobilenet_v1",
    "mobilenet_v1_075",
    "mobilenet_v1_050",
    "mobilenet_v1_025",
    "mobilenet_v2",
    "mobilenet_v2_075",
    "mobilenet_v2_050",
    *(f"efficientnet_b{i}" for i in range(8)),
)

# The rest of the published grids, one row per configuration.
#         model           width  px   top-1  source
EXTRA_ROWS: tuple[Published, ...] = (
    Published("mobilenet_v1", 1.0, 192, 69.1, _HOWARD_T7),
    Published("mobilenet_v1", 1.0, 160, 67.2, _HOWARD_T7),
    Published("mobilenet_v1", 1.0, 128, 64.4, _HOWARD_T7),
    Published("mobilenet_v1", 0.75, 192, 67.2, _SLIM_V1),
    Published("mobilenet_v1", 0.75, 160, 65.3, _SLIM_V1),
    Published("mobilenet_v1", 0.75, 128, 62.1, _SLIM_V1),
    Published("mobilenet_v1", 0.5, 192, 61.7, _SLIM_V1),
    Published("mobilenet_v1", 0.5, 160, 59.1, _SLIM_V1),
    Published("mobilenet_v1", 0.5, 128, 56.3, _SLIM_V1),
    Published("mobilenet_v1", 0.25, 192, 47.7, _SLIM_V1),
    Published("mobilenet_v1", 0.25, 160, 45.5, _SLIM_V1),
    Published("mobilenet_v1", 0.25, 128, 41.5, _SLIM_V1),
    Published("mobilenet_v2", 1.4, 224, 75.0, _SLIM_V2),
    Published("mobilenet_v2", 1.3, 224, 74.4, _SLIM_V2),
    Published("mobilenet_v2", 1.0, 192, 70.7, _SLIM_V2),
    Published("mobilenet_v2", 1.0, 160, 68.8, _SLIM_V2),
    Published("mobilenet_v2", 1.0, 128, 65.3, _SLIM_V2),
    Published("mobilenet_v2", 1.0, 96, 60.3, _SLIM_V2),
    Published("mobilenet_v2", 0.75, 192, 68.7, _SLIM_V2),
    Published("mobilenet_v2", 0.75, 160, 66.4, _SLIM_V2),
    Published("mobilenet_v2", 0.75, 128, 63.2, _SLIM_V2),
    Published("mobilenet_v2", 0.75, 96, 58.8, _SLIM_V2),
    Published("mobilenet_v2", 0.5, 192, 63.9, _SLIM_V2),
    Published("mobilenet_v2", 0.5, 160, 61.0, _SLIM_V2),
    Published("mobilenet_v2", 0.5, 128, 57.7, _SLIM_V2),
    Published("mobilenet_v2", 0.5, 96, 51.2, _SLIM_V2),
    Published("mobilenet_v2", 0.35, 224, 60.3, _SLIM_V2),
    Published("mobilenet_v2", 0.35, 192, 58.2, _SLIM_V2),
    Published("mobilenet_v2", 0.35, 160, 55.7, _SLIM_V2),
    Published("mobilenet_v2", 0.35, 128, 50.8, _SLIM_V2),
    Published("mobilenet_v2", 0.35, 96, 45.5, _SLIM_V2),
)

#: Every configuration :func:`pick` considers.
PUBLISHED: tuple[Published, ...] = (*(_registered(n) for n in REGISTERED), *EXTRA_ROWS)


@dataclass(frozen=True)
class Choice:
    """A configuration with its predicted latency."""

    config: Published
    prediction: LatencyPrediction

    @property
    def ms(self) -> float:
        return self.prediction.ms


@functools.cache
def _traced(config: Published) -> Trace:
    """``config``'s ops at batch 1, traced once per process: picking under several budgets,
    or on several profiles, predicts the same traces again."""
    return trace_ops(config.build("meta"), input_shape(config.resolution))


def pick(
    budget_ms: float,
    profile: Profile | str | os.PathLike[str],
    *,
    candidates: Sequence[Published] = PUBLISHED,
    check_machine: bool = True,
) -> tuple[list[Choice], list[Choice]]:
    """Predict every candidate; those under ``budget_ms``, most accurate first, and the rest.

    Args:
        budget_ms: The latency budget (ms, one image).
        profile: A :class:`Profile` or its file.
        candidates: The configurations to consider (default :data:`PUBLISHED`).
        check_machine: Refuse a profile of another machine (default ``True``).

    Returns:
        ``(within, over)``: the candidates predicted within the budget, by top-1 (highest
        first; ties: the faster first), and the others, by predicted latency.

    Example:
        >>> within, _ = pick(5.0, "profile.json")  # doctest: +SKIP
        >>> within[0].config.label  # doctest: +SKIP
        'mobilenet_v2 x0.75 @160'
    """
    finite_number(
        "budget_ms",
        budget_ms,
        low=0,
        low_inclusive=False,
        expected="a positive number of milliseconds",
    )
    if not isinstance(profile, Profile):
        profile = Profile.load(profile)
    if check_machine:
        profile.check_here()
    choices = [
        Choice(c, predict_trace(_traced(c), input_shape(c.resolution), profile)) for c in candidates
    ]
    within = sorted((c for c in choices if c.ms <= budget_ms), key=lambda c: (-c.config.top1, c.ms))
    over = sorted((c for c in choices if c.ms > budget_ms), key=lambda c: c.ms)
    return within, over
