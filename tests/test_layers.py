"""The foundation blocks: parameter counts, numerics against float64 references, errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from sepconv import (
    ConvNeXtBlock,
    ConvNormAct,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    DropPath,
    FusedMBConv,
    InvertedResidual,
    MBConv,
    PointwiseConv2d,
    SqueezeExcite,
    UniversalInvertedResidual,
    make_divisible,
)
from sepconv.layers import SE_MOBILENET_V3


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------- parameter counts
# Closed forms: standard K*K*C_in*C_out, depthwise K*K*C*m, pointwise C_in*C_out; the literal
# numbers are the worked examples of the MobileNet arithmetic, each also derived from the formula.


def standard_params(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return c_out * (c_in // groups) * k * k


@pytest.mark.parametrize(("bias", "expected"), [(False, 288), (True, 320)])
def test_depthwise_32_channels(bias: bool, expected: int) -> None:
    layer = DepthwiseConv2d(32, 3, bias=bias)
    assert n_params(layer) == 3 * 3 * 32 + (32 if bias else 0) == expected


@pytest.mark.parametrize(("bias", "expected"), [(False, 2_048), (True, 2_112)])
def test_pointwise_32_to_64(bias: bool, expected: int) -> None:
    layer = PointwiseConv2d(32, 64, bias=bias)
    assert n_params(layer) == 32 * 64 + (64 if bias else 0) == expected


@pytest.mark.parametrize(
    ("c_in", "c_out", "standard", "separable", "ratio"),
    [
        (64, 128, 73_728, 8_768, 8.4),
        (32, 64, 18_432, 2_336, 7.9),
        (128, 128, 147_456, 17_536, 8.4),
        (256, 512, 1_179_648, 133_376, 8.8),
    ],
)
def test_standard_vs_separable(
    c_in: int, c_out: int, standard: int, separable: int, ratio: float
) -> None:
    std = ConvNormAct(c_in, c_out, 3, norm=None, act=None)
    std.conv.bias = None  # count weights only, as the worked examples do
    sep = DepthwiseSeparableConv2d(c_in, c_out, 3, norm=None, act=None)
    sep.conv_pw.conv.bias = None
    assert n_params(std) == standard_params(c_in, c_out, 3) == standard
    assert n_params(sep) == 9 * c_in + c_in * c_out == separable
    assert round(n_params(std) / n_params(sep), 1) == ratio


@pytest.mark.parametrize(("groups", "expected"), [(1, 36_864), (2, 18_432), (4, 9_216), (64, 576)])
def test_grouped_conv_counts(groups: int, expected: int) -> None:
    layer = ConvNormAct(64, 64, 3, groups=groups, norm=None, act=None)
    layer.conv.bias = None
    assert n_params(layer) == standard_params(64, 64, 3, groups) == expected


@settings(max_examples=60, deadline=None)
@given(c_in=st.integers(1, 96), c_out=st.integers(1, 96), k=st.sampled_from([1, 3, 5, 7]))
def test_separable_ratio_closed_form(c_in: int, c_out: int, k: int) -> None:
    """params(separable) / params(standard) == 1/C_out + 1/K^2 (Howard et al. 2017, eq. 5)."""
    std = nn.Conv2d(c_in, c_out, k, bias=False)
    sep = nn.Sequential(DepthwiseConv2d(c_in, k), PointwiseConv2d(c_in, c_out))
    assert Fraction(n_params(sep), n_params(std)) == Fraction(1, c_out) + Fraction(1, k * k)


def test_inverted_residual_params_closed_form() -> None:
    c_in, c_out, t, k = 24, 32, 6, 5
    mid = c_in * t
    block = InvertedResidual(c_in, c_out, expand_ratio=t, kernel_size=k)
    bn = 2  # weight and bias per channel
    expected = c_in * mid + bn * mid + k * k * mid + bn * mid + mid * c_out + bn * c_out
    assert n_params(block) == expected


def test_mbconv_squeeze_width_from_input_channels() -> None:
    block = MBConv(40, 80, expand_ratio=6, kernel_size=3)
    assert isinstance(block.se, SqueezeExcite)
    assert block.se.conv_reduce.in_channels == 240
    assert block.se.conv_reduce.out_channels == max(1, int(40 * 0.25)) == 10
    assert isinstance(MBConv(3, 3, se_ratio=0.1).se, SqueezeExcite)  # max(1, 0) keeps one channel


def test_expand_ratio_one_skips_expansion() -> None:
    block = InvertedResidual(32, 16, expand_ratio=1)
    assert isinstance(block.conv_pw, nn.Identity)
    assert block.conv_dw.conv.in_channels == 32


def test_bias_only_without_norm() -> None:
    assert ConvNormAct(8, 8, 3).conv.bias is None
    assert ConvNormAct(8, 8, 3, norm=None).conv.bias is not None
    sep = DepthwiseSeparableConv2d(8, 16, norm=None, act=None)
    assert sep.conv_dw.conv.bias is None and sep.conv_pw.conv.bias is not None


def test_separable_block_is_two_conv_norm_acts() -> None:
    block = DepthwiseSeparableConv2d(8, 16, depth_multiplier=2, se_ratio=0.25)
    assert isinstance(block.conv_dw, ConvNormAct) and isinstance(block.conv_pw, ConvNormAct)
    assert (block.conv_dw.conv.groups, block.conv_dw.conv.out_channels) == (8, 16)
    assert block.conv_pw.conv.kernel_size == (1, 1)
    modules = {key.rsplit(".", 1)[0] for key in block.state_dict()}
    assert modules == {
        "conv_dw.conv",
        "conv_dw.bn",
        "se.conv_reduce",
        "se.conv_expand",
        "conv_pw.conv",
        "conv_pw.bn",
    }
    linear = DepthwiseSeparableConv2d(8, 16, norm=None, act=None)
    assert [name for name, _ in linear.conv_dw.named_children()] == ["conv"]


def test_conv_norm_act_bias_can_be_chosen() -> None:
    assert ConvNormAct(8, 8, 3, norm=None, act=None, bias=False).conv.bias is None
    assert ConvNormAct(8, 8, 3, bias=True).conv.bias is not None
    with pytest.raises(ValueError, match=r"`bias`: expected True, False or None .*received 1"):
        ConvNormAct(8, 8, 3, bias=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"), [(32 * 0.75, 24), (16 * 1.1, 16), (32 * 0.35, 16), (1, 8)]
)
def test_make_divisible(value: float, expected: int) -> None:
    result = make_divisible(value)
    assert result == expected and result % 8 == 0 and result >= 0.9 * value


# --------------------------------------------------------------------- float64 numpy references


def conv_reference(
    x: np.ndarray, w: np.ndarray, stride: int, padding: int, dilation: int, groups: int
) -> np.ndarray:
    """Grouped convolution by explicit sliding windows and einsum, in float64."""
    c_in = x.shape[1]
    c_out, c_in_g, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    span = dilation * (k - 1) + 1
    windows = sliding_window_view(xp, (span, span), axis=(2, 3))[:, :, ::stride, ::stride]
    windows = windows[..., ::dilation, ::dilation]  # (N, C_in, H', W', K, K)
    out_g = c_out // groups
    parts = [
        np.einsum(
            "nchwij,ocij->nohw",
            windows[:, g * c_in_g : (g + 1) * c_in_g],
            w[g * out_g : (g + 1) * out_g],
        )
        for g in range(groups)
    ]
    assert c_in == c_in_g * groups
    return np.concatenate(parts, axis=1)


def as64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


shapes = dict(
    batch=st.integers(1, 3),
    channels=st.integers(1, 8),
    size=st.integers(5, 12),
    k=st.sampled_from([1, 3, 5]),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    multiplier=st.integers(1, 3),
)


@settings(max_examples=40, deadline=None)
@given(**shapes)
def test_depthwise_matches_reference(
    batch: int, channels: int, size: int, k: int, stride: int, dilation: int, multiplier: int
) -> None:
    layer = DepthwiseConv2d(
        channels, k, stride=stride, dilation=dilation, depth_multiplier=multiplier, bias=True
    )
    x = torch.randn(batch, channels, size, size)
    expected = conv_reference(
        as64(x), as64(layer.weight), stride, layer.padding[0], dilation, channels
    )
    expected += as64(layer.bias)[None, :, None, None]
    np.testing.assert_allclose(as64(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert layer(x).shape[2] == out_size(size, k, stride, (k - 1) // 2 * dilation, dilation)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    c_in=st.integers(1, 16),
    c_out=st.integers(1, 16),
    size=st.integers(1, 9),
)
def test_pointwise_matches_reference(batch: int, c_in: int, c_out: int, size: int) -> None:
    layer = PointwiseConv2d(c_in, c_out, bias=True)
    x = torch.randn(batch, c_in, size, size)
    expected = np.einsum("nchw,oc->nohw", as64(x), as64(layer.weight)[:, :, 0, 0])
    expected += as64(layer.bias)[None, :, None, None]
    np.testing.assert_allclose(as64(layer(x)), expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(c_out=st.integers(1, 8), **shapes)
def test_separable_pair_matches_reference(
    batch: int,
    channels: int,
    c_out: int,
    size: int,
    k: int,
    stride: int,
    dilation: int,
    multiplier: int,
) -> None:
    block = DepthwiseSeparableConv2d(
        channels,
        c_out,
        k,
        stride=stride,
        dilation=dilation,
        depth_multiplier=multiplier,
        norm=None,
        act=None,
    )
    x = torch.randn(batch, channels, size, size)
    dw, pw = block.conv_dw.conv, block.conv_pw.conv
    depthwise = conv_reference(as64(x), as64(dw.weight), stride, dw.padding[0], dilation, channels)
    expected = np.einsum("nchw,oc->nohw", depthwise, as64(pw.weight)[:, :, 0, 0])
    expected += as64(pw.bias)[None, :, None, None]
    np.testing.assert_allclose(as64(block(x)), expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(c_out=st.integers(1, 8), **shapes)
def test_separable_equals_standard_with_composed_kernel(
    batch: int,
    channels: int,
    c_out: int,
    size: int,
    k: int,
    stride: int,
    dilation: int,
    multiplier: int,
) -> None:
    """W[o, i] = sum_r P[o, i*m + r] * D[i*m + r]: the identity conversion runs backwards."""
    block = DepthwiseSeparableConv2d(
        channels,
        c_out,
        k,
        stride=stride,
        dilation=dilation,
        depth_multiplier=multiplier,
        norm=None,
        act=None,
    ).double()
    d = block.conv_dw.conv.weight[:, 0].reshape(channels, multiplier, k, k)  # D[i*m + r] -> d[i, r]
    p = block.conv_pw.conv.weight[:, :, 0, 0].reshape(c_out, channels, multiplier)  # P[o, i*m + r]
    w = torch.einsum("oir,irhw->oihw", p, d)
    x = torch.randn(batch, channels, size, size, dtype=torch.float64)
    expected = F.conv2d(
        x,
        w,
        block.conv_pw.conv.bias,
        stride=stride,
        padding=block.conv_dw.conv.padding,
        dilation=dilation,
    )
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------------------- shapes and training


def all_blocks() -> list[tuple[str, nn.Module, int]]:
    return [
        ("ConvNormAct", ConvNormAct(3, 8, 3, stride=2), 3),
        ("ConvNormAct-grouped", ConvNormAct(8, 16, 3, groups=4), 8),
        ("DepthwiseConv2d", DepthwiseConv2d(8, 5, stride=2, depth_multiplier=2, bias=True), 8),
        ("PointwiseConv2d", PointwiseConv2d(8, 16, bias=True), 8),
        ("DepthwiseSeparableConv2d", DepthwiseSeparableConv2d(8, 16, stride=2, dilation=2), 8),
        (
            "DepthwiseSeparableConv2d-se",
            DepthwiseSeparableConv2d(8, 16, se_ratio=0.25, act=nn.SiLU),
            8,
        ),
        ("SqueezeExcite", SqueezeExcite(8, 2), 8),
        ("InvertedResidual", InvertedResidual(8, 8, drop_path=0.2), 8),
        ("InvertedResidual-s2", InvertedResidual(8, 16, stride=2, expand_ratio=1), 8),
        ("MBConv", MBConv(8, 8, kernel_size=5, drop_path=0.2), 8),
        (
            "InvertedResidual-mobilenet-v3",
            InvertedResidual(8, 8, 3, act=nn.Hardswish, se_ratio=0.25, se_style=SE_MOBILENET_V3),
            8,
        ),
        (
            "UniversalInvertedResidual-extra-dw",
            UniversalInvertedResidual(8, 16, 2, start_kernel_size=5, kernel_size=3),
            8,
        ),
        (
            "UniversalInvertedResidual-convnext-like",
            UniversalInvertedResidual(8, 8, start_kernel_size=3, kernel_size=0, layer_scale=0.5),
            8,
        ),
        ("UniversalInvertedResidual-ffn", UniversalInvertedResidual(8, 8, kernel_size=0), 8),
        ("FusedMBConv", FusedMBConv(8, 8, drop_path=0.2, se_ratio=0.25), 8),
        ("FusedMBConv-no-expansion", FusedMBConv(8, 16, 2, expand_ratio=1), 8),
        ("ConvNeXtBlock", ConvNeXtBlock(8, drop_path=0.1), 8),
    ]


@pytest.mark.parametrize(
    ("stride", "dilation", "size"), [(1, 1, 15), (2, 1, 15), (2, 1, 16), (1, 2, 13), (3, 2, 17)]
)
def test_output_shapes(stride: int, dilation: int, size: int) -> None:
    x = torch.randn(2, 6, size, size)
    expected = out_size(size, 3, stride, dilation, dilation)
    assert ConvNormAct(6, 4, 3, stride=stride, dilation=dilation)(x).shape == (
        2,
        4,
        expected,
        expected,
    )
    sep = DepthwiseSeparableConv2d(6, 4, stride=stride, dilation=dilation)
    assert sep(x).shape == (2, 4, expected, expected)
    assert InvertedResidual(6, 4, stride=stride, dilation=dilation)(x).shape == (
        2,
        4,
        expected,
        expected,
    )


@pytest.mark.parametrize(
    ("name", "block", "c_in"), all_blocks(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_gradients_reach_every_parameter(name: str, block: nn.Module, c_in: int) -> None:
    block.train()
    x = torch.randn(4, c_in, 11, 11, requires_grad=True)
    block(x).square().mean().backward()
    for pname, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, (
            f"{name}.{pname} got no gradient"
        )
    assert x.grad is not None
    block.eval()
    with torch.no_grad():
        out = block(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "block", "c_in"), all_blocks(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_torchscript_and_compile(name: str, block: nn.Module, c_in: int) -> None:
    block.eval()
    x = torch.randn(2, c_in, 9, 9)
    expected = block(x)
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated upstream, still supported
        scripted = torch.jit.script(block)
    torch.testing.assert_close(scripted(x), expected)
    compiled = torch.compile(
        block, fullgraph=True, backend="aot_eager"
    )  # fullgraph: no graph breaks
    torch.testing.assert_close(compiled(x), expected)


def test_residual_only_when_shapes_allow() -> None:
    assert InvertedResidual(16, 16).has_residual
    assert not InvertedResidual(16, 16, stride=2).has_residual
    assert not InvertedResidual(16, 24).has_residual
    block = InvertedResidual(16, 16).eval()
    nn.init.zeros_(block.conv_pwl.bn.weight)  # the branch now outputs its BN bias, zero at init
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), x)


def test_drop_path_per_sample() -> None:
    torch.manual_seed(0)
    layer = DropPath(0.5)
    x = torch.ones(2_000, 3, 2, 2)
    assert torch.equal(layer.eval()(x), x)
    out = layer.train()(x)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] > 0
    # every sample is either dropped entirely or kept and scaled by 1 / (1 - p)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 2.0).all(1))
    assert 0.45 < kept.float().mean().item() < 0.55


def test_drop_path_in_block_only_in_training() -> None:
    block = MBConv(8, 8, drop_path=0.5)
    assert isinstance(block.drop_path, DropPath)
    x = torch.randn(64, 8, 6, 6)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    torch.manual_seed(1)
    block.train()
    out = block(x)
    dropped = (out - x).flatten(1).abs().amax(1) == 0
    assert 0 < dropped.sum() < 64


# -------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: ConvNormAct(6, 8, 3, groups=4),
            r"`in_channels`: expected a multiple of `groups` \(4\), received 6",
        ),
        (
            lambda: ConvNormAct(8, 6, 3, groups=4),
            r"`out_channels`: expected a multiple of `groups` \(4\), received 6",
        ),
        (lambda: ConvNormAct(0, 8, 3), r"`in_channels`: expected a positive integer, received 0"),
        (
            lambda: ConvNormAct(8, -1, 3),
            r"`out_channels`: expected a positive integer, received -1",
        ),
        (lambda: ConvNormAct(8, 8, 4), r"`kernel_size`: expected an odd size .* received 4"),
        (
            lambda: ConvNormAct(8, 8, 3, stride=0),
            r"`stride`: expected a positive integer, received 0",
        ),
        (
            lambda: DepthwiseConv2d(8, depth_multiplier=0),
            r"`depth_multiplier`: expected a positive integer, received 0",
        ),
        (lambda: DepthwiseConv2d(8, 2), r"`kernel_size`: expected an odd size"),
        (
            lambda: DepthwiseConv2d(8, 3, dilation=0),
            r"`dilation`: expected a positive integer, received 0",
        ),
        (lambda: PointwiseConv2d(8, 0), r"`out_channels`: expected a positive integer, received 0"),
        (
            lambda: DepthwiseSeparableConv2d(8, 16, depth_multiplier=1.5),
            r"`depth_multiplier`: .* received 1.5",
        ),
        (
            lambda: DepthwiseSeparableConv2d(8, 16, se_ratio=1.5),
            r"`se_ratio`: expected a number in \(0, 1\], received 1.5",
        ),
        (
            lambda: InvertedResidual(8, 8, se_ratio=0.0),
            r"`se_ratio`: expected a number in \(0, 1\], received 0.0",
        ),
        (
            lambda: InvertedResidual(8, 8, drop_path=1.0),
            r"`drop_path`: expected a probability in \[0, 1\), received 1.0",
        ),
        (
            lambda: MBConv(8, 8, drop_path=-0.1),
            r"`drop_path`: expected a probability in \[0, 1\), received -0.1",
        ),
        (
            lambda: InvertedResidual(8, 8, expand_ratio=0),
            r"`expand_ratio`: expected a positive number, received 0",
        ),
        (
            lambda: InvertedResidual(8, 8, stride=0),
            r"`stride`: expected a positive integer, received 0",
        ),
        (lambda: DropPath(1.0), r"`p`: expected a probability in \[0, 1\), received 1.0"),
        (
            lambda: SqueezeExcite(8, 0),
            r"`reduced_channels`: expected a positive integer, received 0",
        ),
    ],
)
def test_bad_arguments(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()


def test_even_kernel_with_explicit_padding_is_allowed() -> None:
    layer = ConvNormAct(4, 4, 2, padding=0)
    assert layer(torch.randn(1, 4, 6, 6)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize(
    ("name", "block", "c_in"), all_blocks(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_wrong_input_channels_names_the_layer(name: str, block: nn.Module, c_in: int) -> None:
    if isinstance(block, DropPath):
        pytest.skip("DropPath accepts any shape")
    layer = type(block).__name__
    with pytest.raises(
        ValueError,
        match=rf"{layer} expected input of shape \(N, {c_in}, H, W\), "
        rf"received \[1, {c_in + 1}, 7, 7\]",
    ):
        block(torch.randn(1, c_in + 1, 7, 7))
