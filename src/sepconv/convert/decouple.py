"""Network decoupling: one standard convolution -> one depthwise separable convolution, by SVD.

A standard convolution with kernel ``W`` of shape ``(C_out, C_in, K, K)`` is, for each input
channel ``i``, the matrix ``M_i = W[:, i].reshape(C_out, K*K)``. Its singular value decomposition
``M_i = U_i S_i V_i^T`` writes the convolution as a sum of rank-1 terms, each a depthwise ``K x K``
kernel ``V_i[:, r]`` on channel ``i`` followed by pointwise weights ``U_i[:, r] * S_i[r]``.
Keeping ``R`` terms per channel is a depthwise separable convolution with depth multiplier ``R``:

    D[i*R + r] = V_i[:, r].reshape(K, K)          (depthwise kernels, C_in*R of them)
    P[o, i*R + r] = U_i[o, r] * S_i[r]            (pointwise weights)
    W[o, i] ~= sum_r P[o, i*R + r] * D[i*R + r]

With ``R = min(C_out, K*K)`` the identity is exact; with fewer terms it is the best rank-``R``
approximation of every ``M_i`` in the Frobenius norm (Eckart–Young), so the squared error is the
energy of the discarded singular values. The cost is ``R * (K*K*C_in + C_in*C_out)`` weights
instead of ``K*K*C_in*C_out``.

A grouped convolution (``g`` groups) is decoupled group by group: input channel ``i`` of group
``j`` only reaches that group's ``C_out/g`` outputs, so ``M_i`` is ``C_out/g x K*K``, the depthwise
part is unchanged (``C_in*R`` kernels, one group per input channel) and the pointwise part is a
grouped 1x1 convolution with the same ``g`` groups; the channel order ``i*R + r`` keeps each
group's intermediate channels contiguous, as that grouped 1x1 convolution expects. Cost:
``R * (K*K*C_in + C_in*C_out/g)`` weights instead of ``K*K*C_in*C_out/g``.

Reference: Guo et al., "Network Decoupling: From Regular to Depthwise Separable Convolutions",
BMVC 2018.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from sepconv.layers import ConvNormAct, DepthwiseSeparableConv2d
from sepconv.utils.validation import finite_number, invalid, invalid_type


class Decoupled(NamedTuple):
    """The result of :func:`decouple`: the separable block and how far it is from the original."""

    block: DepthwiseSeparableConv2d
    """The linear depthwise separable block (``norm=None, act=None``) replacing the conv."""
    relative_error: float
    """``||W - W_R||_F / ||W||_F``: 0 at full rank (up to rounding)."""


def ineligibility(module: nn.Module) -> str | None:
    """Say why ``module`` cannot be decoupled, or return ``None`` when it can.

    Eligible: an ``nn.Conv2d`` with a square kernel larger than 1x1, zero padding, the forward of
    ``nn.Conv2d`` itself (a subclass that changes the forward, such as weight standardisation,
    computes something else than its weight says), and either ``groups=1`` or a grouped
    convolution that is not depthwise (a depthwise conv, ``groups=C_in``, is already the first
    half of a separable one; decoupling it would only add a pointwise conv).
    """
    if not isinstance(module, nn.Conv2d):
        return f"not a torch.nn.Conv2d (a {type(module).__name__})"
    if type(module).forward is not nn.Conv2d.forward:
        return f"{type(module).__name__} overrides the forward of nn.Conv2d"
    if module.groups > 1 and module.groups == module.in_channels:
        return f"depthwise convolution (groups=in_channels={module.groups}); already separable"
    kh, kw = module.kernel_size
    if kh != kw:
        return f"non-square kernel {kh}x{kw}"
    if kh == 1:
        return "1x1 kernel (already pointwise)"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}; only 'zeros' is supported"
    return None


def full_rank(conv: nn.Conv2d) -> int:
    """The depth multiplier at which :func:`decouple` is exact: ``min(C_out / groups, K*K)``."""
    return min(conv.out_channels // conv.groups, conv.kernel_size[0] * conv.kernel_size[1])


def _matrices(conv: nn.Conv2d) -> torch.Tensor:
    """Every ``M_i``, the ``(C_out/g, K*K)`` slice of the kernel that input channel ``i`` feeds
    (its group's outputs), stacked in float64 in input-channel order: ``(C_in, C_out/g, K*K)``."""
    g = conv.groups
    weight = conv.weight.detach().double().flatten(2)  # (C_out, C_in/g, K*K)
    per_group = weight.unflatten(0, (g, -1))  # (g, C_out/g, C_in/g, K*K)
    return per_group.transpose(1, 2).flatten(0, 1)  # (C_in, C_out/g, K*K), i = j*C_in/g + i'


def singular_values(conv: nn.Conv2d) -> torch.Tensor:
    """Singular values of every per-channel matrix ``M_i``, largest first.

    Args:
        conv: An eligible convolution (see :func:`ineligibility`).

    Returns:
        float64 tensor of shape ``(C_in, min(C_out / groups, K*K))``.
    """
    _check(conv)
    return torch.linalg.svdvals(_matrices(conv))


def rank_for_energy(conv: nn.Conv2d, energy: float) -> int:
    """The smallest depth multiplier ``R`` that keeps at least ``energy`` of the squared singular
    values summed over all input channels, i.e. ``||W_R||_F^2 >= energy * ||W||_F^2``.

    Args:
        conv: An eligible convolution.
        energy: Retained fraction in ``(0, 1]``.

    Example:
        >>> rank_for_energy(nn.Conv2d(8, 16, 3), 1.0)
        9
    """
    check_energy(energy)
    power = singular_values(conv).square().sum(dim=0)  # (F,), per term summed over channels
    retained = power.cumsum(0) / power.sum().clamp_min(torch.finfo(power.dtype).tiny)
    # Rounding can leave the last cumulative fraction a hair under 1.0; never exceed full rank.
    reached = torch.nonzero(retained >= energy - 1e-12)
    return int(reached[0]) + 1 if len(reached) else full_rank(conv)


def check_energy(energy: float) -> None:
    """Raise unless ``energy`` is a retained-energy fraction in ``(0, 1]``."""
    finite_number(
        "energy", energy, low=0, high=1, low_inclusive=False, expected="a number in (0, 1]"
    )


def _check(conv: nn.Module) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise invalid_type("conv", "a torch.nn.Conv2d", conv)
    reason = ineligibility(conv)
    if reason is not None:
        expected = (
            "a standard or grouped (not depthwise) KxK convolution "
            "(square kernel > 1, zero padding)"
        )
        raise invalid("conv", expected, conv, note=f": {reason}")


def decouple(conv: nn.Conv2d, rank: int | None = None) -> Decoupled:
    """Turn a standard or grouped convolution into a linear depthwise separable one by SVD.

    Stride, dilation and padding go to the depthwise conv, the bias (if any) to the pointwise conv.
    A grouped convolution (``groups=g``) is decoupled per group and gets a grouped pointwise conv
    (``conv_pw.conv`` then has ``groups=g``). The block lives on the conv's device and dtype; the
    SVD is computed in float64.

    Args:
        conv: An ``nn.Conv2d`` with a square ``K x K`` kernel, ``K > 1``, zero padding of any
            amount, any stride and dilation, with or without bias, ``groups=1`` or any grouping
            other than depthwise (``groups=C_in``).
        rank: Depth multiplier ``R`` (rank-1 terms kept per input channel), in
            ``[1, min(C_out/groups, K*K)]``; ``None`` keeps them all, which is exact.

    Returns:
        :class:`Decoupled` ``(block, relative_error)``: a
        :class:`~sepconv.layers.DepthwiseSeparableConv2d` with ``depth_multiplier=R``,
        ``norm=None, act=None``, and ``||W - W_R||_F / ||W||_F``.

    Shape:
        Same as ``conv``: ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    Reference:
        Guo et al., "Network Decoupling: From Regular to Depthwise Separable Convolutions",
        BMVC 2018 (``R`` is the paper's ``T``, the number of decoupled terms).

    Example:
        >>> conv = nn.Conv2d(16, 32, 3, padding=1)
        >>> block, error = decouple(conv)
        >>> x = torch.randn(1, 16, 8, 8)
        >>> bool(torch.allclose(block(x), conv(x), atol=1e-5)), error < 1e-6
        (True, True)
        >>> decouple(nn.Conv2d(16, 32, 3, groups=4), rank=2).block.conv_pw.conv.groups
        4
    """
    _check(conv)
    most = full_rank(conv)
    if rank is None:
        rank = most
    elif isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= most:
        expected = f"an integer in [1, {most}] (min(out_channels/groups, K*K) for {conv!r})"
        raise invalid("rank", expected, rank)
    # U (C_in, C_out/g, F), S (C_in, F), Vh (C_in, F, K*K) with F = min(C_out/g, K*K).
    u, s, vh = torch.linalg.svd(_matrices(conv), full_matrices=False)
    kernel, groups = conv.kernel_size[0], conv.groups
    block = DepthwiseSeparableConv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=kernel,
        stride=conv.stride[0],
        dilation=conv.dilation[0],
        depth_multiplier=rank,
        norm=None,
        act=None,
        padding=0,
    )
    # The block's constructor takes one int per geometry argument; the conv may carry per-axis
    # values or 'same'/'valid', which nn.Conv2d's forward accepts as they are.
    block.conv_dw.conv.stride = conv.stride
    block.conv_dw.conv.dilation = conv.dilation
    block.conv_dw.conv.padding = conv.padding
    if groups > 1:
        # Each group's C_in/g * R intermediate channels feed only that group's C_out/g outputs.
        block.conv_pw = ConvNormAct(
            conv.in_channels * rank,
            conv.out_channels,
            1,
            groups=groups,
            norm=None,
            act=None,
            bias=conv.bias is not None,
        )
    elif conv.bias is None:
        block.conv_pw.conv.bias = None
    block = block.to(device=conv.weight.device, dtype=conv.weight.dtype)

    depthwise = vh[:, :rank].reshape(conv.in_channels * rank, 1, kernel, kernel)
    pointwise = u[:, :, :rank] * s[:, None, :rank]  # (C_in, C_out/g, R), i = j*C_in/g + i'
    # -> (C_out, C_in/g * R): output o = j*C_out/g + o' reads group j's channels i'*R + r.
    pointwise = pointwise.unflatten(0, (groups, -1)).transpose(1, 2).flatten(0, 1).flatten(1)
    dw, pw = block.conv_dw.conv, block.conv_pw.conv
    with torch.no_grad():
        dw.weight.copy_(depthwise)
        pw.weight.copy_(pointwise[:, :, None, None])
        if conv.bias is not None and pw.bias is not None:
            pw.bias.copy_(conv.bias)

    energy = s.square()
    discarded = energy[:, rank:].sum()
    error = (discarded / energy.sum().clamp_min(torch.finfo(energy.dtype).tiny)).sqrt()
    return Decoupled(block, float(error))
