"""decouple(): exactness at full rank, Eckart–Young optimality when truncated, clear errors.

Standard and grouped convolutions alike; the references below recompose kernels and singular
values group by group with plain loops and numpy, independently of decouple()'s reshapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from sepconv import decouple
from sepconv.convert import rank_for_energy, singular_values, standard_twin
from sepconv.layers import DepthwiseSeparableConv2d


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _composed_kernel(block: DepthwiseSeparableConv2d) -> torch.Tensor:
    """The grouped kernel ``(C_out, C_in/g, K, K)`` the linear block computes, by loops:
    ``W[o, i'] = sum_r P[o, i'*R + r] * D[(j*C_in/g + i')*R + r]``, ``j = o // (C_out/g)``."""
    dw, pw = block.conv_dw.conv, block.conv_pw.conv
    groups = pw.groups
    rank = dw.out_channels // dw.in_channels
    d = dw.weight.detach().double().numpy()[:, 0]  # (C_in*R, K, K)
    p = pw.weight.detach().double().numpy()[:, :, 0, 0]  # (C_out, C_in/g*R)
    c_out, c_in = p.shape[0], dw.in_channels
    cig, cog = c_in // groups, c_out // groups
    w = np.zeros((c_out, cig, *d.shape[1:]))
    for o in range(c_out):
        for i in range(cig):
            for r in range(rank):
                w[o, i] += p[o, i * rank + r] * d[((o // cog) * cig + i) * rank + r]
    return torch.from_numpy(w)


def _numpy_singular_values(weight: torch.Tensor, groups: int = 1) -> np.ndarray:
    """(C_in, F) singular values, by numpy, of every input channel's slice of the kernel: the
    ``C_out/g x K*K`` matrix of the outputs of its group."""
    w = weight.detach().double().numpy()
    cog, cig = w.shape[0] // groups, w.shape[1]
    return np.stack([
        np.linalg.svd(w[j * cog:(j + 1) * cog, i].reshape(cog, -1), compute_uv=False)
        for j in range(groups) for i in range(cig)
    ])  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    cin=st.integers(1, 5),
    cout=st.integers(1, 12),
    kernel=st.sampled_from([2, 3, 5]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    padding=st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    bias=st.booleans(),
    size=st.integers(9, 14),
)
def test_full_rank_matches_the_conv(cin, cout, kernel, stride, dilation, padding, bias, size):
    torch.manual_seed(cin * 100 + cout)
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=bias).double()
    block, error = decouple(conv)
    x = torch.randn(2, cin, size, size + 1, dtype=torch.float64)
    assert _relative(block(x), conv(x)) < 1e-5
    assert error < 1e-7
    assert block.conv_dw.conv.out_channels == cin * min(cout, kernel * kernel)
    assert (block.conv_pw.conv.bias is not None) == bias


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(2, 4),
    cin_per_group=st.integers(2, 4),
    cout_per_group=st.integers(1, 6),
    kernel=st.sampled_from([2, 3, 5]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    padding=st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    bias=st.booleans(),
    size=st.integers(9, 13),
)
def test_grouped_full_rank_matches_the_conv(
    groups, cin_per_group, cout_per_group, kernel, stride, dilation, padding, bias, size
):
    cin, cout = groups * cin_per_group, groups * cout_per_group
    torch.manual_seed(cin * 100 + cout)
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups=groups, bias=bias)
    conv = conv.double()
    block, error = decouple(conv)
    x = torch.randn(2, cin, size, size + 1, dtype=torch.float64)
    assert _relative(block(x), conv(x)) < 1e-5
    assert error < 1e-7
    assert block.conv_dw.conv.groups == cin  # the depthwise part stays depthwise
    assert block.conv_dw.conv.out_channels == cin * min(cout_per_group, kernel * kernel)
    assert block.conv_pw.conv.groups == groups
    assert (block.conv_pw.conv.bias is not None) == bias
    torch.testing.assert_close(_composed_kernel(block), conv.weight.detach())


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 3),
    cin_per_group=st.integers(1, 4),
    cout_per_group=st.integers(1, 12),
    kernel=st.sampled_from([2, 3, 5]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    data=st.data(),
)
def test_truncation_error_is_the_discarded_energy(
    groups, cin_per_group, cout_per_group, kernel, stride, dilation, bias, data
):
    assume(groups == 1 or cin_per_group > 1)  # groups == C_in is depthwise, refused
    cin, cout = groups * cin_per_group, groups * cout_per_group
    full = min(cout_per_group, kernel * kernel)
    rank = data.draw(st.integers(1, full), label="rank")
    torch.manual_seed(cin * 100 + cout + rank)
    conv = nn.Conv2d(cin, cout, kernel, stride, 1, dilation, groups=groups, bias=bias).double()
    block, error = decouple(conv, rank)
    weight = conv.weight.detach()
    composed = _composed_kernel(block)
    s2 = _numpy_singular_values(weight, groups) ** 2  # (C_in, full)
    np.testing.assert_allclose(singular_values(conv).numpy() ** 2, s2, atol=1e-12)
    # Eckart–Young, squared Frobenius form: the error is the energy of the dropped terms.
    discarded = s2[:, rank:].sum()
    assert float((composed - weight).square().sum()) == pytest.approx(discarded, abs=1e-9)
    assert error == pytest.approx(np.sqrt(discarded / s2.sum()), abs=1e-9)
    # The block computes the convolution with the composed kernel (channel order included).
    x = torch.randn(1, cin, 10, 11, dtype=torch.float64)
    reference = F.conv2d(x, composed, conv.bias, stride, 1, dilation, groups)
    torch.testing.assert_close(block(x), reference)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_and_float32(padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, padding=padding)
    block, _ = decouple(conv)
    x = torch.randn(2, 6, 12, 12)
    assert block(x).shape == conv(x).shape
    assert _relative(block(x), conv(x)) < 1e-5
    assert block.conv_dw.conv.weight.dtype == torch.float32


def test_truncation_beats_random_and_rank_deficient_alternatives():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 24, 3, bias=False).double()
    rank = 2
    block, error = decouple(conv, rank)
    weight = conv.weight.detach()
    # A randomly initialised block of the same shape.
    random_block = DepthwiseSeparableConv2d(
        8, 24, depth_multiplier=rank, norm=None, act=None, padding=0
    )
    assert _relative(_composed_kernel(random_block.double()), weight) > error
    # Rank-deficient alternatives: the best approximation within random R-dim kernel subspaces
    # (least-squares projection), which Eckart–Young says the SVD basis beats.
    matrices = weight.flatten(2).transpose(0, 1)  # (C_in, C_out, K*K)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(8, 9, rank, generator=g, dtype=torch.float64))
        projected = matrices @ basis @ basis.transpose(1, 2)
        assert _relative(projected, matrices) > error
    # And in output space, on random inputs.
    x = torch.randn(4, 8, 10, 10, dtype=torch.float64)
    assert _relative(block(x), conv(x)) < _relative(random_block.double()(x), conv(x))


@pytest.mark.parametrize("bias", [False, True])
def test_the_standard_twin_keeps_its_pairs_geometry_and_bias(bias: bool):
    # The inverse direction: a depthwise + pointwise pair of stride 2, unequal padding and
    # dilation per axis becomes one standard conv of the same geometry.
    pair = nn.Sequential(
        nn.Conv2d(6, 6, 3, stride=2, padding=(2, 1), dilation=(2, 1), groups=6, bias=False),
        nn.BatchNorm2d(6),
        nn.Conv2d(6, 10, 1, bias=bias),
    ).eval()
    x = torch.randn(1, 6, 11, 12)
    twin, pairs = standard_twin(pair, x)
    [conv] = [m for m in twin.modules() if isinstance(m, nn.Conv2d)]
    assert pairs == 1
    assert (conv.in_channels, conv.out_channels, conv.groups) == (6, 10, 1)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation) == (
        (3, 3), (2, 2), (2, 1), (2, 1),
    )  # fmt: skip
    assert (conv.bias is not None) == bias
    with torch.no_grad():
        assert twin(x).shape == pair(x).shape == (1, 10, 6, 6)


def test_rank_for_energy_is_the_smallest_rank_reaching_the_fraction():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, 3)
    power = (_numpy_singular_values(conv.weight) ** 2).sum(axis=0)
    retained = np.cumsum(power) / power.sum()
    for energy in (0.3, 0.6, 0.9, 0.99):
        rank = rank_for_energy(conv, energy)
        assert retained[rank - 1] >= energy
        assert rank == 1 or retained[rank - 2] < energy
    assert rank_for_energy(conv, 1.0) == 9


@pytest.mark.parametrize(
    ("conv", "rank", "match"),
    [
        (nn.Conv2d(4, 8, 3), 0, r"`rank`: expected an integer in \[1, 8\].*received 0"),
        (nn.Conv2d(4, 16, 3), 10, r"`rank`: expected an integer in \[1, 9\].*received 10"),
        (nn.Conv2d(4, 8, 3), True, r"`rank`.*received True"),
        (nn.Conv2d(4, 8, 3, groups=2), 5, r"`rank`: expected an integer in \[1, 4\].*received 5"),
        (nn.Conv2d(4, 8, 3, groups=4), None, r"depthwise convolution \(groups=in_channels=4\)"),
        (nn.Conv2d(4, 8, (1, 3)), None, r"non-square kernel 1x3"),
        (nn.Conv2d(4, 8, 1), None, r"1x1 kernel"),
        (nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"), None, r"padding_mode='reflect'"),
    ],
)
def test_invalid_input_is_named(conv, rank, match):
    with pytest.raises(ValueError, match=match):
        decouple(conv, rank)


def test_non_conv_is_a_type_error():
    with pytest.raises(TypeError, match=r"`conv`: expected a torch.nn.Conv2d, received Linear"):
        decouple(nn.Linear(3, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize("energy", [0, 1.5, -0.1])
def test_invalid_energy_is_named(energy):
    with pytest.raises(ValueError, match=r"`energy`: expected a number in \(0, 1\]"):
        rank_for_energy(nn.Conv2d(2, 2, 3), energy)
