"""Conversion of trained standard convolutions into depthwise separable ones.

:func:`decouple` turns one standard or grouped ``nn.Conv2d`` into a
:class:`~sepconv.layers.DepthwiseSeparableConv2d` by per-channel SVD (Guo et al., "Network
Decoupling", BMVC 2018); :func:`separabilize` does it for every eligible convolution of a model
and reports the cost. Accuracy lost to truncation is recovered by fine-tuning with knowledge
distillation from the original: :class:`sepconv.train.Trainer` with ``teacher=original``, whose
loss is :func:`sepconv.train.losses.distillation_loss`. :func:`standard_twin` goes the other way:
every depthwise + pointwise pair of a model becomes one standard conv, for comparison.
"""

from sepconv.convert.decouple import (
    Decoupled,
    decouple,
    full_rank,
    ineligibility,
    rank_for_energy,
    singular_values,
)
from sepconv.convert.separabilize import (
    ConversionReport,
    LayerConversion,
    Separabilized,
    separabilize,
)
from sepconv.convert.twin import standard_twin

__all__ = [
    "ConversionReport",
    "Decoupled",
    "LayerConversion",
    "Separabilized",
    "decouple",
    "full_rank",
    "ineligibility",
    "rank_for_energy",
    "separabilize",
    "singular_values",
    "standard_twin",
]
