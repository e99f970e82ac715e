"""The fused Triton kernels against ``F.conv2d`` in float64: odd sizes, strides, padding edges,
channel counts that are not multiples of the tile, batch 1, every activation; then sepconv's
blocks and a whole model converted. Without a GPU the kernels run in Triton's interpreter on CPU
tensors (``TRITON_INTERPRET=1``, set here before the kernels are imported); with one, on it."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # also set by conftest.py, for every test process
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import torch.nn.functional as F
from torch import nn

import sepconv
from sepconv.kernels import (
    ACTIVATIONS,
    activation_code,
    depthwise_conv,
    expand_depthwise,
    pointwise_conv,
    to_triton,
)
from sepconv.kernels.blocks import ConvUnit, TritonInvertedResidual
from sepconv.layers import InvertedResidual, MBConv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CL = torch.channels_last
REFERENCE = {  # the activations in float64, written out independently of the kernels
    "none": lambda t: t,
    "relu": lambda t: t.clamp_min(0),
    "relu6": lambda t: t.clamp(0, 6),
    "silu": lambda t: t / (1 + torch.exp(-t)),
    "hardswish": lambda t: t * (t + 3).clamp(0, 6) / 6,
    "sigmoid": lambda t: 1 / (1 + torch.exp(-t)),
}


def _input(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen).to(DEVICE)
    return x.contiguous(memory_format=CL) if x.dim() == 4 else x


def _close(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    assert got.shape == want.shape
    assert got.dim() != 4 or got.is_contiguous(memory_format=CL)
    error = (got.double() - want).abs().max().item()
    assert error <= tol * max(1.0, want.abs().max().item()), error


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_triton_pointwise_matches_conv2d_with_bias_activation_and_residual(act: str) -> None:
    x = _input(2, 20, 7, 9)  # 20 and 37 channels: not multiples of any tile
    weight, bias, residual = _input(37, 20, seed=1), _input(37, seed=2), _input(2, 37, 7, 9, seed=3)
    got = pointwise_conv(x, weight, bias, act=activation_code(act), residual=residual)
    conv = F.conv2d(x.double(), weight.double()[:, :, None, None], bias.double())
    _close(got, REFERENCE[act](conv) + residual.double())


def test_triton_pointwise_applies_a_per_image_gate_to_its_input() -> None:
    x, weight = _input(3, 24, 5, 5), _input(16, 24, seed=1)
    gate = torch.rand(3, 24, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    got = pointwise_conv(x, weight, scale=gate)
    want = F.conv2d(x.double() * gate.double()[:, :, None, None], weight.double()[:, :, None, None])
    _close(got, want)


@pytest.mark.parametrize(("kernel_size", "stride"), [(3, 1), (3, 2), (5, 1), (5, 2), (7, 2)])
@pytest.mark.parametrize("size", [(7, 9), (1, 1), (2, 3)])
def test_triton_depthwise_matches_conv2d_at_edges_and_strides(
    kernel_size: int, stride: int, size: tuple[int, int]
) -> None:
    channels = 19
    x = _input(1, channels, *size)
    weight, bias = _input(channels, 1, kernel_size, kernel_size, seed=1), _input(channels, seed=2)
    got = depthwise_conv(x, weight, bias, stride=stride, act=activation_code("relu6"))
    want = F.conv2d(
        x.double(), weight.double(), bias.double(), stride=stride, padding=kernel_size // 2,
        groups=channels,
    ).clamp(0, 6)  # fmt: skip
    _close(got, want)


@pytest.mark.parametrize(("kernel_size", "stride"), [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_triton_expand_depthwise_equals_the_two_convolutions(kernel_size: int, stride: int) -> None:
    x = _input(2, 20, 7, 9)
    we, be = 0.3 * _input(45, 20, seed=1), _input(45, seed=2)
    wd, bd = _input(45, 1, kernel_size, kernel_size, seed=3), _input(45, seed=4)
    relu6, silu = activation_code("relu6"), activation_code("silu")
    got = expand_depthwise(x, we, be, wd, bd, stride=stride, expand_act=relu6, depthwise_act=silu)
    expanded = F.conv2d(x.double(), we.double()[:, :, None, None], be.double()).clamp(0, 6)
    conv = F.conv2d(
        expanded, wd.double(), bd.double(), stride=stride, padding=kernel_size // 2, groups=45
    )
    # Zero padding of the expanded tensor, not act(bias): a border pixel tells them apart.
    _close(got, REFERENCE["silu"](conv))


def test_triton_bf16_keeps_fp32_accumulation() -> None:
    x = _input(1, 64, 6, 6).to(torch.bfloat16)
    weight = _input(32, 64, seed=1).to(torch.bfloat16)
    got = pointwise_conv(x, weight)
    assert got.dtype == torch.bfloat16
    want = F.conv2d(x.double(), weight.double()[:, :, None, None])
    # One rounding to bf16 at the store (2^-8 relative), not 64 of them along the sum.
    error = ((got.double() - want).abs() / want.abs().clamp_min(1.0)).max().item()
    assert error < 2**-7


def test_triton_kernels_refuse_mismatched_weights_naming_the_argument() -> None:
    x = _input(1, 8, 4, 4)
    with pytest.raises(ValueError, match=r"argument `weight`: expected \(C_out, 8\)"):
        pointwise_conv(x, _input(4, 6))
    with pytest.raises(ValueError, match=r"argument `weight`: expected \(8, 1, K, K\)"):
        depthwise_conv(x, _input(6, 1, 3, 3))
    with pytest.raises(ValueError, match=r"argument `act`: expected one of none, relu"):
        activation_code(nn.GELU())


def _with_statistics(model: nn.Module) -> nn.Module:
    """BatchNorms with running statistics that are not the identity, so folding matters."""
    gen = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.2 * torch.randn(module.num_features, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=gen))
    return model.eval()


@pytest.mark.parametrize("fuse_expand", [True, False])
def test_triton_mbconv_with_squeeze_excite_matches_the_block(fuse_expand: bool) -> None:
    torch.manual_seed(0)
    block = _with_statistics(MBConv(24, 24, expand_ratio=4, kernel_size=5))
    folded = sepconv.fuse(nn.Sequential(block)).to(DEVICE)
    fast, names = to_triton(folded, dtype=torch.float32, fuse_expand=fuse_expand)
    assert names == ["0"] and isinstance(fast[0], TritonInvertedResidual)
    x = _input(2, 24, 9, 7)
    _close(fast(x), block.double()(x.double().cpu()).to(DEVICE))


@pytest.mark.slow
def test_triton_model_converted_block_by_block_matches_eager() -> None:
    torch.manual_seed(0)
    model = _with_statistics(sepconv.create_model("mobilenet_v2", width_mult=0.35, num_classes=10))
    fast, names = to_triton(sepconv.fuse(model).to(DEVICE), dtype=torch.float32)
    assert len(names) == 17 + 1  # the 17 inverted residuals and the 1x1 head conv
    x = _input(1, 3, 32, 32)
    _close(fast(x), model.double()(x.double().cpu()).to(DEVICE))


def test_triton_leaves_blocks_it_cannot_compute_to_pytorch() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(8, 8, 1), nn.GELU()),  # an activation the kernels lack
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),  # a dense 3x3 conv
        nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU6()),
    ).eval()
    fast, names = to_triton(model.to(DEVICE), dtype=torch.float32)
    assert names == ["2"] and isinstance(fast[2], ConvUnit)
    assert isinstance(fast[0][1], nn.GELU)
    x = _input(1, 8, 5, 5)
    _close(fast(x), model.double()(x.double()))


def test_triton_block_counts_the_bytes_of_its_own_schedule() -> None:
    block = _with_statistics(InvertedResidual(16, 16, expand_ratio=6))
    fused, _ = to_triton(sepconv.fuse(nn.Sequential(block)), dtype=torch.bfloat16)
    unfused, _ = to_triton(
        sepconv.fuse(nn.Sequential(block)), dtype=torch.bfloat16, fuse_expand=False
    )
    n, c, h, w, expanded = 2, 16, 8, 8, 96
    activations = n * h * w * c  # each (N, 16, 8, 8) tensor
    weights = (expanded * c + expanded) + (expanded * 9 + expanded) + (c * expanded + c)
    # input + shortcut + output, and the depthwise output written and read back
    floor = 3 * activations + 2 * n * h * w * expanded + weights
    assert fused[0].bytes_moved((n, c, h, w), 2) == 2 * floor
    # Two kernels also write the expanded tensor and read it back.
    assert unfused[0].bytes_moved((n, c, h, w), 2) == 2 * (floor + 2 * n * h * w * expanded)


def test_fused_backend_is_a_cuda_row_and_refuses_a_model_it_has_no_kernel_for() -> None:
    from sepconv.deploy.compiled import Target
    from sepconv.deploy.fused_backend import build_fused
    from sepconv.deploy.registry import find, rows

    row = find("fused", rows("cuda"), argument="backend")
    assert row.from_model is build_fused and row.extra is not None
    assert row.extra.module == "triton"
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU()).eval()
    target = Target((1, 3, 8, 8), "fp32", 1, torch.device(DEVICE))
    with pytest.raises(ValueError, match="no block of Sequential runs on the fused kernels"):
        build_fused(model, torch.randn(1, 3, 8, 8), target)
