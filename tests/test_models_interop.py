"""Weight interop with the real torchvision and timm models (randomly initialised, no download):
their state dicts load into sepconv's models and give the same outputs."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from sepconv.modelfile import load_weights
from sepconv.models import create_model

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

# (sepconv name, reference builder, format, sepconv builder kwargs)
CASES: list[tuple[str, Callable[[], nn.Module], str, dict[str, float]]] = [
    ("mobilenet_v2", lambda: torchvision.models.mobilenet_v2(), "torchvision", {}),
    ("efficientnet_b0", lambda: torchvision.models.efficientnet_b0(), "torchvision", {}),
    ("vgg16", lambda: torchvision.models.vgg16(), "torchvision", {}),
    ("resnet50", lambda: torchvision.models.resnet50(), "torchvision", {}),
    ("mobilenet_v1", lambda: timm.create_model("mobilenetv1_100"), "timm", {}),
    ("mobilenet_v2", lambda: timm.create_model("mobilenetv2_100"), "timm", {}),
    ("efficientnet_b0", lambda: timm.create_model("efficientnet_b0"), "timm", {}),
    ("xception", lambda: timm.create_model("legacy_xception"), "timm", {}),
    ("mobilenet_v3_large", lambda: torchvision.models.mobilenet_v3_large(), "torchvision", {}),
    ("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(), "torchvision", {}),
    # timm's MobileNetV3 normalises with eps 1e-5, torchvision's (and TensorFlow's) with 1e-3
    (
        "mobilenet_v3_large",
        lambda: timm.create_model("mobilenetv3_large_100"),
        "timm",
        {"bn_eps": 1e-5},
    ),
    (
        "mobilenet_v3_small_075",
        lambda: timm.create_model("mobilenetv3_small_075"),
        "timm",
        {"bn_eps": 1e-5},
    ),
    ("mobilenet_v4_conv_small", lambda: timm.create_model("mobilenetv4_conv_small"), "timm", {}),
    ("mobilenet_v4_conv_medium", lambda: timm.create_model("mobilenetv4_conv_medium"), "timm", {}),
    ("efficientnet_v2_s", lambda: torchvision.models.efficientnet_v2_s(), "torchvision", {}),
    ("convnext_tiny", lambda: torchvision.models.convnext_tiny(), "torchvision", {}),
    ("convnext_tiny", lambda: timm.create_model("convnext_tiny"), "timm", {}),
]


def randomise_batchnorm(model: nn.Module) -> None:
    """Give every BN non-trivial statistics and affine terms, so a swapped BN shows up; every
    LayerNorm non-trivial affine terms and every layer scale (ConvNeXt starts them at 1e-6,
    which would hide its blocks) a value near 1."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    for name, param in model.named_parameters():
        if name.endswith(("layer_scale", "gamma")):
            param.data.uniform_(0.5, 1.5)


@pytest.mark.parametrize(
    ("name", "reference", "fmt", "kwargs"), CASES, ids=[f"{c[2]}-{c[0]}" for c in CASES]
)
def test_reference_weights_give_same_outputs(
    name: str, reference: Callable[[], nn.Module], fmt: str, kwargs: dict[str, float]
) -> None:
    torch.manual_seed(0)
    ref = reference().eval()
    randomise_batchnorm(ref)
    ours = create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = ours(x)
        load_weights(ours, ref.state_dict(), format=fmt)
        expected, got = ref(x), ours(x)
    assert expected.std() > 0  # a constant output would make the comparison vacuous
    assert (before - expected).abs().max() > 1e-2  # loading did change the model
    assert (got - expected).abs().max() <= 1e-5


# (sepconv name, reference with a 10-class head); timm's MobileNetV2 is left out: it starts its
# classifier as timm's MobileNetV1 does, while sepconv follows torchvision's MobileNetV2.
INIT_CASES: list[tuple[str, Callable[[], nn.Module]]] = [
    ("mobilenet_v1", lambda: timm.create_model("mobilenetv1_100", num_classes=10)),
    ("mobilenet_v2", lambda: torchvision.models.mobilenet_v2(num_classes=10)),
    ("efficientnet_b0", lambda: torchvision.models.efficientnet_b0(num_classes=10)),
    ("vgg16", lambda: torchvision.models.vgg16(num_classes=10)),
    ("resnet50", lambda: torchvision.models.resnet50(num_classes=10)),
    ("xception", lambda: timm.create_model("legacy_xception", num_classes=10)),
    (
        "mobilenet_v4_conv_small",
        lambda: timm.create_model("mobilenetv4_conv_small", num_classes=10),
    ),
    ("efficientnet_v2_s", lambda: torchvision.models.efficientnet_v2_s(num_classes=10)),
]


@pytest.mark.parametrize(("name", "reference"), INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_linear_layers_start_as_in_the_reference(
    name: str, reference: Callable[[], nn.Module]
) -> None:
    torch.manual_seed(0)
    ref = [m for m in reference().modules() if isinstance(m, nn.Linear)]
    ours = [m for m in create_model(name, num_classes=10).modules() if isinstance(m, nn.Linear)]
    assert [m.weight.shape for m in ours] == [m.weight.shape for m in ref]
    for got, expected in zip(ours, ref, strict=True):
        # Same distribution, different draws: the spreads agree to sampling error (>= 10,240
        # weights each, so well under 5%), and a zero bias is zero in both.
        assert got.weight.std().item() == pytest.approx(expected.weight.std().item(), rel=0.05)
        assert bool(got.bias.eq(0).all()) == bool(expected.bias.eq(0).all())


def zeroed_batchnorms(model: nn.Module) -> list[str]:
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d) and bool(m.weight.eq(0).all())
    ]


def test_zero_init_residual_zeroes_the_batchnorms_torchvision_does() -> None:
    ours = create_model("resnet50", num_classes=10, zero_init_residual=True)
    ref = torchvision.models.resnet50(num_classes=10, zero_init_residual=True)
    # The same 16 layers, each bottleneck's last BatchNorm: stages.{i}.{b}.conv3.bn in sepconv,
    # layer{i + 1}.{b}.bn3 in torchvision.
    ours_blocks = [
        re.fullmatch(r"stages\.(\d)\.(\d)\.conv3\.bn", n) for n in zeroed_batchnorms(ours)
    ]
    ref_blocks = [re.fullmatch(r"layer(\d)\.(\d)\.bn3", n) for n in zeroed_batchnorms(ref)]
    assert len(ours_blocks) == len(ref_blocks) == 16
    assert all(ours_blocks) and all(ref_blocks)
    assert [(int(m[1]) + 1, int(m[2])) for m in ours_blocks if m] == [
        (int(m[1]), int(m[2])) for m in ref_blocks if m
    ]
    assert zeroed_batchnorms(create_model("resnet50", num_classes=10)) == []
    # So every bottleneck starts as its shortcut: an identity block passes its input through.
    block = ours.eval().stages[1][1]
    x = torch.randn(2, 512, 6, 6).relu()
    with torch.no_grad():
        assert torch.equal(block(x), x)


def test_auto_detects_format_from_file(tmp_path: pytest.TempPathFactory) -> None:
    ref = timm.create_model("mobilenetv1_100").eval()
    path = tmp_path / "mobilenetv1_100.pth"  # type: ignore[operator]
    torch.save(ref.state_dict(), path)
    ours = load_weights(create_model("mobilenet_v1").eval(), path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5


def test_reference_with_other_head_names_every_bad_key() -> None:
    ref = torchvision.models.mobilenet_v2(num_classes=10)
    with pytest.raises(
        ValueError,
        match=r"mis-shaped key 'classifier.weight': expected \(1000, 1280\), received \(10, 1280\)",
    ):
        load_weights(create_model("mobilenet_v2"), ref.state_dict())


@pytest.mark.parametrize(
    ("library", "name"),
    [
        ("timm", "convnext_tiny"),
        ("timm", "mobilenetv4_conv_small"),
        ("torchvision", "convnext_tiny"),
    ],
)
def test_auto_detects_the_new_families(
    tmp_path: pytest.TempPathFactory, library: str, name: str
) -> None:
    # timm's ConvNeXt names its stages `stages.`, as sepconv does: its stem tells it apart
    ref = (
        timm.create_model(name) if library == "timm" else torchvision.models.get_model(name)
    ).eval()
    randomise_batchnorm(ref)
    path = tmp_path / f"{name}.pth"  # type: ignore[operator]
    torch.save(ref.state_dict(), path)
    ours = load_weights(create_model(name.replace("mobilenetv4_", "mobilenet_v4_")).eval(), path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5


def test_efficientnet_v2_reads_no_timm_layout() -> None:
    """timm's tf_efficientnetv2_s has torchvision's layers and parameter shapes, but pads every
    strided conv as TensorFlow does ("SAME": zero on the bottom and right only), so the same
    tensors compute other outputs: it is another architecture, and sepconv maps no timm layout
    for EfficientNetV2."""
    torch.manual_seed(0)
    tf = timm.create_model("tf_efficientnetv2_s").eval()
    assert type(tf.conv_stem).__name__ == "Conv2dSame"
    shapes = sorted(tuple(t.shape) for t in tf.state_dict().values())
    ours = create_model("efficientnet_v2_s").eval()
    assert shapes == sorted(tuple(t.shape) for t in ours.state_dict().values())
    # Loaded by position (the two hold the same tensors in the same order), the outputs differ.
    ours.load_state_dict(dict(zip(ours.state_dict(), tf.state_dict().values(), strict=True)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - tf(x)).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"no 'timm' key map for EfficientNetV2"):
        load_weights(ours, tf.state_dict(), format="timm")
