"""Batch-wise augmentation of ``uint8`` image tensors: random crop with padding and flip.

One gather over a padded batch produces every crop and flip at once, so the cost is a single
indexing kernel per batch instead of a Python loop over images (the per-image
``transforms.RandomCrop`` path in torchvision). Used for CIFAR by He et al., "Deep Residual
Learning for Image Recognition" (CVPR 2016), §4.2: pad 4, random 32x32 crop, horizontal flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropFlipParams:
    """Per-image random choices: crop offsets into the padded image and the flip decision."""

    top: torch.Tensor  # (N,) int64, in [0, 2 * padding]
    left: torch.Tensor  # (N,) int64, in [0, 2 * padding]
    flip: torch.Tensor  # (N,) bool

    def slice(self, start: int, stop: int) -> CropFlipParams:
        """Parameters of images ``start:stop`` of the batch."""
        return CropFlipParams(self.top[start:stop], self.left[start:stop], self.flip[start:stop])


class RandomCropFlip:
    """Random crop after zero padding, plus an optional horizontal flip, for whole batches.

    Args:
        padding: pixels of zero padding on every side before cropping back to ``(H, W)``;
            ``0`` disables cropping.
        flip: flip each image left-right with probability 1/2. Leave off for digits and text,
            where a mirrored glyph is a different (or no) class.

    Shape:
        ``apply``: ``(N, C, H, W)`` -> ``(N, C, H, W)``, any dtype (``uint8`` in the loader).

    Example:
        >>> aug = RandomCropFlip(padding=2, flip=True)
        >>> x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
        >>> params = aug.sample(8, (28, 28), torch.Generator().manual_seed(0))
        >>> aug.apply(x, params).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        if padding < 0:
            raise ValueError(
                "Invalid value for argument `padding`: expected a non-negative integer, "
                f"received {padding}."
            )
        self.padding = padding
        self.flip = flip

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def sample(
        self, n: int, size: tuple[int, int] | torch.Size, generator: torch.Generator
    ) -> CropFlipParams:
        """Draw the random choices for ``n`` images of spatial ``size``."""
        span = 2 * self.padding + 1
        top = torch.randint(span, (n,), generator=generator)
        left = torch.randint(span, (n,), generator=generator)
        if self.flip:
            flip = torch.randint(2, (n,), generator=generator).bool()
        else:
            flip = torch.zeros(n, dtype=torch.bool)
        return CropFlipParams(top, left, flip)

    def apply(self, images: torch.Tensor, params: CropFlipParams) -> torch.Tensor:
        """Crop and flip ``images`` (``(N, C, H, W)``) as ``params`` say."""
        n, c, h, w = images.shape
        if params.top.shape != (n,):
            raise ValueError(
                f"Invalid value for argument `params`: expected choices for {n} images, "
                f"received {params.top.shape[0]}."
            )
        p = self.padding
        padded = F.pad(images, (p, p, p, p)) if p else images  # (N, C, H+2p, W+2p)
        padded_w = w + 2 * p
        rows = params.top[:, None] + torch.arange(h)  # (N, H)
        cols = torch.arange(w)
        # A flipped crop reads its columns right to left.
        cols = torch.where(params.flip[:, None], w - 1 - cols, cols) + params.left[:, None]
        # One gather with flat indices beats 4-D advanced indexing by ~1.5x on CPU.
        flat = (rows[:, :, None] * padded_w + cols[:, None, :]).view(n, 1, h * w)
        out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
        return out.view(n, c, h, w)
