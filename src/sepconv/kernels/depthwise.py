"""The depthwise ``K x K`` convolution in channels_last memory, bias and activation fused.

Each program computes a tile of ``BP`` output pixels (flattened over ``N * H_out * W_out``) by
``BC`` channels. Channels are contiguous in channels_last memory, so every one of the ``K * K``
taps is one coalesced load of ``BP x BC`` input values; taps that fall in the zero padding are
masked to zero. Accumulation is fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sepconv.kernels.activations import apply_activation
from sepconv.kernels.launch import Tile, grid_2d, tuned
from sepconv.utils.validation import invalid

#: Tile shapes tried on a GPU.
CONFIGS = [
    triton.Config({"BP": bp, "BC": bc}, num_warps=warps)
    for bp, bc, warps in (
        (32, 64, 4),
        (64, 64, 4),
        (16, 128, 4),
        (32, 128, 4),
        (64, 32, 4),
        (128, 32, 4),
        (16, 64, 2),
    )
]


@triton.jit
def output_pixels(pid, P, HO, WO, BP: tl.constexpr):
    """The ``BP`` output pixels of program ``pid`` (flattened over ``N * HO * WO``): their
    indices, which exist, and their image, row and column."""
    pixels = pid * BP + tl.arange(0, BP)
    image = pixels // (HO * WO)
    rest = pixels % (HO * WO)
    return pixels, pixels < P, image, rest // WO, rest % WO


@triton.jit
def depthwise_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    P, C, H, W, HO, WO, STRIDE, PAD,
    KS: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BP: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """``out[n, ho, wo, c] = act(sum_taps x[n, hi, wi, c] * w[c, kh, kw] + bias[c])``, NHWC."""
    pixels, pixel_ok, image, ho, wo = output_pixels(tl.program_id(0), P, HO, WO, BP)
    channels = tl.program_id(1) * BC + tl.arange(0, BC)
    channel_ok = channels < C
    acc = tl.zeros((BP, BC), dtype=tl.float32)
    for kh in tl.static_range(KS):
        hi = ho * STRIDE - PAD + kh
        for kw in tl.static_range(KS):
            wi = wo * STRIDE - PAD + kw
            inside = pixel_ok & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
            base = ((image * H + hi) * W + wi).to(tl.int64) * C
            values = tl.load(
                x_ptr + base[:, None] + channels[None, :],
                mask=inside[:, None] & channel_ok[None, :],
                other=0.0,
            )
            taps = tl.load(w_ptr + channels * (KS * KS) + kh * KS + kw, mask=channel_ok, other=0.0)
            acc += values.to(tl.float32) * taps.to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)[None, :]
    acc = apply_activation(acc, ACT)
    offsets = pixels.to(tl.int64)[:, None] * C + channels[None, :]
    tl.store(
        out_ptr + offsets,
        acc.to(out_ptr.dtype.element_ty),
        mask=pixel_ok[:, None] & channel_ok[None, :],
    )


def output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output side of a convolution: ``(size + 2 * padding - kernel_size) // stride + 1``."""
    return (size + 2 * padding - kernel_size) // stride + 1


def depthwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int | None = None,
    act: int = 0,
    tile: Tile | None = None,
) -> torch.Tensor:
    """A depthwise ``K x K`` convolution of ``x`` in channels_last memory.

    Args:
        x: ``(N, C, H, W)``, channels_last (converted if not), fp32, bf16 or fp16.
        weight: ``(C, 1, K, K)`` or ``(C, K, K)``, ``K`` odd.
        bias: ``(C,)`` or ``None``.
        stride: Stride of both spatial dimensions.
        padding: Zero padding of each side (default ``K // 2``, "same" at stride 1).
        act: Activation code (:func:`sepconv.kernels.activations.activation_code`).
        tile: A fixed tile (default: autotuned on a GPU, a small tile under the interpreter).

    Returns:
        ``(N, C, H_out, W_out)`` in channels_last memory, ``x``'s dtype.
    """
    n, c, h, w = x.shape
    ks = weight.shape[-1]
    if weight.numel() != c * ks * ks or weight.shape[-2] != ks:
        raise invalid("weight", f"({c}, 1, K, K) for an input of {c} channels", tuple(weight.shape))
    padding = ks // 2 if padding is None else padding
    ho, wo = output_size(h, ks, stride, padding), output_size(w, ks, stride, padding)
    if ho < 1 or wo < 1:
        raise invalid("x", f"an input of at least {ks - 2 * padding} pixels a side", (h, w))
    x = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty((n, c, ho, wo), device=x.device, dtype=x.dtype).contiguous(
        memory_format=torch.channels_last
    )
    pixels = n * ho * wo
    kernel, meta = tuned(depthwise_kernel, CONFIGS, ("P", "C", "STRIDE"), tile, x.device)
    kernel[grid_2d(pixels, c, "BP", "BC", meta)](
        x, weight.reshape(c, ks * ks).contiguous(), bias if bias is not None else weight, out,
        pixels, c, h, w, ho, wo, stride, padding,
        KS=ks, HAS_BIAS=bias is not None, ACT=act, **meta,
    )  # fmt: skip
    return out
