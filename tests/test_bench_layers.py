"""Layer capture, per-layer reports and the standard-conv twin: structure and counts, no timings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

import sepconv
from sepconv.analysis import HEADLINE_KINDS, analyze
from sepconv.bench.per_layer import (
    LayerTiming,
    ModuleCost,
    costs_from_analysis,
    per_layer_latency,
)
from sepconv.bench.roofline import Ceilings
from sepconv.bench.timing import Timing
from sepconv.bench.twin import LayerSpec, TwinComparison, compare_twin
from sepconv.convert.twin import standard_twin
from sepconv.utils.capture import capture


def _odd_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(5, 7, 1),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(28, 4),
    ).eval()


def test_capture_sees_the_real_inputs_and_shapes() -> None:
    net, x = _odd_net(), torch.randn(2, 3, 17, 13)
    calls = capture(net, x)
    expected, h = [], x
    with torch.no_grad():
        for layer in net:
            expected.append(h.clone())
            h = layer(h)
    assert [c.name for c in calls] == [str(i) for i in range(6)]
    for call, real in zip(calls, expected, strict=True):
        assert call.input_shapes == (tuple(real.shape),)
        # ReLU(inplace=True) rewrites the conv output later in the pass; the capture must not.
        assert torch.equal(call.args[0], real)
    assert calls[0].output_shape == (2, 5, 8, 6)
    assert calls[-1].output_shape == (2, 4)


def test_capture_nesting_and_shared_modules() -> None:
    relu = nn.ReLU()
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 1), relu), relu)
    calls = {c.name: c for c in capture(net, torch.randn(1, 3, 4, 4), keep_inputs=False)}
    outer, inner = calls["0"], calls["0.0"]
    assert outer.start < inner.start < inner.end < outer.end
    assert not outer.is_leaf and inner.is_leaf and inner.args == ()
    assert calls["0.1"].calls == 2  # the shared ReLU, reached under its first name only


def test_per_layer_rows_follow_the_model_and_totals_match_the_analyzer() -> None:
    model = sepconv.create_model("mobilenet_v1", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    ceilings = Ceilings(peak_gflops=100.0, bandwidth_gbs=10.0, threads=1, dtype="float32")
    report = per_layer_latency(model, x, ceilings=ceilings, threads=1, warmup=1, repeats=3)
    leaves = [c for c in capture(model, x, keep_inputs=False) if c.is_leaf]
    assert [r.name for r in report.rows] == [c.name for c in leaves]
    assert [r.input_shape for r in report.rows] == [c.input_shapes[0] for c in leaves]
    headline = [r for r in report.rows if r.cost is not None and r.cost.kind in HEADLINE_KINDS]
    assert sum(r.cost.macs for r in headline if r.cost) == analyze(model, (1, 3, 32, 32)).macs
    assert all(r.roofline is not None for r in headline)
    kinds = {r.cost.kind for r in headline if r.cost}
    assert {"depthwise_conv", "pointwise_conv", "standard_conv", "linear"} <= kinds
    assert report.coverage == pytest.approx(report.layers_total_s / report.model_timing.median_s)
    assert report.to_dict()["rows"][0]["kind"] == "standard_conv"


def test_costs_sum_every_op_of_a_module() -> None:
    net = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    costs = costs_from_analysis(analyze(net, (1, 2, 6, 6)))
    assert costs["0"].kind == "standard_conv"
    assert costs["0"].macs == 4 * 4 * 4 * 2 * 9  # outputs x (C_in x K x K)
    assert costs["1"].kind == "norm"


def test_twin_of_a_layer_is_one_standard_conv_with_the_published_mac_ratio() -> None:
    spec = LayerSpec(16, 32, 12, stride=2, dilation=1)
    x = spec.example()
    twin, pairs = standard_twin(spec.separable(), x)
    convs = [m for m in twin.modules() if isinstance(m, nn.Conv2d)]
    assert pairs == 1 and len(convs) == 1
    conv = convs[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.groups) == (
        16,
        32,
        (3, 3),
        (2, 2),
        1,
    )
    assert twin(x).shape == (1, 32, 6, 6)
    cmp = compare_twin(spec.separable(), x, threads=1, warmup=1, repeats=3)
    assert cmp.standard_macs == 32 * 16 * 9 * 6 * 6  # C_out x C_in x K^2 x H' x W'
    # Howard et al. 2017, eq. 5: separable / standard = 1/C_out + 1/K^2.
    assert cmp.mac_ratio == pytest.approx(1 / (1 / 32 + 1 / 9))


@pytest.mark.parametrize(
    ("build", "pairs"),
    [
        (lambda: sepconv.create_model("mobilenet_v2", num_classes=10), 17),
        (lambda: sepconv.create_model("efficientnet_b0", num_classes=10), 16),  # SE in between
        (lambda: torchvision.models.mobilenet_v2(num_classes=10), 17),
        (lambda: torchvision.models.efficientnet_b0(num_classes=10), 16),
    ],
)
def test_twin_of_a_model_replaces_every_pair_and_still_runs(
    build: Callable[[], nn.Module], pairs: int
) -> None:
    model, x = build().eval(), torch.randn(1, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin, replaced = standard_twin(model, x)
    assert replaced == pairs
    assert not any(m.groups > 1 for m in twin.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        assert twin(x).shape == (1, 10)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original is untouched


def test_a_depthwise_conv_without_a_pointwise_partner_is_left_alone() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1, stride=2))
    with pytest.raises(ValueError, match="`model`: expected a model with at least one depthwise"):
        compare_twin(net, torch.randn(1, 8, 8, 8), repeats=3)


def _ms(*values: float) -> Timing:
    return Timing.from_samples([v / 1e3 for v in values], threads=1, device="cpu")


def test_reported_rates_and_ratios_are_counts_over_median_times() -> None:
    # Medians of 2 ms and 8 ms, means of 4 ms and 10 ms: only the median gives these figures.
    row = LayerTiming(
        "0", "Conv2d", (1, 3, 8, 8), (1, 4, 8, 8), _ms(1, 2, 9),
        cost=ModuleCost("standard_conv", macs=6_000_000, bytes_moved=1_000_000),
    )  # fmt: skip
    assert row.gmacs_per_s == pytest.approx(3.0)  # MACs, not FLOPs
    assert row.gbytes_per_s == pytest.approx(0.5)
    assert row.to_dict()["gmacs_per_s"] == row.gmacs_per_s
    twin = TwinComparison("layer", 1, 1_000, 9_000, _ms(1, 2, 9), _ms(6, 8, 16), False)
    assert (twin.mac_ratio, twin.latency_ratio) == (9.0, 4.0)
    assert twin.to_dict()["latency_ratio"] == 4.0 and twin.to_dict()["mac_ratio"] == 9.0
