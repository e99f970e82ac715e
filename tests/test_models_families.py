"""MobileNetV3, MobileNetV4, EfficientNetV2 and ConvNeXt: parameter counts equal the reference
libraries' models exactly, torchvision's published parameters and MACs, the published variant
of a width, small inputs, stochastic depth as the references schedule it, the post-pool head."""

from __future__ import annotations

import pytest
import torch
from nets import randomize_norms
from torch import nn

from sepconv import fuse
from sepconv.analysis import analyze
from sepconv.layers import ConvNormAct, LayerNorm2d
from sepconv.models import (
    ConvNeXt,
    MobileNetV3,
    create_model,
    get_model_info,
    published_model_info,
)

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(name: str, **kwargs: object) -> int:
    with torch.device("meta"):
        return n_params(create_model(name, **kwargs))


# (sepconv name, its kwargs, library, the reference's name)
REFERENCES = [
    ("mobilenet_v3_large", {}, "torchvision", "mobilenet_v3_large"),
    ("mobilenet_v3_small", {}, "torchvision", "mobilenet_v3_small"),
    ("mobilenet_v3_large", {}, "timm", "mobilenetv3_large_100"),
    ("mobilenet_v3_large_075", {}, "timm", "mobilenetv3_large_075"),
    ("mobilenet_v3_small", {}, "timm", "mobilenetv3_small_100"),
    ("mobilenet_v3_small_075", {}, "timm", "mobilenetv3_small_075"),
    ("mobilenet_v3_small", {"width_mult": 0.5}, "timm", "mobilenetv3_small_050"),
    ("mobilenet_v4_conv_small", {}, "timm", "mobilenetv4_conv_small"),
    ("mobilenet_v4_conv_medium", {}, "timm", "mobilenetv4_conv_medium"),
    ("efficientnet_v2_s", {}, "torchvision", "efficientnet_v2_s"),
    ("efficientnet_v2_m", {}, "torchvision", "efficientnet_v2_m"),
    ("efficientnet_v2_l", {}, "torchvision", "efficientnet_v2_l"),
    ("convnext_tiny", {}, "torchvision", "convnext_tiny"),
    ("convnext_small", {}, "torchvision", "convnext_small"),
    ("convnext_tiny", {}, "timm", "convnext_tiny"),
    ("convnext_small", {}, "timm", "convnext_small"),
]


def build_reference(library: str, name: str, **kwargs: object) -> nn.Module:
    if library == "torchvision":
        return torchvision.models.get_model(name, **kwargs)
    return timm.create_model(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "library", "reference"),
    REFERENCES,
    ids=[f"{lib}-{ref}" for _, _, lib, ref in REFERENCES],
)
def test_param_count_equals_the_reference_model(
    name: str, kwargs: dict, library: str, reference: str
) -> None:
    with torch.device("meta"):
        expected = n_params(build_reference(library, reference))
        other = n_params(build_reference(library, reference, num_classes=10))
    assert count(name, **kwargs) == expected
    assert count(name, num_classes=10, **kwargs) == other


TORCHVISION_WEIGHTS = {
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
    "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
    "efficientnet_v2_s": "EfficientNet_V2_S_Weights",
    "efficientnet_v2_m": "EfficientNet_V2_M_Weights",
    "efficientnet_v2_l": "EfficientNet_V2_L_Weights",
    "convnext_tiny": "ConvNeXt_Tiny_Weights",
    "convnext_small": "ConvNeXt_Small_Weights",
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_WEIGHTS))
def test_params_macs_and_resolution_match_torchvision_metadata(name: str) -> None:
    """torchvision publishes each weight entry's parameters, GMACs (``_ops``) and evaluation
    crop; sepconv's model counts the same at its registered input size."""
    weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    side = get_model_info(name).input_size
    assert weights.transforms().crop_size == [side]
    with torch.device("meta"):
        report = analyze(create_model(name), (1, 3, side, side))
    assert report.total_params == weights.meta["num_params"]
    assert round(report.macs / 1e9, 3) == weights.meta["_ops"]
    assert report.unknown_ops == {}


@pytest.mark.parametrize(
    ("model", "kwargs", "variant"),
    [
        ("mobilenet_v3_large", {"width_mult": 0.75}, "mobilenet_v3_large_075"),
        ("mobilenet_v3_small_075", {}, "mobilenet_v3_small_075"),
        ("mobilenet_v3_small", {"drop_rate": 0.1}, "mobilenet_v3_small"),
        ("efficientnet_v2_s", {"drop_path_rate": 0.0}, "efficientnet_v2_s"),
    ],
)
def test_published_figures_belong_to_the_variant(model: str, kwargs: dict, variant: str) -> None:
    info = published_model_info(model, kwargs)
    assert info is not None and info.name == variant
    assert published_model_info("mobilenet_v3_large", {"width_mult": 0.6}) is None


@pytest.mark.parametrize(
    ("name", "reductions"),
    [
        ("mobilenet_v3_large", [1, 1, 2, 4, 8]),
        ("mobilenet_v3_small", [1, 1, 2, 4, 8]),
        ("mobilenet_v4_conv_small", [1, 1, 2, 4, 8]),
        ("efficientnet_v2_s", [1, 1, 2, 4, 8]),
        # the 4x4 stem strides 2 (not 1): 2x2 downsampling convs cannot keep a size
        ("convnext_tiny", [2, 4, 8, 16]),
    ],
)
def test_small_input_reduces_the_stride_and_keeps_the_params(
    name: str, reductions: list[int]
) -> None:
    model = create_model(name, small_input=True, features_only=True)
    assert [i.reduction for i in model.feature_info] == reductions
    assert count(name, small_input=True) == count(name)
    with torch.no_grad():
        maps = model.eval()(torch.randn(1, 3, 28, 28))
    assert min(m.shape[-1] for m in maps) >= 1


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [b for stage in model.stages for b in stage if hasattr(b, "has_residual")]


def test_efficientnet_v2_drop_path_as_torchvision() -> None:
    rate = 0.3
    ours = _blocks(create_model("efficientnet_v2_s", drop_path_rate=rate))
    reference = torchvision.models.efficientnet_v2_s(stochastic_depth_prob=rate)
    theirs = [b for stage in reference.features[1:-1] for b in stage]
    assert len(ours) == len(theirs) == 40
    for block, twin in zip(ours, theirs, strict=True):
        assert block.has_residual == twin.use_res_connect
        if isinstance(block.drop_path, nn.Identity):
            assert not block.has_residual or twin.stochastic_depth.p == 0
        else:
            assert block.drop_path.p == pytest.approx(twin.stochastic_depth.p, rel=1e-12)


def test_convnext_drop_path_as_torchvision_and_timm() -> None:
    # torchvision: rate * i / (N - 1); timm: linspace(0, rate, N): the last block gets the rate
    ours = create_model("convnext_tiny", drop_path_rate=0.1)
    rates = [getattr(b.drop_path, "p", 0.0) for stage in ours.stages for b in stage.blocks]
    reference = torchvision.models.convnext_tiny(stochastic_depth_prob=0.1)
    theirs = [
        m.stochastic_depth.p
        for m in reference.modules()
        if type(m).__name__ == "CNBlock"  # torchvision's ConvNeXt block
    ]
    assert rates == pytest.approx(theirs, rel=1e-12)
    assert rates[-1] == pytest.approx(0.1)


def test_post_pool_heads() -> None:
    v3 = create_model("mobilenet_v3_large", num_classes=10)
    assert isinstance(v3.pre_logits, ConvNormAct) and not hasattr(v3.pre_logits, "bn")
    assert (v3.pre_logits.conv.in_channels, v3.pre_logits.conv.out_channels) == (960, 1280)
    assert isinstance(v3.pre_logits.act, nn.Hardswish)
    assert (v3.num_features, v3.classifier.in_features) == (960, 1280)
    v4 = create_model("mobilenet_v4_conv_small")
    assert isinstance(v4.pre_logits.bn, nn.BatchNorm2d) and v4.pre_logits.conv.bias is None
    assert isinstance(create_model("convnext_tiny").pre_logits, LayerNorm2d)
    assert isinstance(create_model("mobilenet_v2").pre_logits, nn.Identity)
    # forward = forward_head(forward_features), the head pooling first
    x = torch.randn(2, 3, 64, 64)
    v3.eval()
    with torch.no_grad():
        torch.testing.assert_close(v3.forward_head(v3.forward_features(x)), v3(x))


@pytest.mark.parametrize(
    ("name", "eps"),
    [
        ("mobilenet_v3_large", 1e-3),
        ("efficientnet_v2_s", 1e-3),
        ("mobilenet_v4_conv_small", 1e-5),
    ],
)
def test_bn_eps_as_the_reference(name: str, eps: float) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {eps}


def test_fuse_folds_the_post_pool_norm_and_keeps_layer_norms() -> None:
    torch.manual_seed(0)
    v4 = randomize_norms(create_model("mobilenet_v4_conv_small", num_classes=10)).eval()
    folded = fuse(v4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert isinstance(folded.pre_logits.bn, nn.Identity)
    convnext = create_model("convnext_tiny", num_classes=10, small_input=True).eval()
    norms = [n for n, m in convnext.named_modules() if isinstance(m, nn.LayerNorm)]
    folded = fuse(convnext)
    assert [n for n, m in folded.named_modules() if isinstance(m, nn.LayerNorm)] == norms
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), convnext(x), rtol=1e-5, atol=1e-6)


def test_arch_is_checked() -> None:
    with pytest.raises(ValueError, match=r"`arch`: expected one of 'large', 'small', received 'x'"):
        MobileNetV3(arch="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`drop_path_rate`: expected a probability"):
        ConvNeXt(arch="tiny", drop_path_rate=1.0)


def test_convnext_starts_as_torchvision() -> None:
    """Every conv and linear weight truncated-normal with std 0.02, biases zero (the MLP's
    linear layers of torchvision are 1x1 convs here)."""
    torch.manual_seed(0)
    ours = [
        m for m in create_model("convnext_tiny").modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    theirs = [
        m
        for m in torchvision.models.convnext_tiny().modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert [m.weight.numel() for m in ours] == [m.weight.numel() for m in theirs]
    for got, expected in zip(ours, theirs, strict=True):
        assert got.weight.std().item() == pytest.approx(expected.weight.std().item(), rel=0.1)
        assert bool(got.bias.eq(0).all()) and bool(expected.bias.eq(0).all())
