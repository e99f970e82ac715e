"""The blocks of MobileNetV3/V4, EfficientNetV2 and ConvNeXt: each against the reference
library's own block (same weights, float64), closed-form parameter counts, the squeeze-excite
widths, activations by name, and the errors their arguments raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import randomize_norms
from torch import nn

from sepconv.layers import (
    ACTIVATIONS,
    SE_EFFICIENTNET,
    SE_MOBILENET_V3,
    ConvNeXtBlock,
    FusedMBConv,
    InvertedResidual,
    LayerNorm2d,
    LayerScale,
    SEStyle,
    SqueezeExcite,
    UniversalInvertedResidual,
    expanded_channels,
    get_activation,
)

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def copy_in_order(source: nn.Module, target: nn.Module) -> None:
    """Load ``source``'s tensors into ``target`` by position, reshaping a linear layer's weight
    to a 1x1 conv's: the two blocks must hold the same tensors in the same order, which is
    itself part of what is checked. A tensor the reference block holds directly (torchvision's
    ConvNeXt ``layer_scale``) is applied last in its forward, as sepconv's LayerScale child."""
    items = source.state_dict().items()
    theirs = [v for k, v in items if "." in k] + [v for k, v in items if "." not in k]
    ours = target.state_dict()
    assert len(theirs) == len(ours)
    for (key, mine), tensor in zip(ours.items(), theirs, strict=True):
        assert mine.numel() == tensor.numel(), key
        ours[key] = tensor.reshape(mine.shape)
    target.load_state_dict(ours)


def randomize(module: nn.Module) -> nn.Module:
    """Random BN statistics, LayerNorm affine terms and layer scales, so none is a no-op."""
    randomize_norms(module)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "layer_scale" in name or name.endswith("gamma") or "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return module


def assert_same_outputs(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    randomize(reference)
    copy_in_order(reference, ours)
    ours, reference = ours.double().eval(), reference.double().eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x.double()), reference(x.double()), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------- against the references


@pytest.mark.parametrize(
    ("exp", "out", "se", "act", "stride"),
    [(16, 16, True, "RE", 2), (72, 24, False, "RE", 2), (240, 40, True, "HS", 1)],
)
def test_mobilenet_v3_block_equals_torchvision(
    exp: int, out: int, se: bool, act: str, stride: int
) -> None:
    from torchvision.models.mobilenetv3 import InvertedResidual as TVBlock
    from torchvision.models.mobilenetv3 import InvertedResidualConfig

    c_in = 16 if exp in (16, 72) else 40
    cnf = InvertedResidualConfig(c_in, 3, exp, out, se, act, stride, 1, 1.0)
    reference = TVBlock(cnf, nn.BatchNorm2d)
    ours = InvertedResidual(
        c_in,
        out,
        stride,
        expand_ratio=exp / c_in,
        act=nn.Hardswish if act == "HS" else nn.ReLU,
        se_ratio=0.25 if se else None,
        se_style=SE_MOBILENET_V3,
        expand_divisor=8,
    )
    assert_same_outputs(ours, reference, torch.randn(2, c_in, 9, 9))


@pytest.mark.parametrize(
    ("start", "mid", "end", "stride", "c_out"),
    [(5, 5, 0, 2, 24), (0, 3, 0, 1, 16), (3, 0, 0, 1, 16), (0, 0, 0, 1, 16), (3, 0, 5, 2, 24)],
    ids=["extra-dw", "inverted-bottleneck", "convnext-like", "ffn", "start-and-end"],
)
def test_uib_equals_timm(start: int, mid: int, end: int, stride: int, c_out: int) -> None:
    from timm.models._efficientnet_blocks import UniversalInvertedResidual as TimmUIB

    reference = TimmUIB(
        16, c_out, start, mid, end, stride=stride, exp_ratio=3.0, layer_scale_init_value=1e-5
    )
    ours = UniversalInvertedResidual(
        16,
        c_out,
        stride,
        expand_ratio=3.0,
        start_kernel_size=start,
        kernel_size=mid,
        end_kernel_size=end,
        layer_scale=1e-5,
    )
    # The stride sits on the same conv as in the reference (the middle one first).
    theirs = [m.stride for m in reference.modules() if isinstance(m, nn.Conv2d)]
    assert [m.stride for m in ours.modules() if isinstance(m, nn.Conv2d)] == theirs
    assert_same_outputs(ours, reference, torch.randn(2, 16, 9, 9))


@pytest.mark.parametrize(("t", "c_out", "stride"), [(1, 24, 1), (4, 48, 2), (4, 24, 1)])
def test_fused_mbconv_equals_torchvision(t: int, c_out: int, stride: int) -> None:
    from torchvision.models.efficientnet import FusedMBConv as TVFused
    from torchvision.models.efficientnet import FusedMBConvConfig

    reference = TVFused(FusedMBConvConfig(t, 3, stride, 24, c_out, 1), 0.0, nn.BatchNorm2d)
    ours = FusedMBConv(24, c_out, stride, expand_ratio=t)
    assert ours.has_residual == reference.use_res_connect
    assert_same_outputs(ours, reference, torch.randn(2, 24, 9, 9))


def test_convnext_block_equals_torchvision() -> None:
    from torchvision.models.convnext import CNBlock

    reference = CNBlock(32, layer_scale=1e-6, stochastic_depth_prob=0.0)
    assert_same_outputs(ConvNeXtBlock(32), reference, torch.randn(2, 32, 9, 9))


def test_layer_norm_2d_against_float64_numpy() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 4)
    a = x.double().numpy()
    mean = a.mean(axis=1, keepdims=True)
    var = a.var(axis=1, keepdims=True)  # biased, as layer norm uses
    w = norm.weight.detach().double().numpy().reshape(1, -1, 1, 1)
    b = norm.bias.detach().double().numpy().reshape(1, -1, 1, 1)
    expected = (a - mean) / np.sqrt(var + 1e-6) * w + b
    np.testing.assert_allclose(norm(x).detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert n_params(norm) == 2 * 6


# ---------------------------------------------------------------------- parameter counts


def test_uib_params_closed_form() -> None:
    c_in, c_out, t, ks, k, ke = 32, 48, 4, 5, 3, 3
    mid = c_in * t
    bn = 2
    block = UniversalInvertedResidual(
        c_in, c_out, 2, t, start_kernel_size=ks, kernel_size=k, end_kernel_size=ke, layer_scale=1.0
    )
    expected = (
        ks * ks * c_in + bn * c_in  # depthwise start
        + c_in * mid + bn * mid  # expansion
        + k * k * mid + bn * mid  # depthwise
        + mid * c_out + bn * c_out  # projection
        + ke * ke * c_out + bn * c_out  # depthwise end
        + c_out  # layer scale
    )  # fmt: skip
    assert n_params(block) == expected


def test_fused_mbconv_params_closed_form() -> None:
    c_in, c_out, t, k = 24, 48, 4, 3
    mid = c_in * t
    expected = k * k * c_in * mid + 2 * mid + mid * c_out + 2 * c_out
    assert n_params(FusedMBConv(c_in, c_out, 2, expand_ratio=t, kernel_size=k)) == expected
    # without expansion: one K x K conv straight to C_out, no projection
    assert n_params(FusedMBConv(c_in, c_out, expand_ratio=1)) == k * k * c_in * c_out + 2 * c_out


def test_convnext_block_params_closed_form() -> None:
    c, k = 96, 7
    expected = c * k * k + c + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c
    assert n_params(ConvNeXtBlock(c)) == expected


# ------------------------------------------------------------------------- squeeze-excite


@settings(max_examples=60, deadline=None)
@given(expanded=st.integers(8, 1200), c_in=st.integers(1, 400))
def test_se_widths_match_the_references(expanded: int, c_in: int) -> None:
    from timm.layers import make_divisible as timm_make_divisible
    from torchvision.models._utils import _make_divisible

    # timm's MobileNetV3: round_channels(expanded * 0.25), i.e. make_divisible to 8; torchvision's
    # _make_divisible(expanded // 4, 8), the same for widths divisible by 4 (all of its
    # tables'); torchvision's EfficientNet: max(1, input_channels // 4)
    mobile = SE_MOBILENET_V3.channels(0.25, in_channels=c_in, expanded_channels=expanded)
    assert mobile == timm_make_divisible(expanded * 0.25, 8)
    if expanded % 4 == 0:
        assert mobile == _make_divisible(expanded // 4, 8)
    effnet = SE_EFFICIENTNET.channels(0.25, in_channels=c_in, expanded_channels=expanded)
    assert effnet == max(1, c_in // 4)


def test_se_style_builds_act_and_gate() -> None:
    se = SE_MOBILENET_V3.build(0.25, in_channels=40, expanded_channels=120, block_act=nn.SiLU)
    assert isinstance(se, SqueezeExcite)
    assert (se.conv_reduce.out_channels, type(se.act), type(se.gate)) == (
        32,
        nn.ReLU,
        nn.Hardsigmoid,
    )
    plain = SE_EFFICIENTNET.build(0.25, in_channels=40, expanded_channels=120, block_act=nn.SiLU)
    assert (plain.conv_reduce.out_channels, type(plain.act), type(plain.gate)) == (
        10,
        nn.SiLU,
        nn.Sigmoid,
    )


# ------------------------------------------------------------------ activations, rounding


def test_every_activation_by_name() -> None:
    assert set(ACTIVATIONS) == {
        "relu",
        "relu6",
        "silu",
        "hardswish",
        "gelu",
        "sigmoid",
        "hardsigmoid",
    }
    x = torch.linspace(-5, 5, 101)
    reference = {
        "relu": torch.relu(x),
        "relu6": x.clamp(0, 6),
        "silu": x * torch.sigmoid(x),
        "hardswish": x * (x + 3).clamp(0, 6) / 6,
        "gelu": 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
        "sigmoid": torch.sigmoid(x),
        "hardsigmoid": (x + 3).clamp(0, 6) / 6,
    }
    for name, expected in reference.items():
        torch.testing.assert_close(get_activation(name)()(x), expected)


def test_expanded_channels_rounding() -> None:
    assert expanded_channels(24, 6, None) == 144
    assert expanded_channels(60, 2.3, None) == 138  # MobileNetV2/EfficientNet: nearest integer
    assert expanded_channels(60, 2.3, 8) == 136  # MobileNetV3 at width 0.75: a multiple of 8


def test_uib_stride_goes_to_the_middle_then_start_then_end() -> None:
    def strides(**kernels: int) -> list[int]:
        block = UniversalInvertedResidual(8, 8, stride=2, **kernels)
        return [m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d)]

    # convs in forward order: [start dw], expansion, [middle dw], projection, [end dw]
    assert strides(start_kernel_size=3, kernel_size=3) == [1, 1, 2, 1]
    assert strides(start_kernel_size=3, kernel_size=0) == [2, 1, 1]
    assert strides(kernel_size=0, end_kernel_size=3) == [1, 1, 2]


def test_layer_scale_starts_at_its_value() -> None:
    scale = LayerScale(4, 1e-6)
    assert scale.gamma.shape == (4, 1, 1)
    torch.testing.assert_close(scale(torch.ones(1, 4, 2, 2)), torch.full((1, 4, 2, 2), 1e-6))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: get_activation("hard_swish"),
            r"`act`: expected one of relu, .*, received 'hard_swish' "
            r"\(did you mean 'hardswish'\?\)",
        ),
        (lambda: SEStyle(base="output"), r"`base`: expected one of 'input', 'expanded'"),
        (lambda: SEStyle(divisor=0), r"`divisor`: expected a positive integer, received 0"),
        (
            lambda: UniversalInvertedResidual(8, 8, stride=2, kernel_size=0),
            r"`stride`: expected 1 for a block without depthwise convs .*received 2",
        ),
        (
            lambda: UniversalInvertedResidual(8, 8, start_kernel_size=4),
            r"`start_kernel_size`: expected 0 \(no depthwise conv there\) or an odd kernel",
        ),
        (
            lambda: UniversalInvertedResidual(8, 8, end_kernel_size=-1),
            r"`end_kernel_size`: expected a non-negative integer, received -1",
        ),
        (
            lambda: UniversalInvertedResidual(8, 8, se_ratio=1.5),
            r"`se_ratio`: expected a number in \(0, 1\], received 1.5",
        ),
        (
            lambda: FusedMBConv(8, 8, expand_ratio=0),
            r"`expand_ratio`: expected a positive number, received 0",
        ),
        (
            lambda: ConvNeXtBlock(8, drop_path=1.0),
            r"`drop_path`: expected a probability in \[0, 1\), received 1.0",
        ),
        (lambda: LayerScale(0, 1.0), r"`channels`: expected a positive integer, received 0"),
    ],
)
def test_bad_arguments(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()
