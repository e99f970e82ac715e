"""The 1x1 convolution as one GEMM with its epilogue fused: bias, activation, residual add.

In channels_last memory an ``(N, C_in, H, W)`` activation is the matrix ``X`` of
``M = N * H * W`` rows and ``C_in`` columns, and a 1x1 conv is ``Y = X @ W^T`` with ``W`` the
``(C_out, C_in)`` weight. Each program computes one ``BM x BN`` tile of ``Y`` in fp32, then adds
the bias, applies the activation and adds the residual before the one store, so a projection
with its shortcut reads and writes each activation once. An optional per-image input scale
(``scale[n, k]``, the gate of a squeeze-excite block) multiplies ``X`` as it is loaded, so that
the gated tensor is never written either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sepconv.kernels.activations import apply_activation
from sepconv.kernels.launch import Tile, dot_in_fp32, grid_2d, tuned
from sepconv.utils.validation import invalid

#: Tile shapes tried on a GPU (the autotuner keeps the fastest per problem size).
CONFIGS = [
    triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=warps, num_stages=stages)
    for bm, bn, bk, warps, stages in (
        (128, 64, 32, 4, 4),
        (128, 128, 32, 8, 3),
        (64, 64, 32, 4, 4),
        (64, 128, 64, 4, 3),
        (128, 32, 64, 4, 4),
        (64, 32, 32, 2, 5),
        (32, 64, 32, 2, 5),
    )
]


@triton.jit
def pointwise_kernel(
    x_ptr, w_ptr, bias_ptr, res_ptr, scale_ptr, out_ptr,
    M, N, K, ROWS_PER_IMAGE,
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, HAS_SCALE: tl.constexpr,
    ACT: tl.constexpr, IEEE: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """``out[M, N] = act(x[M, K] (* scale) @ w[N, K]^T + bias) + res``, all row-major."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = (pid_m * BM + tl.arange(0, BM)).to(tl.int64)
    cols = pid_n * BN + tl.arange(0, BN)
    row_ok = rows < M
    col_ok = cols < N
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        k_ok = ks < K
        a = tl.load(
            x_ptr + rows[:, None] * K + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0
        )
        if HAS_SCALE:
            image = rows // ROWS_PER_IMAGE
            s = tl.load(
                scale_ptr + image[:, None] * K + ks[None, :],
                mask=row_ok[:, None] & k_ok[None, :],
                other=0.0,
            )
            a = (a.to(tl.float32) * s.to(tl.float32)).to(x_ptr.dtype.element_ty)
        b = tl.load(
            w_ptr + cols[:, None] * K + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0
        )
        if IEEE:
            acc += tl.dot(a.to(tl.float32), tl.trans(b.to(tl.float32)), input_precision="ieee")
        else:
            acc += tl.dot(a, tl.trans(b))
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    acc = apply_activation(acc, ACT)
    mask = row_ok[:, None] & col_ok[None, :]
    offsets = rows[:, None] * N + cols[None, :]
    if HAS_RES:
        acc += tl.load(res_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)


def pointwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    act: int = 0,
    residual: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    tile: Tile | None = None,
) -> torch.Tensor:
    """A 1x1 convolution of ``x`` in channels_last memory, bias, activation and residual fused.

    Args:
        x: ``(N, C_in, H, W)``, channels_last (converted if not), fp32, bf16 or fp16.
        weight: ``(C_out, C_in)`` or ``(C_out, C_in, 1, 1)``, in ``x``'s dtype.
        bias: ``(C_out,)`` or ``None``.
        act: Activation code (:func:`sepconv.kernels.activations.activation_code`), applied
            after the bias and before the residual.
        residual: ``(N, C_out, H, W)`` added last, or ``None``.
        scale: ``(N, C_in)`` multiplying each image's input channels first (a squeeze-excite
            gate), or ``None``.
        tile: A fixed tile (default: autotuned on a GPU, a small tile under the interpreter).

    Returns:
        ``(N, C_out, H, W)`` in channels_last memory, ``x``'s dtype.

    Example:
        >>> x = torch.randn(1, 32, 8, 8).to(memory_format=torch.channels_last)  # doctest: +SKIP
        >>> pointwise_conv(x, torch.randn(16, 32)).shape  # doctest: +SKIP
        torch.Size([1, 16, 8, 8])
    """
    n, c_in, h, w = x.shape
    weight = weight.reshape(weight.shape[0], -1)
    if weight.shape[1] != c_in:
        raise invalid(
            "weight", f"(C_out, {c_in}) for an input of {c_in} channels", tuple(weight.shape)
        )
    c_out = weight.shape[0]
    x = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype).contiguous(
        memory_format=torch.channels_last
    )
    if residual is not None:
        if residual.shape != out.shape:
            raise invalid(
                "residual", f"a tensor of shape {tuple(out.shape)}", tuple(residual.shape)
            )
        residual = residual.contiguous(memory_format=torch.channels_last)
    if scale is not None:
        if scale.shape != (n, c_in):
            raise invalid("scale", f"a tensor of shape {(n, c_in)}", tuple(scale.shape))
        scale = scale.contiguous()
    m = n * h * w
    kernel, meta = tuned(pointwise_kernel, CONFIGS, ("M", "N", "K"), tile, x.device)
    dummy = weight  # never read: the HAS_* flags switch the loads off
    kernel[grid_2d(m, c_out, "BM", "BN", meta)](
        x, weight.contiguous(), bias if bias is not None else dummy,
        residual if residual is not None else dummy, scale if scale is not None else dummy, out,
        m, c_out, c_in, h * w,
        HAS_BIAS=bias is not None, HAS_RES=residual is not None, HAS_SCALE=scale is not None,
        ACT=act, IEEE=dot_in_fp32(x.dtype), **meta,
    )  # fmt: skip
    return out
