"""Per-channel normalisation of ``uint8`` image batches, run wherever the batch is."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sepconv.utils.validation import invalid


class Normalize:
    """``uint8`` images -> ``(x / 255 - mean) / std``, computed in float32 on the batch's device.

    The arithmetic is float32 whatever ``dtype`` says, and the result is cast at the end, so a
    ``bfloat16`` output equals what bf16 autocast makes of the float32 one at the model's first
    layer, and the float32 output is bit for bit the same on every device: each step is one
    correctly rounded elementwise operation between tensors on the batch's device. (The 255 is
    such a tensor too: PyTorch's CUDA kernels divide by a host scalar as a multiply by its
    reciprocal, which rounds differently from the CPU's division.) The constants are copied to
    a device once, on first use there, and kept.

    Args:
        mean: per-channel mean of the training images, on the ``[0, 1]`` scale
            (see :func:`~sepconv.data.channel_stats`).
        std: per-channel standard deviation on the same scale; every entry > 0.
        dtype: floating dtype of the output (default float32).
        channels_last: return NHWC-strided tensors (``torch.channels_last``).

    Shape:
        ``(N, C, H, W)`` ``uint8`` -> ``(N, C, H, W)`` ``dtype``, with ``C == len(mean)``.

    Example:
        >>> norm = Normalize((0.5,), (0.25,))
        >>> norm(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).flatten().tolist()
        [-2.0, 2.0]
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if not mean:
            raise invalid("mean", "one value per channel", mean)
        if len(std) != len(mean) or not all(s > 0 for s in std):
            raise invalid("std", f"{len(mean)} positive values, one per channel", std)
        if not dtype.is_floating_point:
            raise invalid("dtype", "a floating-point dtype", dtype)
        self.mean = mean
        self.std = std
        self.dtype = dtype
        self.channels_last = channels_last
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"Normalize(mean={self.mean}, std={self.std}, dtype={self.dtype}, "
            f"channels_last={self.channels_last})"
        )

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._constants:
            shape = (1, len(self.mean), 1, 1)
            self._constants[device] = (
                torch.tensor(255.0, dtype=torch.float32, device=device),
                torch.tensor(self.mean, dtype=torch.float32, device=device).view(shape),
                torch.tensor(self.std, dtype=torch.float32, device=device).view(shape),
            )
        return self._constants[device]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise a ``uint8`` batch ``(N, C, H, W)`` on its own device."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                "Invalid value for argument `images`: expected a uint8 tensor of shape "
                f"(N, {len(self.mean)}, H, W), received dtype {images.dtype} and shape "
                f"{tuple(images.shape)}."
            )
        scale, mean, std = self._on(images.device)
        x = images.to(torch.float32).div_(scale).sub_(mean).div_(std)
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def to_model_input(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    channels_last: bool,
) -> torch.Tensor:
    """``uint8`` ``(N, C, H, W)`` images -> normalised float32 ``(x / 255 - mean) / std`` on
    ``device``, by :class:`Normalize` (the same bits on every device).

    Example:
        >>> images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
        >>> to_model_input(images, (0.5,), (0.25,), device=torch.device("cpu"),
        ...                channels_last=False).flatten().tolist()
        [-2.0, 2.0]
    """
    normalize = Normalize(mean, std, channels_last=channels_last)
    return normalize(images.to(device, non_blocking=True))
