"""Conversion of trained standard convolutions into depthwise separable ones.

:func:`decouple` turns one ``nn.Conv2d`` into a :class:`~sepconv.layers.DepthwiseSeparableConv2d`
by per-channel SVD (Guo et al., "Network Decoupling", BMVC 2018); :func:`separabilize` does it for
every eligible convolution of a model and reports the cost; :mod:`sepconv.convert.distill`
recovers accuracy by fine-tuning with knowledge distillation from the original.
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
]
