"""Batch-wise augmentation of ``uint8`` image tensors: random crop with padding and flip, and
random erasing.

One gather over a padded batch produces every crop and flip at once, so the cost is a single
indexing kernel per batch instead of a Python loop over images (the per-image
``transforms.RandomCrop`` path in torchvision). Used for CIFAR by He et al., "Deep Residual
Learning for Image Recognition" (CVPR 2016), §4.2: pad 4, random 32x32 crop, horizontal flip.

Every augmentation draws its random choices for a whole (global) batch with :meth:`sample`,
then applies a slice of them with :meth:`apply`, so a process of a torchrun job augments its
share of the batch exactly as one process would (see :class:`~sepconv.data.BatchLoader`).

The choices are always drawn on the CPU, from a CPU ``torch.Generator``; :meth:`apply` moves
them (a few small tensors) to wherever the images are and augments there. Images held on a
GPU are therefore augmented on the GPU with exactly the choices, and so exactly the result,
that the same images get on the CPU: every operation here (padding, gather, select) is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F


class BatchAugment(Protocol):
    """What :class:`~sepconv.data.BatchLoader` and the trainer call: draw the random choices
    for ``n`` images, then apply (a slice of) them. The choices have ``slice(start, stop)``;
    ``apply`` must accept choices drawn on the CPU for images on any device."""

    def sample(self, n: int, size: tuple[int, int] | torch.Size, generator: torch.Generator) -> Any:
        """Draw the random choices for ``n`` images of spatial ``size``."""
        ...

    def apply(self, images: torch.Tensor, params: Any) -> torch.Tensor:
        """Augment ``images`` (``(N, C, H, W)``) as ``params`` say."""
        ...


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small host tensor to ``device`` without making the host wait for the copy."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        # From pinned memory the copy is truly asynchronous; the caching host allocator keeps
        # the buffer alive until the copy is done.
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _check_count(images: torch.Tensor, count: int) -> None:
    if count != images.shape[0]:
        raise ValueError(
            f"Invalid value for argument `params`: expected choices for {images.shape[0]} "
            f"images, received {count}."
        )


@dataclass(frozen=True)
class CropFlipParams:
    """Per-image random choices: crop offsets into the padded image and the flip decision."""

    top: torch.Tensor  # (N,) int64, in [0, 2 * padding]
    left: torch.Tensor  # (N,) int64, in [0, 2 * padding]
    flip: torch.Tensor  # (N,) bool

    def slice(self, start: int, stop: int) -> CropFlipParams:
        """Parameters of images ``start:stop`` of the batch."""
        return CropFlipParams(self.top[start:stop], self.left[start:stop], self.flip[start:stop])

    def to(self, device: torch.device) -> CropFlipParams:
        """The same choices on ``device``."""
        return CropFlipParams(*(_to_device(t, device) for t in (self.top, self.left, self.flip)))


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
        _check_count(images, params.top.shape[0])
        params = params.to(images.device)
        p = self.padding
        padded = F.pad(images, (p, p, p, p)) if p else images  # (N, C, H+2p, W+2p)
        padded_w = w + 2 * p
        rows = params.top[:, None] + torch.arange(h, device=images.device)  # (N, H)
        cols = torch.arange(w, device=images.device)
        # A flipped crop reads its columns right to left.
        cols = torch.where(params.flip[:, None], w - 1 - cols, cols) + params.left[:, None]
        # One gather over flat indices: one index tensor, where 4-D advanced indexing needs four.
        flat = (rows[:, :, None] * padded_w + cols[:, None, :]).view(n, 1, h * w)
        out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
        return out.view(n, c, h, w)


@dataclass(frozen=True)
class EraseParams:
    """Per-image random choices of :class:`RandomErasing`: whether to erase, the rectangle
    (rows ``top:top+height``, columns ``left:left+width``) and the noise that fills it."""

    erase: torch.Tensor  # (N,) bool
    top: torch.Tensor  # (N,) int64
    left: torch.Tensor  # (N,) int64
    height: torch.Tensor  # (N,) int64, >= 1
    width: torch.Tensor  # (N,) int64, >= 1
    noise: torch.Tensor  # (N, 1, H, W) uint8; the same value in every channel of a pixel

    def slice(self, start: int, stop: int) -> EraseParams:
        """Parameters of images ``start:stop`` of the batch."""
        part = slice(start, stop)
        return EraseParams(
            self.erase[part],
            self.top[part],
            self.left[part],
            self.height[part],
            self.width[part],
            self.noise[part],
        )

    def to(self, device: torch.device) -> EraseParams:
        """The same choices on ``device``."""
        fields = (self.erase, self.top, self.left, self.height, self.width, self.noise)
        return EraseParams(*(_to_device(t, device) for t in fields))


class RandomErasing:
    """Random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020, Alg. 1):
    with probability ``p`` an image gets one rectangle of uniform random pixel values.

    The rectangle's area is a fraction ``s ~ U(area[0], area[1])`` of the image's and its
    aspect ratio ``r ~ U(ratio, 1 / ratio)``, so it is ``sqrt(s*H*W*r)`` high and
    ``sqrt(s*H*W/r)`` wide, clipped to the image (the paper redraws instead), and placed
    uniformly inside it. The defaults are the paper's (``p`` = 0.5, ``s_l`` = 0.02,
    ``s_h`` = 0.4, ``r_1`` = 0.3).

    Args:
        p: probability of erasing an image, in ``(0, 1]``.
        area: ``(s_l, s_h)``, the range of the erased fraction, ``0 < s_l <= s_h <= 1``.
        ratio: ``r_1`` in ``(0, 1]``; aspect ratios lie in ``[r_1, 1 / r_1]``.

    Shape:
        ``apply``: ``(N, C, H, W)`` ``uint8`` -> the same.

    Example:
        >>> aug = RandomErasing(p=1.0)
        >>> x = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
        >>> params = aug.sample(4, (28, 28), torch.Generator().manual_seed(0))
        >>> bool((aug.apply(x, params) != x).any())
        True
    """

    def __init__(
        self, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4), ratio: float = 0.3
    ) -> None:
        if not 0.0 < p <= 1.0:
            raise ValueError(f"Invalid value for argument `p`: expected 0 < p <= 1, received {p}.")
        if not 0.0 < area[0] <= area[1] <= 1.0:
            raise ValueError(
                "Invalid value for argument `area`: expected (low, high) with "
                f"0 < low <= high <= 1, received {area}."
            )
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"Invalid value for argument `ratio`: expected 0 < ratio <= 1, received {ratio}."
            )
        self.p = p
        self.area = area
        self.ratio = ratio

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, area={self.area}, ratio={self.ratio})"

    def sample(
        self, n: int, size: tuple[int, int] | torch.Size, generator: torch.Generator
    ) -> EraseParams:
        """Draw the random choices for ``n`` images of spatial ``size``."""
        h, w = int(size[0]), int(size[1])
        erase = torch.rand(n, generator=generator) < self.p
        low, high = self.area
        fraction = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
        aspect = self.ratio + (1 / self.ratio - self.ratio) * torch.rand(
            n, generator=generator, dtype=torch.float64
        )
        area = fraction * h * w
        height = (area * aspect).sqrt().round().long().clamp(1, h)
        width = (area / aspect).sqrt().round().long().clamp(1, w)
        # Offsets uniform over the positions where the rectangle fits.
        top = (torch.rand(n, generator=generator, dtype=torch.float64) * (h - height + 1)).long()
        left = (torch.rand(n, generator=generator, dtype=torch.float64) * (w - width + 1)).long()
        noise = torch.randint(0, 256, (n, 1, h, w), generator=generator, dtype=torch.uint8)
        return EraseParams(erase, top, left, height, width, noise)

    def apply(self, images: torch.Tensor, params: EraseParams) -> torch.Tensor:
        """Erase the rectangles ``params`` chose in ``images`` (``(N, C, H, W)``)."""
        _check_count(images, params.erase.shape[0])
        params = params.to(images.device)
        h, w = images.shape[-2:]
        rows = torch.arange(h, device=images.device)
        cols = torch.arange(w, device=images.device)
        inside_rows = (rows >= params.top[:, None]) & (rows < (params.top + params.height)[:, None])
        inside_cols = (cols >= params.left[:, None]) & (
            cols < (params.left + params.width)[:, None]
        )
        mask = inside_rows[:, :, None] & inside_cols[:, None, :] & params.erase[:, None, None]
        return torch.where(mask[:, None], params.noise.to(images.dtype), images)


class Compose:
    """Several batch augmentations applied in order, each drawing from the same generator.

    Example:
        >>> aug = Compose([RandomCropFlip(padding=2), RandomErasing()])
        >>> x = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
        >>> aug.apply(x, aug.sample(4, (28, 28), torch.Generator().manual_seed(0))).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(self, augments: Sequence[BatchAugment]) -> None:
        self.augments = tuple(augments)

    def __repr__(self) -> str:
        return f"Compose({list(self.augments)})"

    def sample(
        self, n: int, size: tuple[int, int] | torch.Size, generator: torch.Generator
    ) -> ComposeParams:
        """Draw every augmentation's choices, in order."""
        return ComposeParams(tuple(a.sample(n, size, generator) for a in self.augments))

    def apply(self, images: torch.Tensor, params: ComposeParams) -> torch.Tensor:
        """Apply every augmentation with its own choices."""
        for augment, own in zip(self.augments, params.parts, strict=True):
            images = augment.apply(images, own)
        return images


@dataclass(frozen=True)
class ComposeParams:
    """The choices of each augmentation of a :class:`Compose`."""

    parts: tuple[Any, ...]

    def slice(self, start: int, stop: int) -> ComposeParams:
        """Parameters of images ``start:stop`` of the batch."""
        return ComposeParams(tuple(part.slice(start, stop) for part in self.parts))

    def to(self, device: torch.device) -> ComposeParams:
        """The same choices on ``device`` (every part must have ``to(device)``)."""
        return ComposeParams(tuple(part.to(device) for part in self.parts))
