"""The model family: published parameter counts, registry behaviour, registry-generated smoke
tests (shape, gradients, NaN, small inputs, feature maps) and the ``sepconv zoo`` table."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import sepconv
from sepconv.cli import main
from sepconv.layers import ConvNormAct, SqueezeExcite
from sepconv.models import (
    create_model,
    get_model_info,
    list_models,
    published_model_info,
    register_model,
)
from sepconv.models._registry import _REGISTRY

# Published parameter counts at 1000 classes.
# torchvision: the "num_params" of each model's IMAGENET1K_V1 weights entry
#   (torchvision/models/{mobilenetv2,mobilenetv3,efficientnet,convnext,vgg,resnet}.py).
# mobilenet_v1: timm mobilenetv1_100 and Keras Applications MobileNet (alpha 1.0) trainable count.
# xception: timm legacy_xception and Keras Applications Xception trainable count.
PUBLISHED_PARAMS = {
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "mobilenet_v1": 4_231_976,
    "xception": 22_855_952,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_v2_s": 21_458_488,
    "efficientnet_v2_m": 54_139_356,
    "efficientnet_v2_l": 118_515_272,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
}


def count_params(name: str, **kwargs: object) -> int:
    # the meta device allocates nothing, so even VGG-16 and B7 are counted instantly
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, **kwargs).parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_param_count(name: str) -> None:
    assert count_params(name) == PUBLISHED_PARAMS[name]


def mobilenet_v1_closed_form(alpha: float, classes: int = 1000) -> int:
    """Howard et al. 2017 Table 1 summed by hand: stem conv + BN, 13 (dw 3x3 + BN + pw + BN),
    linear classifier; channels ``int(c * alpha)`` as in Keras (exact for alpha in 1/4 steps)."""
    c = [
        int(x * alpha)
        for x in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    ]
    total = 3 * 3 * 3 * c[0] + 2 * c[0]
    for cin, cout in itertools.pairwise(c):
        total += 9 * cin + 2 * cin + cin * cout + 2 * cout
    return total + c[-1] * classes + classes


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
def test_mobilenet_v1_width_matches_closed_form(alpha: float) -> None:
    assert count_params("mobilenet_v1", width_mult=alpha) == mobilenet_v1_closed_form(alpha)
    assert mobilenet_v1_closed_form(1.0) == PUBLISHED_PARAMS["mobilenet_v1"]  # the sum is right


@pytest.mark.parametrize("width", [0.5, 0.75])
def test_mobilenet_v2_width_matches_torchvision(width: float) -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        reference = torchvision.models.mobilenet_v2(width_mult=width)
    expected = sum(p.numel() for p in reference.parameters())
    assert count_params("mobilenet_v2", width_mult=width) == expected
    suffix = f"{round(width * 100):03d}"
    assert count_params(f"mobilenet_v2_{suffix}") == expected


# small_input is implemented once per model class: one member of each family covers it
@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v1",
        "mobilenet_v2",
        "efficientnet_b2",
        "xception",
        "vgg16",
        "resnet50",
        "mobilenet_v3_small",
        "mobilenet_v4_conv_medium",
        "efficientnet_v2_s",
        "convnext_tiny",
    ],
)
def test_small_input_keeps_param_count(name: str) -> None:
    assert count_params(name, small_input=True) == count_params(name)


def test_list_models_and_pattern() -> None:
    names = list_models()
    assert names == sorted(names)
    for required in ("mobilenet_v1", "mobilenet_v2", "xception", "vgg16", "resnet50"):
        assert required in names
    assert list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(8)]
    assert list_models("no_such_*") == []


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ValueError, match=r"'mobilenet_v3'.*Did you mean 'mobilenet_v2'"):
        create_model("mobilenet_v3")


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) width_mult.*num_classes"):
        create_model("resnet50", width_mult=0.5)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match=r"'resnet50' \(already registered"):

        @register_model(input_size=224, top1=0.0, source="test", name="resnet50")
        def clash() -> nn.Module:
            return nn.Identity()

    assert _REGISTRY["resnet50"].builder is sepconv.resnet50


def test_builders_record_architecture_and_metadata() -> None:
    model = sepconv.mobilenet_v1(width_mult=0.25, num_classes=3)
    assert model.arch_name == "mobilenet_v1"
    assert model.arch_kwargs == {"width_mult": 0.25, "num_classes": 3}
    assert isinstance(model, sepconv.models.MobileNetV1)
    info = get_model_info("efficientnet_b3")
    assert (info.input_size, info.top1) == (300, 81.6)
    assert all(get_model_info(n).source for n in list_models())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width_mult": 0}, r"`width_mult`: expected a positive number, received 0"),
        ({"num_classes": 0}, r"`num_classes`: expected a positive integer, received 0"),
        ({"drop_rate": 1.5}, r"`drop_rate`"),
        ({"bn_eps": -1.0}, r"`bn_eps`: expected a positive number, received -1.0"),
        ({"stem_stride": 4}, r"`stem_stride`: expected 1, 2 or None .*received 4"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("mobilenet_v2", **kwargs)


# ----------------------------------------------------------------------------------------------
# Registry-generated smoke tests: every registered model, grayscale, 7 classes, small inputs.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_on_small_grayscale_input(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1, small_input=True)
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize("name", list_models())
def test_every_conv_norm_act_is_the_one_primitive(name: str) -> None:
    # Every convolution is the conv of a ConvNormAct, except squeeze-excite's two 1x1 convs,
    # which act as its fully connected layers (Hu et al. 2018).
    with torch.device("meta"):
        model = create_model(name)
    parents = {name: module for name, module in model.named_modules()}
    outside = [
        conv_name
        for conv_name, conv in model.named_modules()
        if isinstance(conv, nn.Conv2d)
        and not isinstance(parents[conv_name.rpartition(".")[0]], (ConvNormAct, SqueezeExcite))
    ]
    assert outside == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in _outside_conv_norm_act(model))


def _outside_conv_norm_act(module: nn.Module) -> list[nn.Module]:
    """The modules of ``module`` that are not inside a ConvNormAct."""
    if isinstance(module, ConvNormAct):
        return []
    return [module] + [m for child in module.children() for m in _outside_conv_norm_act(child)]


def expected_size(name: str, size: int, reduction: int, module: str) -> int:
    """Spatial size of a level: ``ceil(size / reduction)``, except Xception's unpadded stem
    (3x3 stride 2 then 3x3, no padding: 64 -> 31 -> 29), which shifts its deeper levels too."""
    if not name.startswith("xception"):
        return math.ceil(size / reduction)
    # 29 after the stem, then halved (rounding up) by each strided block
    return {"stem": 29, "stages.0": 15, "stages.1": 8, "stages.3": 4, "final": 2}[module]


@pytest.mark.parametrize("name", list_models())
def test_features_only_matches_feature_info(name: str) -> None:
    model = create_model(name, features_only=True, in_chans=1).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 1, 64, 64))
    assert len(maps) == len(model.feature_info) >= 4
    for fmap, info in zip(maps, model.feature_info, strict=True):
        size = expected_size(name, 64, info.reduction, info.module)
        assert fmap.shape == (1, info.channels, size, size), info
    assert [i.reduction for i in model.feature_info][-1] == 32
    assert not hasattr(model, "classifier")


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b3"])
def test_efficientnet_offers_bifpn_levels(name: str) -> None:
    levels = {info.level for info in create_model(name, features_only=True).feature_info}
    assert {3, 4, 5} <= levels


def test_bn_eps_reaches_every_norm() -> None:
    # torchvision's B5-B7 weights come from TensorFlow and need eps=1e-3
    with torch.device("meta"):
        model = create_model("efficientnet_b5", bn_eps=1e-3)
    eps = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert eps == {1e-3}


def test_small_input_reduces_to_eight() -> None:
    model = create_model("mobilenet_v2", small_input=True, features_only=True)
    assert [i.reduction for i in model.feature_info] == [1, 1, 2, 4, 8]


# stem_stride is shared by the depthwise-separable families with a 3x3 stem
@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v1",
        "mobilenet_v2",
        "efficientnet_b0",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "mobilenet_v4_conv_small",
        "efficientnet_v2_s",
    ],
)
def test_stem_stride_overrides_small_input(name: str) -> None:
    wide = create_model(name, small_input=True, stem_stride=2, features_only=True)
    assert [i.reduction for i in wide.feature_info] == [2, 2, 4, 8, 16]
    full = create_model(name, small_input=False, stem_stride=1, features_only=True)
    assert [i.reduction for i in full.feature_info] == [1, 2, 4, 8, 16]
    assert count_params(name, small_input=True, stem_stride=2) == count_params(name)


def test_forward_features_and_head_compose() -> None:
    model = create_model("mobilenet_v1_025", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, model.num_features, 2, 2)
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "blocks"), [("efficientnet_b0", 16), ("efficientnet_b2", 23)])
def test_drop_path_grows_linearly_in_efficientnet(name: str, blocks: int) -> None:
    """Block ``i`` of ``N`` (counted over the whole network, from 0) drops its residual branch
    with probability ``rate * i / N``: torchvision's ``stochastic_depth_prob * block_id /
    total_blocks`` and timm's ``drop_path_rate * block_idx / block_count``. Blocks without a
    residual have nothing to drop; torchvision still builds them a (never used) StochasticDepth.
    """
    import torchvision

    rate = 0.3
    model = create_model(name, drop_path_rate=rate)
    ours = [b for stage in model.stages for b in stage]
    assert len(ours) == blocks  # B0's 16 blocks; B2's depth multiplier 1.2 rounds up to 23
    expected = [rate * i / blocks for i in range(blocks)]
    reference = getattr(torchvision.models, name)(stochastic_depth_prob=rate)
    theirs = [b for stage in reference.features[1:-1] for b in stage]
    assert len(theirs) == blocks
    for i, (block, twin) in enumerate(zip(ours, theirs, strict=True)):
        assert block.has_residual == twin.use_res_connect
        assert twin.stochastic_depth.p == pytest.approx(expected[i], rel=1e-12)
        if block.has_residual and i > 0:
            assert block.drop_path.p == pytest.approx(expected[i], rel=1e-12)
        else:  # no residual, or the first block's rate of 0: nothing to drop
            assert isinstance(block.drop_path, nn.Identity)


def test_zoo_prints_sourced_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "efficientnet_b[07]"]) == 0
    out = capsys.readouterr().out
    assert "5,288,548" in out and "66,347,960" in out
    assert "77.1" in out and "84.3" in out and "Tan & Le 2019" in out
    assert "mobilenet" not in out


def test_zoo_rejects_pattern_matching_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "nothing*"]) == 2
    assert "received 'nothing*'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "kwargs", "variant"),
    [
        ("mobilenet_v1", {"width_mult": 0.25}, "mobilenet_v1_025"),
        ("mobilenet_v1", {}, "mobilenet_v1"),
        ("mobilenet_v1_050", {}, "mobilenet_v1_050"),
        ("mobilenet_v2", {"width_mult": 0.5, "drop_rate": 0.1}, "mobilenet_v2_050"),
        ("efficientnet_b0", {"drop_rate": 0.0}, "efficientnet_b0"),
        ("resnet50", {"zero_init_residual": True}, "resnet50"),
    ],
)
def test_published_figures_belong_to_the_variant_the_arguments_build(
    model: str, kwargs: dict, variant: str
) -> None:
    info = published_model_info(model, kwargs)
    assert info is not None and info.name == variant
    # Independent route: the named variant and the model with these arguments are one
    # architecture (the same parameter shapes, in order).
    built = create_model(model, **kwargs)
    published = create_model(variant)
    assert [p.shape for p in built.parameters()] == [p.shape for p in published.parameters()]


def test_a_width_nobody_published_has_no_published_figure() -> None:
    assert published_model_info("mobilenet_v1", {"width_mult": 0.3}) is None
    assert published_model_info("mobilenet_v2", {"width_mult": 0.35}) is None
    # The width-1.0 figure is not the width-0.25 one (the table once showed 70.6 for both).
    assert (
        published_model_info("mobilenet_v1", {"width_mult": 0.25}).top1
        != get_model_info(  # type: ignore[union-attr]
            "mobilenet_v1"
        ).top1
    )
