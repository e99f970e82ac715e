"""The latency predictor on a synthetic machine: a fake timer whose kernel times are a known
function of each kernel's sizes, so that nothing here depends on the clock."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import sepconv
from sepconv.layers import ConvNormAct, MBConv
from sepconv.predict import (
    Kernel,
    Profile,
    ProfileError,
    UnpredictableKernelError,
    calibrate,
    extract_kernels,
    predict_latency,
    sample_network,
)
from sepconv.predict.fusion import detect_fusions
from sepconv.predict.regression import KernelRegressor, features, fits_slopes, group_key
from sepconv.predict.sampling import PER_NETWORK, KernelPool
from sepconv.predict.space import ACTS

# The module, not the function the package exports under the same name.
calibrate_module = importlib.import_module("sepconv.predict.calibrate")
whole_networks = importlib.import_module("sepconv.predict.whole_networks")
regression = importlib.import_module("sepconv.predict.regression")
CALL_S = 2e-5
# What the fake runtime fuses into the conv before: these activations, and the residual add.
FAKE_FUSED = ("relu", "relu6", "hardswish")


def true_seconds(kernel: Kernel) -> float:
    """The synthetic machine (recorded as ONNX Runtime, whose kernels cost close to their
    size): a kernel's time proportional to its MACs plus bytes, one throughput per kind."""
    scale = {"conv": 1e-10, "se": 3e-10, "linear": 2e-10}.get(kernel.kind, 5e-11)
    return scale * (kernel.macs + kernel.bytes)


def power_law(kernel: Kernel) -> float:
    """A law off size: a power law of the kernel's sizes (what a local fit recovers)."""
    x, _ = features(kernel)
    weights = np.array([0.9, 0.5, 0.4, 0.1])[: x.size]
    return float(1e-8 * 2.0 ** (weights @ x))


class FakeTimer:
    """Times kernels on the synthetic machine; fuses :data:`FAKE_FUSED` and the add."""

    empty = call_s = CALL_S

    def __call__(self, kernels: list[Kernel]) -> float:
        total = 0.0
        for i, kernel in enumerate(kernels):
            previous = kernels[i - 1] if i else None
            fused = (
                previous is not None
                and previous.kind == "conv"
                and ((kernel.kind == "act" and kernel.act in FAKE_FUSED) or kernel.kind == "add")
            )
            total += 0.0 if fused else true_seconds(kernel)
        return total

    def isolated(self, kernels: list[Kernel]) -> float:
        return self(kernels)

    def network(self, model: nn.Module, shape: tuple[int, ...], name: str) -> Callable:
        """The whole network on the synthetic machine: a call and its ops in order."""
        seconds = CALL_S + self(extract_kernels(model, shape, ()))
        return lambda: seconds

    def close(self) -> None:
        pass


def fake_calibration(max_kernels: int = 1000, seed: int = 3) -> Profile:
    """A calibration of the synthetic machine (recorded as this machine, ONNX Runtime)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(calibrate_module, "make_timers", lambda *a: {"native": FakeTimer()})
    try:
        return calibrate("onnxruntime", threads=2, budget_s=60, max_kernels=max_kernels, seed=seed)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def fake_profile() -> Profile:
    return fake_calibration()


def test_fusions_are_found_by_the_test_cases(fake_profile: Profile) -> None:
    assert set(fake_profile.fusions) == {f"conv+{a}" for a in FAKE_FUSED} | {"conv+add"}
    silu = [t for t in fake_profile.fusion_tests if t["name"] == "conv+silu"]
    assert len(silu) == 2 and not any(t["fused"] for t in silu)


def test_detect_fusions_needs_both_conv_types() -> None:
    def timer(kernels: list[Kernel]) -> float:
        # Fused after a pointwise conv only: not a rule the extraction may apply everywhere.
        if len(kernels) == 2 and kernels[0].conv_type == "pointwise":
            return 1.0
        return sum(1.0 if k.kind == "conv" else 0.5 for k in kernels)

    fused, verdicts = detect_fusions(timer)
    assert "conv+relu" not in fused
    assert any(v.fused for v in verdicts if v.name == "conv+relu")


def test_prediction_matches_the_synthetic_machine(fake_profile: Profile) -> None:
    # An ONNX Runtime profile: each kernel predicted from its neighbours scaled by size.
    assert not fits_slopes(fake_profile.backend)
    rng = np.random.default_rng(123)  # networks the calibration never drew
    errors = []
    for _ in range(6):
        spec = sample_network(rng)
        model = spec.build()
        p = predict_latency(model, spec.resolution, fake_profile)
        shape = (1, 3, spec.resolution, spec.resolution)
        truth = CALL_S + FakeTimer()(extract_kernels(model, shape, ()))  # unfused ops in order
        errors.append(p.seconds / truth - 1)
        assert p.seconds == pytest.approx(CALL_S + sum(k.seconds for k in p.kernels))
    assert max(abs(e) for e in errors) < 0.01, errors
    # Whole networks on this machine cost what their kernels do: the fitted scale stays at 1.
    assert fake_profile.scale("native") == pytest.approx(1.0, abs=0.01)
    assert len(fake_profile.validation["network_fit"]["networks"]) > 0


def test_a_calibrations_first_networks_meet_every_squeeze_excite_group() -> None:
    # Drawn at random, hard-swish with EfficientNet's SE is one inverted network in nine: a
    # short calibration could miss its group, and every model with it would be unpredictable.
    pool = KernelPool(np.random.default_rng(0), fusions=())
    drawn = pool.draw(6 * PER_NETWORK)  # the first six networks' kernels
    se_groups = {group_key(k) for k in drawn if k.kind == "se"}
    everything = set()  # the SE groups of the space: one network of each activation and style
    for act in ACTS:
        for se_kind in ("efficientnet", "mobilenet_v3"):
            spec = sample_network(np.random.default_rng(1), ("inverted",), act=act, se_kind=se_kind)
            assert (spec.act, spec.se_kind) == (act, se_kind)
            shape = (1, 3, spec.resolution, spec.resolution)
            kernels = extract_kernels(spec.build(), shape, ())
            everything |= {group_key(k) for k in kernels if k.kind == "se"}
    # EfficientNet's SE squeezes with the block's activation, MobileNetV3's always with ReLU.
    assert len(everything) == 4 and se_groups == everything
    # A value outside the space is refused.
    with pytest.raises(ValueError, match=r"argument `act`: expected one of"):
        sample_network(np.random.default_rng(0), act="gelu")
    with pytest.raises(ValueError, match=r"argument `se_kind`: expected one of"):
        sample_network(np.random.default_rng(0), se_kind="squeeze")


@pytest.mark.parametrize("slopes", [True, False], ids=["fit", "scaled"])
def test_one_sample_timed_in_a_slow_spell_cannot_drag_a_prediction(slopes: bool) -> None:
    # Pointwise convs whose time is their work, and one of them timed 40x too slow.
    kernels = [
        Kernel("conv", ((1, c, h, h),), (1, 2 * c, h, h))
        for c in (16, 24, 32, 48, 64, 96)
        for h in (7, 14, 28)
    ]
    seconds = [1e-9 * (k.macs + k.bytes) for k in kernels]
    slow = kernels.index(Kernel("conv", ((1, 96, 7, 7),), (1, 192, 7, 7)))
    seconds[slow] *= 40
    query = Kernel("conv", ((1, 104, 5, 5),), (1, 208, 5, 5))  # beyond them all
    truth = 1e-9 * (query.macs + query.bytes)
    predicted = KernelRegressor(kernels, seconds, slopes).predict(query)
    assert truth / 2 <= predicted <= 2 * truth
    # Without the bound, the slow sample drags the fit far off; the scaled neighbours average
    # only their faster half, which leaves it out whatever the bound.
    unguarded = pytest.MonkeyPatch()
    unguarded.setattr(regression, "SIZE_SPREAD", 50.0)
    try:
        unbounded = KernelRegressor(kernels, seconds, slopes).predict(query)
    finally:
        unguarded.undo()
    if slopes:
        assert unbounded > 2 * truth
    else:
        assert unbounded == pytest.approx(truth, rel=1e-9)


def test_scaled_neighbours_follow_their_undisturbed_timings() -> None:
    # Every other kernel of the grid timed 1.3x too slow (a busy moment of the host): the
    # faster half of the neighbours is the undisturbed ones, and the prediction is exact.
    seconds = [true_seconds(k) * (1.3 if i % 2 else 1.0) for i, k in enumerate(GRID)]
    scaled = KernelRegressor(GRID, seconds, slopes=False)
    assert scaled.predict(BETWEEN) == pytest.approx(true_seconds(BETWEEN), rel=1e-9)
    # Had they all been averaged (as before), the slow half would have pulled it up.
    everyone = KernelRegressor(GRID, seconds, slopes=False, faster_share=1.0).predict(BETWEEN)
    assert everyone / true_seconds(BETWEEN) > 1.05
    with pytest.raises(ValueError, match=r"argument `faster_share`: expected a share in"):
        KernelRegressor(GRID, seconds, slopes=False, faster_share=0.0)
    # A machine slower throughout keeps its level: the whole networks' fit has the same
    # timings to go by (sepconv.predict.whole_networks).
    slower = KernelRegressor(GRID, [1.3 * true_seconds(k) for k in GRID], slopes=False)
    assert slower.predict(BETWEEN) == pytest.approx(1.3 * true_seconds(BETWEEN), rel=1e-9)


GRID = [
    Kernel("conv", ((1, c, s, s),), (1, 2 * c, s, s))
    for c in (8, 16, 24, 32, 48, 64, 96)
    for s in (7, 14, 28, 56)
]
BETWEEN = Kernel("conv", ((1, 40, 20, 20),), (1, 80, 20, 20))  # among the grid's kernels
BEYOND = Kernel("conv", ((1, 256, 3, 3),), (1, 512, 3, 3))  # far from them all


def test_kernel_regressor_is_exact_on_a_power_law() -> None:
    regressor = KernelRegressor(GRID, [power_law(k) for k in GRID])
    assert regressor.predict(BETWEEN) == pytest.approx(power_law(BETWEEN), rel=2e-3)
    # Scaled by size instead, its neighbours miss the law (sizes grow faster than its time).
    scaled = KernelRegressor(GRID, [power_law(k) for k in GRID], slopes=False)
    assert abs(scaled.predict(BETWEEN) / power_law(BETWEEN) - 1) > 0.01


def test_neighbours_scaled_by_size_are_exact_where_time_follows_size() -> None:
    scaled = KernelRegressor(GRID, [true_seconds(k) for k in GRID], slopes=False)
    for query in (BETWEEN, BEYOND):
        assert scaled.predict(query) == pytest.approx(true_seconds(query), rel=1e-9)
    # Only ONNX Runtime's profiles are predicted so (the others fit a local power law).
    assert [fits_slopes(b) for b in ("onnxruntime", "eager", "openvino")] == [False, True, True]


def test_an_unpredictable_kernel_raises(fake_profile: Profile) -> None:
    model = nn.Sequential(ConvNormAct(3, 8, 3), nn.MaxPool2d(2))
    with pytest.raises(UnpredictableKernelError, match=r"`max_pool2d` in layer `1`"):
        predict_latency(model, 32, fake_profile)
    # A kernel kind the profile never measured is an error too, never a zero.
    pruned = Profile(
        **{
            **vars(fake_profile),
            "samples": tuple((k, t) for k, t in fake_profile.samples if k.kind != "se"),
            "_regressors": {},
        }
    )
    with pytest.raises(UnpredictableKernelError, match="measured no kernel of its group se"):
        predict_latency(MBConv(16, 16), (16, 14, 14), pruned)


def test_batch_and_input_sizes(fake_profile: Profile) -> None:
    model = sepconv.mobilenet_v2(width_mult=0.5)
    one = predict_latency(model, 96, fake_profile)
    eight = predict_latency(model, (3, 96, 96), fake_profile, batch_size=8)
    assert one.input_shape == (1, 3, 96, 96) and eight.input_shape == (8, 3, 96, 96)
    assert eight.ms > one.ms
    assert one.to_dict()["predicted_ms"] == pytest.approx(one.ms)
    with pytest.raises(ValueError, match="argument `input_size`"):
        predict_latency(model, (96, 96), fake_profile)
    with pytest.raises(ValueError, match="argument `batch_size`"):
        predict_latency(model, 96, fake_profile, batch_size=0)


def test_prediction_does_not_run_the_model(fake_profile: Profile) -> None:
    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.device.type != "meta":
                raise AssertionError("ran on real data")
            return self.conv(x)

    assert predict_latency(Exploding(), 32, fake_profile).seconds > 0
    assert math.isfinite(predict_latency(sepconv.efficientnet_b0(), 224, fake_profile).ms)


@pytest.mark.slow
def test_an_eager_calibration_fits_the_module_call_cost_on_whole_networks() -> None:
    profile = calibrate("eager", threads=1, budget_s=20, seed=5)
    # Eager PyTorch runs each op on its own: no fusion is tested for, none is assumed.
    assert profile.fusions == () and profile.fusion_tests == ()
    fit = profile.validation["network_fit"]
    # On a busy machine the short budget may sample too few kernel groups to predict any
    # network whole: then every variant falls back to an empty module's call.
    floor, networks = fit["empty_module_call_s"], fit["networks"]
    assert floor > 0
    for variant in profile.variants:
        rows = [r for r in networks if r["variant"] == variant]
        assert len(rows) <= whole_networks.OVERHEAD_NETWORKS
        assert all(r["measured_s"] > 0 and r["kernels_s"] > 0 for r in rows)
        # Each network's time is the median of its timings; they are timed in turn, so no
        # network has more than one timing more than another.
        for r in rows:
            assert r["measured_s"] == float(np.median(r["rounds_s"]))
        counts = [len(r["rounds_s"]) for r in rows]
        assert not counts or (min(counts) >= 1 and max(counts) - min(counts) <= 1)
        scale, per_call = profile.scale(variant), profile.module_call_s[variant]
        assert scale >= 0 and per_call >= floor  # never below an empty module's call
        if not rows:
            assert (scale, per_call) == (1.0, floor)
            continue

        def cost(a: float, m: float, rows: list = rows, variant: str = variant) -> float:
            """The fit's objective, recomputed from the recorded times."""
            call = profile.call_s[variant]
            errors = [
                (call + a * r["kernels_s"] + m * r["module_calls"]) / r["measured_s"] - 1
                for r in rows
            ]
            return float(np.sum(np.square(errors))) + whole_networks.SCALE_RIDGE * (a - 1) ** 2

        # The least cost over the allowed (a >= 0, m >= floor): no step from it does better,
        # nor does the kernels-as-predicted answer with the median cost per call.
        best = cost(scale, per_call)
        for da, dm in [(1e-3, 0), (-1e-3, 0), (0, 1e-8), (0, -1e-8)]:
            if scale + da >= 0 and per_call + dm >= floor:
                assert best <= cost(scale + da, per_call + dm) + 1e-12
        median = np.median(
            [
                (r["measured_s"] - profile.call_s[variant] - r["kernels_s"]) / r["module_calls"]
                for r in rows
            ]
        )
        assert best <= cost(1.0, max(float(median), floor)) + 1e-12
    # Saved and loaded, the fit and its records stay.
    again = Profile.from_dict(profile.to_dict())
    assert again.module_call_s == profile.module_call_s
    assert again.kernel_scale == profile.kernel_scale
    assert again.validation["network_fit"] == fit


def test_fit_networks_recovers_the_costs_whole_networks_were_made_of() -> None:
    rng = np.random.default_rng(0)
    kernels = rng.uniform(2e-3, 2e-2, 40)
    calls = rng.integers(100, 400, 40)
    call_s = 1e-4
    measured = call_s + 1.3 * kernels + 6e-6 * calls  # the kernels slower inside, 6 us a call
    fit = whole_networks.fit_networks(measured, kernels, calls, call_s, floor_s=1e-6)
    # Only the pull of the scale towards 1 keeps it off 1.3: by under 1% with 40 networks.
    assert 1.29 < fit.kernel_scale < 1.3
    assert fit.module_call_s == pytest.approx(6e-6, rel=0.02)
    # A floor above the truth holds the module-call cost there; the scale takes up the rest.
    floored = whole_networks.fit_networks(measured, kernels, calls, call_s, floor_s=1e-5)
    assert floored.module_call_s == 1e-5 and floored.kernel_scale < fit.kernel_scale
    # No network: the kernels as predicted, an empty module's call.
    nothing = whole_networks.fit_networks([], [], [], call_s, floor_s=1e-6)
    assert nothing == whole_networks.NetworkFit(1.0, 1e-6)


def signed(body: dict) -> dict:
    """A profile's JSON object with the checksum a calibration writes (SHA-256 of the body's
    compact, key-sorted JSON), as an edit by its own author would leave it."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return {**body, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def test_a_profile_scales_the_kernels_and_keeps_the_call_costs(fake_profile: Profile) -> None:
    model = sepconv.mobilenet_v2(width_mult=0.5)
    plain = predict_latency(model, 96, fake_profile)
    fitted = fake_profile.scale("native")  # fitted on the synthetic machine's networks: ~1
    data = fake_profile.to_dict()
    assert data["kernel_scale"] == {"native": fitted}
    data.pop("sha256")
    data["kernel_scale"] = {"native": 2.0}
    scaled = predict_latency(model, 96, Profile.from_dict(signed(data)))
    alone = [k.seconds / fitted for k in plain.kernels]  # the kernels as timed alone
    assert scaled.seconds == pytest.approx(plain.call_s + 2 * sum(alone), rel=1e-12)
    doubled = [2 * t for t in alone]
    assert [k.seconds for k in scaled.kernels] == pytest.approx(doubled, rel=1e-12)
    assert data["version"] == 2
    # A profile written before the scale was fitted (format 1) predicts its kernels as timed
    # alone; a format this sepconv does not know is refused.
    del data["kernel_scale"]
    with pytest.raises(ProfileError, match=r"format version 3; this sepconv reads versions 1, 2"):
        Profile.from_dict(signed({**data, "version": 3}))
    data["version"] = 1
    older = Profile.from_dict(signed(data))
    assert older.scale("native") == 1.0
    expected = plain.call_s + sum(alone)
    assert predict_latency(model, 96, older).seconds == pytest.approx(expected, rel=1e-12)
    data["kernel_scale"] = {fake_profile.variants[0]: -1.0}
    with pytest.raises(ProfileError, match=r"kernel_scale.*a finite factor from 0 to 100"):
        Profile.from_dict(signed(data))
