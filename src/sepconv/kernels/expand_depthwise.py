"""The expansion 1x1 and the depthwise ``K x K`` of an inverted residual in one kernel, the
expanded tensor never in global memory.

An inverted residual widens ``C_in`` channels to ``C_exp = t * C_in`` (t = 6 in MobileNetV2),
then filters each expanded channel alone. Run as two kernels, the expanded activation, the
widest tensor of the block, is written out and read back. Here each program owns a tile of
``BP`` output pixels by ``BC`` expanded channels and, for every one of the ``K * K`` taps,
computes the expanded values it needs from the narrow input on the spot: a ``BP x C_in`` by
``C_in x BC`` product, bias and activation, then the tap's weight. The halo is recomputed
rather than exchanged, ``K * K`` times the expansion's multiply-adds for ``1 / t`` of its
bytes: a trade a GPU's arithmetic can afford where the block is memory-bound, which only a
measurement on the device decides. Taps in the zero padding of the expanded tensor contribute
zero (not ``act(bias)``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sepconv.kernels.activations import apply_activation
from sepconv.kernels.depthwise import output_pixels, output_size
from sepconv.kernels.launch import Tile, dot_in_fp32, grid_2d, tuned
from sepconv.utils.validation import invalid

#: Tile shapes tried on a GPU (``BK`` runs over the block's input channels).
CONFIGS = [
    triton.Config({"BP": bp, "BC": bc, "BK": bk}, num_warps=warps, num_stages=stages)
    for bp, bc, bk, warps, stages in (
        (64, 64, 32, 4, 3),
        (128, 64, 32, 8, 3),
        (64, 128, 32, 8, 3),
        (32, 64, 16, 4, 3),
        (128, 32, 32, 4, 3),
        (32, 32, 16, 2, 3),
    )
]


@triton.jit
def expand_depthwise_kernel(
    x_ptr, we_ptr, be_ptr, wd_ptr, bd_ptr, out_ptr,
    P, CI, CE, H, W, HO, WO, STRIDE, PAD,
    KS: tl.constexpr, ACT_E: tl.constexpr, ACT_D: tl.constexpr, IEEE: tl.constexpr,
    BP: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """``out = act_d(depthwise(act_e(x @ we^T + be)) + bd)`` with the expansion recomputed per
    tap; ``x`` NHWC with ``CI`` channels, ``out`` NHWC with ``CE``."""
    pixels, pixel_ok, image, ho, wo = output_pixels(tl.program_id(0), P, HO, WO, BP)
    channels = tl.program_id(1) * BC + tl.arange(0, BC)
    channel_ok = channels < CE
    bias_e = tl.load(be_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)
    acc = tl.zeros((BP, BC), dtype=tl.float32)
    for kh in tl.static_range(KS):
        hi = ho * STRIDE - PAD + kh
        for kw in tl.static_range(KS):
            wi = wo * STRIDE - PAD + kw
            inside = pixel_ok & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
            base = ((image * H + hi) * W + wi).to(tl.int64) * CI
            expanded = tl.zeros((BP, BC), dtype=tl.float32)
            for k0 in range(0, CI, BK):
                ks = k0 + tl.arange(0, BK)
                k_ok = ks < CI
                a = tl.load(
                    x_ptr + base[:, None] + ks[None, :],
                    mask=inside[:, None] & k_ok[None, :],
                    other=0.0,
                )
                b = tl.load(
                    we_ptr + channels[:, None] * CI + ks[None, :],
                    mask=channel_ok[:, None] & k_ok[None, :],
                    other=0.0,
                )
                if IEEE:
                    expanded += tl.dot(
                        a.to(tl.float32), tl.trans(b.to(tl.float32)), input_precision="ieee"
                    )
                else:
                    expanded += tl.dot(a, tl.trans(b))
            expanded = apply_activation(expanded + bias_e[None, :], ACT_E)
            # The depthwise conv pads the expanded tensor with zeros.
            expanded = tl.where(inside[:, None], expanded, 0.0)
            # Rounded as the unfused path stores the expanded tensor, so both agree.
            expanded = expanded.to(out_ptr.dtype.element_ty).to(tl.float32)
            taps = tl.load(
                wd_ptr + channels * (KS * KS) + kh * KS + kw, mask=channel_ok, other=0.0
            ).to(tl.float32)
            acc += expanded * taps[None, :]
    acc += tl.load(bd_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)[None, :]
    acc = apply_activation(acc, ACT_D)
    offsets = pixels.to(tl.int64)[:, None] * CE + channels[None, :]
    tl.store(
        out_ptr + offsets,
        acc.to(out_ptr.dtype.element_ty),
        mask=pixel_ok[:, None] & channel_ok[None, :],
    )


def expand_depthwise(
    x: torch.Tensor,
    expand_weight: torch.Tensor,
    expand_bias: torch.Tensor,
    depthwise_weight: torch.Tensor,
    depthwise_bias: torch.Tensor,
    *,
    stride: int = 1,
    padding: int | None = None,
    expand_act: int = 0,
    depthwise_act: int = 0,
    tile: Tile | None = None,
) -> torch.Tensor:
    """The expansion 1x1 then the depthwise ``K x K`` of an inverted residual, fused.

    Args:
        x: ``(N, C_in, H, W)``, channels_last (converted if not), fp32, bf16 or fp16.
        expand_weight: ``(C_exp, C_in)`` or ``(C_exp, C_in, 1, 1)``; ``expand_bias``: ``(C_exp,)``.
        depthwise_weight: ``(C_exp, 1, K, K)``; ``depthwise_bias``: ``(C_exp,)``.
        stride, padding: Of the depthwise conv (padding default ``K // 2``).
        expand_act, depthwise_act: Activation codes after each conv.
        tile: A fixed tile (default: autotuned on a GPU, a small tile under the interpreter).

    Returns:
        ``(N, C_exp, H_out, W_out)`` in channels_last memory, ``x``'s dtype: what the two
        convolutions give one after the other, with the expanded tensor rounded to ``x``'s
        dtype between them as the unfused path stores it.
    """
    n, c_in, h, w = x.shape
    expand_weight = expand_weight.reshape(expand_weight.shape[0], -1)
    c_exp = expand_weight.shape[0]
    if expand_weight.shape[1] != c_in:
        raise invalid(
            "expand_weight", f"(C_exp, {c_in}) for an input of {c_in} channels",
            tuple(expand_weight.shape),
        )  # fmt: skip
    ks = depthwise_weight.shape[-1]
    if depthwise_weight.numel() != c_exp * ks * ks:
        raise invalid(
            "depthwise_weight", f"({c_exp}, 1, K, K) after an expansion to {c_exp} channels",
            tuple(depthwise_weight.shape),
        )  # fmt: skip
    padding = ks // 2 if padding is None else padding
    ho, wo = output_size(h, ks, stride, padding), output_size(w, ks, stride, padding)
    x = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty((n, c_exp, ho, wo), device=x.device, dtype=x.dtype).contiguous(
        memory_format=torch.channels_last
    )
    pixels = n * ho * wo
    kernel, meta = tuned(
        expand_depthwise_kernel, CONFIGS, ("P", "CI", "CE", "STRIDE"), tile, x.device
    )
    kernel[grid_2d(pixels, c_exp, "BP", "BC", meta)](
        x, expand_weight.contiguous(), expand_bias,
        depthwise_weight.reshape(c_exp, -1).contiguous(), depthwise_bias, out,
        pixels, c_in, c_exp, h, w, ho, wo, stride, padding,
        KS=ks, ACT_E=expand_act, ACT_D=depthwise_act, IEEE=dot_in_fp32(x.dtype), **meta,
    )  # fmt: skip
    return out
