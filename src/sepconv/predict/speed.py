"""How fast the machine ran: one fixed reference network, timed now and then.

A virtual machine's speed moves with what its host runs: on the machines sepconv was measured
on, the same models took 0.7x to 1.4x their usual time for minutes at a stretch, with nothing
inside the machine to show it. A profile made in a slow hour predicts every model slow.

The reference network (:data:`REFERENCE`, a MobileNetV2 built from sepconv's registry) is
timed as the backend runs a model during a calibration (:func:`sepconv.predict.calibrate`),
after a whole network every :data:`PROBE_EVERY_S` seconds, and the median of those readings is
kept in the profile (``validation["speed"]``, :attr:`Profile.reference_s
<sepconv.predict.profile.Profile.reference_s>`). Timed again later in the same way
(:func:`reference_timer`), it says how much slower or faster the machine runs then, and
:meth:`Profile.at_speed <sepconv.predict.profile.Profile.at_speed>` scales a profile's
predictions by that (``benchmarks/predict_accuracy.py`` reports it for every group of models).
Timed in a tight loop instead, right before picking, it read 0.79x while the models then ran
at about 0.9x their calibration time, and four of five picks under that factor missed their
budgets: a factor is only as good as the likeness of the moments it compares.

The host's slow moments come in spells: over one calibration the same network's timings fell
in two groups, near 1.3 ms and near 2.4 ms, and their median followed whichever the host gave
more of. Where a profile's kernels are predicted from their undisturbed timings (ONNX
Runtime's faster half, :mod:`sepconv.predict.regression`), the reference network and the
whole networks are read the same way (:func:`undisturbed_seconds`): the profile describes the
machine undisturbed, and a later reading says how much slower it runs then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from sepconv.predict.profile import Profile
from sepconv.predict.timers import make_timers
from sepconv.utils.validation import invalid

__all__ = [
    "PROBE_EVERY_S",
    "REFERENCE",
    "UNDISTURBED_SPREAD",
    "SpeedProbe",
    "reference_network",
    "reference_timer",
    "typical_seconds",
    "undisturbed_seconds",
]

#: The reference network: registry name, builder options and input side.
REFERENCE: tuple[str, dict[str, Any], int] = ("mobilenet_v2", {"width_mult": 0.5}, 128)
#: Seconds between two readings during a calibration.
PROBE_EVERY_S = 10.0
#: Timings within this factor of the fastest count as the machine undisturbed.
UNDISTURBED_SPREAD = 1.25


def undisturbed_seconds(timings: Sequence[float]) -> float:
    """The median of the ``timings`` within :data:`UNDISTURBED_SPREAD` of the fastest: what the
    timed thing takes when the host leaves the machine alone (see the module doc).

    Example:
        >>> undisturbed_seconds([1.0, 2.4, 1.1, 2.5, 2.3])
        1.05
    """
    if not timings:
        raise invalid("timings", "at least one timing", list(timings))
    values = np.asarray(timings, float)
    return float(np.median(values[values <= UNDISTURBED_SPREAD * values.min()]))


def typical_seconds(timings: Sequence[float], *, undisturbed: bool) -> float:
    """A time from repeated timings of one thing: :func:`undisturbed_seconds` of them where
    ``undisturbed`` (a profile whose kernels are predicted from their undisturbed timings),
    else their median."""
    return undisturbed_seconds(timings) if undisturbed else float(np.median(timings))


def reference_network() -> tuple[nn.Module, tuple[int, int, int, int], str]:
    """The reference network (BatchNorm folded, in eval mode), its input shape and its name."""
    import torch

    from sepconv.deploy.fuse import fuse
    from sepconv.models import create_model

    name, options, side = REFERENCE
    with torch.random.fork_rng(devices=[]):  # the caller's random state left as it was
        torch.manual_seed(0)  # the same weights every time: the same ONNX file, the same work
        model = fuse(create_model(name, **options).eval())
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    return model, (1, 3, side, side), f"{name} ({shown}) at {side}x{side}"


@dataclass
class SpeedProbe:
    """Readings of the reference network over a calibration.

    ``timer`` returns the seconds of one call of the reference network (a backend timer's
    ``network``, :class:`sepconv.predict.timers.KernelTimer`); ``name`` describes it;
    ``undisturbed``: its typical time is :func:`undisturbed_seconds` of the readings, not
    their median.
    """

    timer: Callable[[], float]
    name: str
    undisturbed: bool = False
    readings: list[tuple[float, float]] = field(default_factory=list)

    def read(self) -> float:
        """Time the reference network now; its seconds (also kept as a reading)."""
        seconds = self.timer()
        self.readings.append((time.perf_counter(), seconds))
        return seconds

    def due(self) -> bool:
        """Whether the last reading is :data:`PROBE_EVERY_S` old (or there is none)."""
        return not self.readings or time.perf_counter() - self.readings[-1][0] >= PROBE_EVERY_S

    @property
    def typical_s(self) -> float:
        """The median reading (or the undisturbed one): the machine's typical speed over the
        calibration."""
        return typical_seconds([s for _, s in self.readings], undisturbed=self.undisturbed)

    def record(self, start: float) -> dict[str, Any]:
        """The readings for the profile: the network, the typical seconds, and each reading
        as ``[seconds since start, seconds]``."""
        return {
            "network": self.name,
            "typical_s": self.typical_s,
            "readings": [[round(t - start, 3), s] for t, s in self.readings],
        }


@contextmanager
def reference_timer(profile: Profile) -> Iterator[Callable[[], float]]:
    """A timer of the reference network as ``profile``'s calibration timed it (its backend,
    threads and first variant): each call returns the seconds of one call of the network."""
    timers = make_timers(profile.backend, profile.device, profile.threads)
    try:
        model, shape, _ = reference_network()
        yield timers[profile.variants[0]].network(model, shape, "reference")
    finally:
        for timer in timers.values():
            timer.close()
