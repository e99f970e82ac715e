"""decouple(): exactness at full rank, Eckart–Young optimality when truncated, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sepconv import decouple
from sepconv.convert import rank_for_energy
from sepconv.layers import DepthwiseSeparableConv2d


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _composed_kernel(block: DepthwiseSeparableConv2d) -> torch.Tensor:
    """``W[o, i] = sum_r P[o, i*R + r] * D[i*R + r]`` from the block's own weights, by einsum."""
    rank = block.conv_dw.out_channels // block.conv_dw.in_channels
    d = block.conv_dw.weight.detach()[:, 0]  # (C_in*R, K, K)
    p = block.conv_pw.weight.detach()[:, :, 0, 0]  # (C_out, C_in*R)
    d = d.reshape(-1, rank, *d.shape[1:])  # (C_in, R, K, K)
    p = p.reshape(p.shape[0], -1, rank)  # (C_out, C_in, R)
    return torch.einsum("oir,irhw->oihw", p, d)


def _numpy_singular_values(weight: torch.Tensor) -> np.ndarray:
    """(C_in, F) singular values of every W[:, i] as a C_out x K*K matrix, by numpy."""
    w = weight.detach().double().numpy()
    return np.stack([np.linalg.svd(w[:, i].reshape(w.shape[0], -1), compute_uv=False)
                     for i in range(w.shape[1])])  # fmt: skip


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
    assert block.conv_dw.out_channels == cin * min(cout, kernel * kernel)
    assert (block.conv_pw.bias is not None) == bias


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_and_float32(padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, padding=padding)
    block, _ = decouple(conv)
    x = torch.randn(2, 6, 12, 12)
    assert block(x).shape == conv(x).shape
    assert _relative(block(x), conv(x)) < 1e-5
    assert block.conv_dw.weight.dtype == torch.float32


@pytest.mark.parametrize("rank", [1, 2, 5])
def test_truncated_error_is_the_discarded_energy(rank):
    torch.manual_seed(rank)
    conv = nn.Conv2d(4, 16, 3, bias=False).double()
    block, error = decouple(conv, rank)
    weight = conv.weight.detach()
    # Independent routes: the kernel recomposed from the block's weights, numpy's SVD.
    actual = _relative(_composed_kernel(block), weight)
    s2 = _numpy_singular_values(weight) ** 2
    expected = np.sqrt(s2[:, rank:].sum() / s2.sum())
    assert actual == pytest.approx(error, rel=1e-9)
    assert error == pytest.approx(expected, rel=1e-9)
    # Squared Frobenius relation, the form the Eckart–Young theorem states.
    assert float((_composed_kernel(block) - weight).square().sum()) == pytest.approx(
        s2[:, rank:].sum(), rel=1e-9
    )


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
        (nn.Conv2d(4, 8, 3, groups=2), None, r"grouped convolution \(groups=2\)"),
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
