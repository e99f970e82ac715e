"""The machine's speed, read from a reference network: readings that follow a slowdown, a
calibration that brings its samples to one speed, and predictions at today's speed."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import numpy as np
import pytest
from torch import nn

import sepconv
from sepconv.predict import (
    Kernel,
    Profile,
    calibrate,
    extract_kernels,
    predict_latency,
    reference_timer,
)
from sepconv.predict.speed import SpeedProbe, undisturbed_seconds

calibrate_module = importlib.import_module("sepconv.predict.calibrate")
speed_module = importlib.import_module("sepconv.predict.speed")
whole_networks = importlib.import_module("sepconv.predict.whole_networks")
CALL_S = 2e-5


def probe_with(readings: list[tuple[float, float]]) -> SpeedProbe:
    return SpeedProbe(timer=lambda: 0.0, name="reference", readings=list(readings))


def test_the_typical_speed_is_the_median_reading() -> None:
    probe = probe_with([(0, 1.0), (10, 3.0), (20, 1.2), (30, 1.1), (40, 9.0)])
    assert probe.typical_s == 1.2  # one slow spell does not move it
    record = probe.record(start=0)
    assert record == {
        "network": "reference",
        "typical_s": 1.2,
        "readings": [[0, 1.0], [10, 3.0], [20, 1.2], [30, 1.1], [40, 9.0]],
    }
    assert probe_with([]).due() and not probe_with([(1e18, 1.0)]).due()


def test_the_undisturbed_time_is_the_fast_group_of_a_host_at_two_speeds() -> None:
    # One network's ten timings (ms) over a calibration of 2026-12-08, on a host that ran it
    # now near 1.3 ms, now near 2.4 ms: the median follows the slow group.
    timings = [1.57, 2.35, 1.37, 1.30, 2.46, 2.41, 2.53, 2.40, 2.58, 1.34]
    assert np.median(timings) == pytest.approx(2.375)
    # Those within 1.25x of the fastest (1.625 ms): 1.30, 1.34, 1.37 and 1.57.
    assert undisturbed_seconds(timings) == pytest.approx((1.34 + 1.37) / 2)
    assert undisturbed_seconds([2.0]) == 2.0
    with pytest.raises(ValueError, match=r"argument `timings`: expected at least one timing"):
        undisturbed_seconds([])
    # A probe of a profile whose kernels are predicted undisturbed reads its network so too.
    readings = [(10.0 * i, t) for i, t in enumerate(timings)]
    assert probe_with(readings).typical_s == pytest.approx(2.375)
    undisturbed = SpeedProbe(lambda: 0.0, "reference", undisturbed=True, readings=readings)
    assert undisturbed.typical_s == pytest.approx(1.355)
    assert undisturbed.record(start=0)["typical_s"] == pytest.approx(1.355)


def true_seconds(kernel: Kernel) -> float:
    """The synthetic machine at its usual speed: a kernel costs a microsecond and its MACs."""
    return 1e-6 + 1e-11 * kernel.macs + 1e-10 * float(np.prod(kernel.output))


class SlowingTimer:
    """A synthetic machine (no fusions) that runs twice as slow from its ``switch``-th timed
    kernel sample on, the reference network and the whole networks included."""

    empty = call_s = CALL_S

    def __init__(self, switch: int) -> None:
        self.switch = switch
        self.timed = 0

    @property
    def slowness(self) -> float:
        return 2.0 if self.timed > self.switch else 1.0

    def __call__(self, kernels: list[Kernel]) -> float:
        self.timed += 1
        return self.slowness * sum(map(true_seconds, kernels))

    def isolated(self, kernels: list[Kernel]) -> float:  # the fusion tests: not counted
        return self.slowness * sum(map(true_seconds, kernels))

    def network(self, model: nn.Module, shape: tuple[int, ...], name: str) -> Callable:
        kernels = extract_kernels(model, shape, ())
        return lambda: self.slowness * (CALL_S + sum(map(true_seconds, kernels)))

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_whole_networks_are_timed_throughout_a_calibration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timer = SlowingTimer(switch=150)
    monkeypatch.setattr(calibrate_module, "make_timers", lambda *a: {"native": timer})
    monkeypatch.setattr(speed_module, "PROBE_EVERY_S", 0.0)  # a reading before every kernel
    # The synthetic machine times in no time: the networks get as much time as the rest.
    monkeypatch.setattr(whole_networks, "OVERHEAD_SHARE", 0.5)
    profile = calibrate("onnxruntime", threads=2, budget_s=60, max_kernels=300, seed=3)
    speed = profile.validation["speed"]
    assert speed["network"] == "mobilenet_v2 (width_mult=0.5) at 128x128"
    assert len(speed["readings"]) >= 300
    # Half the calibration ran twice as slow (from the 150th of 300 kernels on): the reference
    # network's readings show both speeds. ONNX Runtime's kernels are predicted from their
    # undisturbed timings, so its typical time is the fast one (sepconv.predict.speed).
    seconds = sorted(s for _, s in speed["readings"])
    assert seconds[-1] == pytest.approx(2 * seconds[0])
    assert profile.reference_s == pytest.approx(speed["typical_s"])
    assert speed["typical_s"] == pytest.approx(seconds[0])
    # The whole networks were timed in both halves, so their times mix both speeds as the
    # kernels' do (timed only at the end, as before, every one of them would be slow).
    networks = profile.validation["network_fit"]["networks"]
    assert len(networks) == 9
    both = 0
    for record in networks:
        ratios = {round(t / min(record["rounds_s"]), 6) for t in record["rounds_s"]}
        assert ratios <= {1.0, 2.0}
        both += ratios == {1.0, 2.0}
        # Each network's time is its undisturbed one: the fast half of its timings.
        assert record["measured_s"] == pytest.approx(min(record["rounds_s"]))
    assert both >= 7
    # A profile that says nothing of its speed (written before) has no reference time.
    assert dataclasses.replace(profile, validation={}).reference_s is None


def test_at_speed_scales_every_predicted_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibrate_module, "make_timers", lambda *a: {"native": SlowingTimer(10**9)})
    profile = calibrate("onnxruntime", threads=2, budget_s=60, max_kernels=200, seed=4)
    model = sepconv.mobilenet_v2(width_mult=0.5)
    plain = predict_latency(model, 96, profile)
    slower = predict_latency(model, 96, profile.at_speed(1.25))
    assert slower.seconds == pytest.approx(1.25 * plain.seconds, rel=1e-12)
    assert slower.call_s == pytest.approx(1.25 * plain.call_s, rel=1e-12)
    assert [k.seconds for k in slower.kernels] == pytest.approx(
        [1.25 * k.seconds for k in plain.kernels], rel=1e-12
    )
    for bad in (0.0, -1.0, float("nan"), 1e3):
        with pytest.raises(ValueError, match="argument `factor`"):
            profile.at_speed(bad)


@pytest.mark.slow
def test_the_reference_network_is_timed_as_the_calibration_timed_it() -> None:
    profile = Profile(
        backend="eager",
        device="cpu",
        threads=1,
        machine={},
        variants=("nchw",),
        fusions=(),
        fusion_tests=(),
        call_s={"nchw": 0.0},
        module_call_s={"nchw": 0.0},
        samples=(),
        budget_s=60.0,
        elapsed_s=60.0,
    )
    with reference_timer(profile) as timer:
        readings = [timer() for _ in range(5)]
    # A MobileNetV2 at width 0.5 and 128x128 on one thread, in seconds: milliseconds, not
    # micro- or whole seconds. (How steady the readings are is the benchmarks' business: a
    # suite's other worker once made one of five four times the others.)
    assert all(1e-4 < t < 1.0 for t in readings)
