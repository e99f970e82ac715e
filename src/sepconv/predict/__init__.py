"""Latency prediction: a model's latency on a calibrated machine, without running the model.

Kernel-level prediction in the manner of nn-Meter (Zhang et al., MobiSys 2021): a calibration
(:func:`calibrate`, ``sepconv calibrate``) finds which ops the backend fuses and times a
sampled set of kernels on this machine as the backend runs them, concentrating samples where
prediction error is largest; :func:`predict_latency` (``sepconv predict``) splits a model into
the same kernels and predicts each from its measured neighbours; :func:`pick` (``sepconv pick``)
ranks the published MobileNet configurations under a latency budget.

Modules, one concept each: :mod:`~sepconv.predict.trace` (the ops a model runs),
:mod:`~sepconv.predict.kernels` (ops -> kernels after folding and fusion),
:mod:`~sepconv.predict.fusion` (the fusion test cases), :mod:`~sepconv.predict.onnx_graph` and
:mod:`~sepconv.predict.torch_calls` (kernels as a runtime's graph and as PyTorch calls),
:mod:`~sepconv.predict.timers` and :mod:`~sepconv.predict.ort_profiler` (timing kernels on a
backend), :mod:`~sepconv.predict.whole_networks` (what a model pays beyond its kernels),
:mod:`~sepconv.predict.speed` (how fast the machine ran, by a reference network),
:mod:`~sepconv.predict.space` and :mod:`~sepconv.predict.sampling` (what is sampled),
:mod:`~sepconv.predict.regression` (the per-kernel predictor),
:mod:`~sepconv.predict.profile` (the profile file) and :mod:`~sepconv.predict.profile_checks`
(its fields, checked as untrusted input), :mod:`~sepconv.predict.calibrate`,
:mod:`~sepconv.predict.latency` and :mod:`~sepconv.predict.choices` (the picker's table).
"""

from sepconv.predict.calibrate import DEFAULT_BUDGET_S, calibrate
from sepconv.predict.choices import PUBLISHED, Choice, Published, pick
from sepconv.predict.kernels import Kernel, UnpredictableKernelError, extract_kernels
from sepconv.predict.latency import KernelLatency, LatencyPrediction, predict_latency
from sepconv.predict.profile import Profile, ProfileError
from sepconv.predict.space import MOBILENET_STYLES, STYLES, NetworkSpec, sample_network
from sepconv.predict.speed import reference_timer

__all__ = [
    "DEFAULT_BUDGET_S",
    "MOBILENET_STYLES",
    "PUBLISHED",
    "STYLES",
    "Choice",
    "Kernel",
    "KernelLatency",
    "LatencyPrediction",
    "NetworkSpec",
    "Profile",
    "ProfileError",
    "Published",
    "UnpredictableKernelError",
    "calibrate",
    "extract_kernels",
    "pick",
    "predict_latency",
    "reference_timer",
    "sample_network",
]
