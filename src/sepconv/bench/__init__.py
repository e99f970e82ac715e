"""Measured speed next to counted cost.

:func:`measure` is the one timing harness; on it stand whole-model latency sweeps
(:func:`benchmark`, :func:`measure_latency`), per-layer latency (:func:`per_layer_latency`), the
measured roofline (:func:`measure_ceilings`) and the comparison with the standard-conv twin
(:func:`compare_twin`; the twin itself is :func:`sepconv.convert.standard_twin`). Plots live
in :mod:`sepconv.bench.plots`. Each takes a ``device``: on CUDA every timed block is bracketed
by CUDA events and synchronised, and the ceilings are measured on the GPU itself.
"""

from sepconv.bench.latency import LatencyPoint, benchmark, measure_latency
from sepconv.bench.per_layer import LayerTiming, PerLayerReport, per_layer_latency
from sepconv.bench.roofline import Ceilings, RooflinePoint, measure_ceilings, place
from sepconv.bench.timing import Timing, environment, measure
from sepconv.bench.twin import LayerSpec, TwinComparison, compare_twin

__all__ = [
    "Ceilings",
    "LatencyPoint",
    "LayerSpec",
    "LayerTiming",
    "PerLayerReport",
    "RooflinePoint",
    "Timing",
    "TwinComparison",
    "benchmark",
    "compare_twin",
    "environment",
    "measure",
    "measure_ceilings",
    "measure_latency",
    "per_layer_latency",
    "place",
]
