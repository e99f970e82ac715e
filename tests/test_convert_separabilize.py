"""separabilize(): whole models converted exactly at full rank, with an honest report."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from sepconv import analyze, create_model, separabilize
from sepconv.layers import DepthwiseSeparableConv2d


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


class UserNet(nn.Module):
    """A VGG-like user model with a grouped, a non-square, a 1x1 and a depthwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 5, stride=2, padding=2, bias=False),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4),
            nn.Conv2d(16, 16, (1, 3), padding=(0, 1)),
            nn.Conv2d(16, 32, 1),
            nn.Conv2d(32, 32, 3, padding=1, groups=32),
        )
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def test_user_model_full_rank_is_exact_and_skips_are_reported():
    torch.manual_seed(0)
    model = UserNet().double().eval()
    converted, report = separabilize(model)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert _relative(converted(x), model(x)) < 1e-5
    assert [layer.name for layer in report.layers] == ["features.0", "features.3", "features.5"]
    assert isinstance(converted.features[0], DepthwiseSeparableConv2d)
    assert isinstance(model.features[0], nn.Conv2d)  # the original is left untouched
    assert converted.features[5].conv_pw.conv.groups == 4  # grouped conv -> grouped pointwise
    assert [layer.groups for layer in report.layers] == [1, 1, 4]
    reasons = dict(report.skipped)
    assert "non-square kernel 1x3" in reasons["features.6"]
    assert "1x1 kernel" in reasons["features.7"]
    assert "depthwise convolution (groups=in_channels=32)" in reasons["features.8"]


def test_torchvision_resnet18_full_rank_is_exact():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).double().eval()
    converted, report = separabilize(model)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    assert _relative(converted(x), model(x)) < 1e-5
    assert len(report.layers) == 17  # the 7x7 stem and 16 3x3 convs; 1x1 shortcuts are skipped
    assert max(layer.relative_error for layer in report.layers) < 1e-7


def test_sepconv_model_converts_only_its_standard_convs():
    model = create_model("mobilenet_v2", num_classes=10).eval()
    converted, report = separabilize(model, rank=2)
    standard = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size[0] > 1
    ]
    assert [layer.name for layer in report.layers] == standard
    assert converted(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_report_params_and_macs_match_independent_counts():
    torch.manual_seed(0)
    model = UserNet().eval()
    converted, report = separabilize(model, rank=2, input_size=(1, 3, 16, 16))
    assert report.params_before == sum(p.numel() for p in model.parameters())
    assert report.params_after == sum(p.numel() for p in converted.parameters())
    assert report.macs_before == analyze(model, (1, 3, 16, 16)).macs
    assert report.macs_after == analyze(converted, (1, 3, 16, 16)).macs
    first, second, grouped = report.layers
    # Closed forms: standard C_out*C_in/g*K^2*H'*W'; decoupled R*C_in*(K^2 + C_out/g)*H'*W'.
    assert first.macs_before == 8 * 3 * 9 * 16 * 16
    assert first.macs_after == 2 * 3 * (9 + 8) * 16 * 16
    assert second.macs_before == 16 * 8 * 25 * 8 * 8
    assert second.macs_after == 2 * 8 * (25 + 16) * 8 * 8
    assert grouped.macs_before == 16 * 4 * 9 * 8 * 8
    assert grouped.macs_after == 2 * 16 * (9 + 4) * 8 * 8
    assert grouped.params_after == 2 * 16 * (9 + 4) + 16
    assert first.params_before == 8 * 3 * 9 + 8
    assert first.params_after == 2 * 3 * (9 + 8) + 8
    assert report.to_dict()["layers"][0]["rank"] == 2


def test_each_layers_macs_are_its_own_among_siblings_of_similar_names():
    # Children "1" and "10" of one Sequential: layer 1's MACs are those of "1" and its children
    # ("1.conv_dw", ...), never of "10".
    model = nn.Sequential(*(nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(11)))
    _, report = separabilize(model, rank=1, input_size=(1, 4, 6, 6))
    assert [layer.name for layer in report.layers] == [str(i) for i in range(11)]
    assert {layer.macs_before for layer in report.layers} == {4 * 4 * 9 * 36}
    assert {layer.macs_after for layer in report.layers} == {1 * 4 * (9 + 4) * 36}
    before, after = report.macs_before, report.macs_after
    assert (before, after) == (11 * 4 * 4 * 9 * 36, 11 * 4 * 13 * 36)
    assert f"{before:,} -> {after:,} ({before / after:.2f}x fewer)" in str(report.table().caption)
    params = f"{report.params_before:,} -> {report.params_after:,} (2.77x fewer)"
    assert params in str(report.table().caption)  # 11 x 144 -> 11 x 52


def test_rank_is_capped_and_energy_chooses_per_layer():
    torch.manual_seed(0)
    model = UserNet()
    _, capped = separabilize(model, rank=50)
    assert [layer.rank for layer in capped.layers] == [8, 16, 4]  # min(C_out/g, K*K)
    _, by_energy = separabilize(model, energy=0.8)
    for layer in by_energy.layers:
        assert 1 <= layer.rank <= layer.full_rank
        assert layer.relative_error <= (1 - 0.8) ** 0.5 + 1e-9


def test_skip_patterns():
    _, report = separabilize(UserNet(), rank=1, skip=["features.0"])
    assert [layer.name for layer in report.layers] == ["features.3", "features.5"]
    assert ("features.0", "matched by `skip`") in report.skipped


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 2, "energy": 0.9}, r"`rank` and `energy`: expected at most one"),
        ({"rank": 0}, r"`rank`: expected a positive integer, received 0"),
        ({"energy": 2.0}, r"`energy`: expected a number in \(0, 1\], received 2.0"),
        ({"skip": ["nope.*"]}, r"`skip`.*received 'nope.\*', which matches none"),
    ],
)
def test_invalid_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        separabilize(UserNet(), **kwargs)


def test_model_that_is_a_conv():
    conv = nn.Conv2d(3, 4, 3).double()
    converted, report = separabilize(conv, input_size=(1, 3, 8, 8))
    assert isinstance(converted, DepthwiseSeparableConv2d)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    assert _relative(converted(x), conv(x)) < 1e-5
    assert report.layers[0].macs_after == report.macs_after
