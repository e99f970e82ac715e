"""Cost analysis: per-op params, MACs, bytes moved and arithmetic intensity of any model.

:func:`analyze` costs one forward pass of any ``nn.Module``; :func:`compare_conv` compares a
standard, grouped and depthwise separable convolution of one layer in closed form.
"""

from sepconv.analysis.analyzer import analyze
from sepconv.analysis.compare import ConvComparison, ConvCost, compare_conv
from sepconv.analysis.counting import CONVENTIONS, HEADLINE_KINDS, KINDS, Kind
from sepconv.analysis.report import CostReport, KindTotals, LayerCost

__all__ = [
    "CONVENTIONS",
    "HEADLINE_KINDS",
    "KINDS",
    "ConvComparison",
    "ConvCost",
    "CostReport",
    "Kind",
    "KindTotals",
    "LayerCost",
    "analyze",
    "compare_conv",
]
