"""``predict_latency``: a model's latency on a calibrated machine, without running the model.

The model is traced on the meta device (shapes only), split into the kernels the profile's
backend executes after its fusions (:func:`~sepconv.predict.kernels.extract_kernels`), and
each kernel is predicted from the profile's measurements
(:class:`~sepconv.predict.regression.KernelRegressor`). The model's latency is the cost of one
call of the runtime plus the kernels' sum, in each variant the backend may run (eager
PyTorch: NCHW and channels-last); the fastest variant is the prediction, since the backend
picks the faster layout itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from sepconv.predict.kernels import Kernel, kernels_of_ops
from sepconv.predict.profile import Profile
from sepconv.predict.regression import describe
from sepconv.predict.trace import Trace, trace_ops
from sepconv.utils.validation import MAX_BATCH, MAX_SIDE, bounded_int, invalid, invalid_type

__all__ = ["KernelLatency", "LatencyPrediction", "input_shape", "predict_latency", "predict_trace"]

# A kernel this far (log2 units) from every measured one is marked as extrapolated.
FAR = 2.0


@dataclass(frozen=True)
class KernelLatency:
    """One kernel's predicted seconds (in the chosen variant) and how far it was from the
    nearest measured kernel (log2 units of its sizes; 0: measured exactly)."""

    kernel: Kernel
    seconds: float
    distance: float

    @property
    def extrapolated(self) -> bool:
        return self.distance > FAR

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.kernel.layer,
            "kernel": describe(self.kernel),
            "ms": self.seconds * 1e3,
            "distance": self.distance,
            "macs": self.kernel.macs,
        }


@dataclass(frozen=True)
class LatencyPrediction:
    """A model's predicted latency on a profile's machine and backend.

    Attributes:
        seconds: The predicted latency of one call (one batch).
        input_shape: ``(N, C, H, W)``.
        backend: The profile's backend; ``threads``: its thread count.
        variant: The variant predicted fastest (``"nchw"``, ``"nhwc"``, ``"native"``).
        call_s: The runtime's fixed cost of one call, and (eager) Python's cost of the model's
            ``module_calls`` module calls, included in ``seconds``.
        kernels: Every kernel's prediction, in execution order.
        variants: Variant -> its predicted total.
    """

    seconds: float
    input_shape: tuple[int, int, int, int]
    backend: str
    threads: int
    variant: str
    call_s: float
    module_calls: int
    kernels: tuple[KernelLatency, ...]
    variants: dict[str, float]

    @property
    def ms(self) -> float:
        """The predicted latency in milliseconds."""
        return self.seconds * 1e3

    @property
    def macs(self) -> int:
        """Multiply-adds of the batch (convs and linear layers)."""
        return sum(k.kernel.macs for k in self.kernels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, milliseconds throughout."""
        return {
            "predicted_ms": self.ms,
            "input_shape": list(self.input_shape),
            "backend": self.backend,
            "threads": self.threads,
            "variant": self.variant,
            "variants_ms": {k: v * 1e3 for k, v in self.variants.items()},
            "call_ms": self.call_s * 1e3,
            "macs": self.macs,
            "kernels": len(self.kernels),
            "extrapolated_kernels": sum(k.extrapolated for k in self.kernels),
        }


def input_shape(input_size: int | Sequence[int], batch_size: int = 1) -> tuple[int, int, int, int]:
    """``(N, C, H, W)`` from a side (``224``), ``(C, H, W)`` or ``(N, C, H, W)``.

    Example:
        >>> input_shape(160, batch_size=8)
        (8, 3, 160, 160)
    """
    bounded_int("batch_size", batch_size, 1, MAX_BATCH)
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        bounded_int("input_size", input_size, 1, MAX_SIDE)
        return (batch_size, 3, input_size, input_size)
    sizes = tuple(input_size) if isinstance(input_size, (tuple, list)) else ()
    ok = len(sizes) in (3, 4) and all(
        isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIDE for s in sizes
    )
    if not ok:
        raise invalid("input_size", "a side such as 224, or (C, H, W), or (N, C, H, W)", input_size)
    if len(sizes) == 4:
        return (sizes[0], sizes[1], sizes[2], sizes[3])
    return (batch_size, sizes[0], sizes[1], sizes[2])


def predict_latency(
    model: nn.Module,
    input_size: int | Sequence[int],
    profile: Profile | str | os.PathLike[str],
    *,
    batch_size: int = 1,
    check_machine: bool = True,
) -> LatencyPrediction:
    """Predict ``model``'s latency on the machine and backend ``profile`` was calibrated on.

    Nothing is run: the model is traced on the meta device and each of its kernels predicted
    from the profile's measurements of nearby kernels (Zhang et al., "nn-Meter", MobiSys 2021:
    kernel-level prediction after the runtime's fusions).

    Args:
        model: The model (not modified, not run).
        input_size: A square side (``224``), ``(C, H, W)`` or ``(N, C, H, W)``.
        profile: A :class:`Profile` or the path of a profile file (``sepconv calibrate``).
        batch_size: ``N`` when ``input_size`` has none (default 1).
        check_machine: Refuse a profile calibrated on another machine or runtime version
            (default ``True``; ``False`` predicts for the machine it was calibrated on).

    Returns:
        A :class:`LatencyPrediction`: ``.ms`` for the whole model, ``.kernels`` per kernel.

    Raises:
        ProfileError: the profile is unreadable, modified, or from another machine.
        UnpredictableKernelError: the model runs a kernel the profile cannot predict.

    Example:
        >>> from sepconv.models import create_model
        >>> model = create_model("mobilenet_v2")
        >>> p = predict_latency(model, 224, "profile.json")  # doctest: +SKIP
        >>> print(f"{p.ms:.1f} ms")  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise invalid_type("model", "a torch.nn.Module", model)
    if not isinstance(profile, Profile):
        profile = Profile.load(profile)
    if check_machine:
        profile.check_here()
    shape = input_shape(input_size, batch_size)
    return predict_trace(trace_ops(model, shape), shape, profile)


def predict_trace(
    trace: Trace, shape: tuple[int, int, int, int], profile: Profile
) -> LatencyPrediction:
    """:func:`predict_latency` of a model already traced at ``shape`` (``trace_ops``): to
    predict one model on several profiles, or on one profile again, without tracing it each
    time. The profile is used as given (not checked against this machine)."""
    kernels = kernels_of_ops(trace.nodes, profile.fusions)
    overhead = {
        v: profile.call_s[v] + trace.module_calls * profile.module_call_s[v]
        for v in profile.variants
    }
    totals: dict[str, float] = {}
    per_variant: dict[str, list[tuple[float, float]]] = {}
    for variant in profile.variants:
        regressor = profile.regressor(variant)
        scale = profile.scale(variant)  # what the kernels take inside a whole model
        predicted = [(scale * t, d) for t, d in map(regressor.predict_with_distance, kernels)]
        per_variant[variant] = predicted
        totals[variant] = overhead[variant] + sum(t for t, _ in predicted)
    best = min(totals, key=totals.__getitem__)
    return LatencyPrediction(
        seconds=totals[best],
        input_shape=shape,
        backend=profile.backend,
        threads=profile.threads,
        variant=best,
        call_s=overhead[best],
        module_calls=trace.module_calls,
        kernels=tuple(
            KernelLatency(k, t, d) for k, (t, d) in zip(kernels, per_variant[best], strict=True)
        ),
        variants=totals,
    )
