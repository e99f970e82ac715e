"""In-memory image datasets and the batch iterator that feeds the trainer.

Images live in memory as one ``uint8`` tensor of shape ``(N, C, H, W)``; a batch is a slice of
it, so no DataLoader worker processes are needed. The order of every epoch is a pure function
of ``(seed, epoch)``, which is what makes an interrupted run resumable bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from sepconv.data.augment import BatchAugment
from sepconv.utils.seeding import mix_seed


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set held in memory.

    Args:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``.
        labels: ``int64`` tensor of shape ``(N,)`` with values in ``[0, len(classes))``.
        classes: class names, index ``i`` naming label ``i``.

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        ...                   torch.tensor([0, 1, 0, 1]), ("a", "b"))
        >>> len(ds), ds.num_channels, ds.num_classes
        (4, 1, 2)
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                "Invalid value for argument `images`: expected a uint8 tensor of shape "
                f"(N, C, H, W), received dtype {self.images.dtype} and shape "
                f"{tuple(self.images.shape)}."
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                "Invalid value for argument `labels`: expected shape "
                f"({self.images.shape[0]},) to match `images`, received "
                f"{tuple(self.labels.shape)}."
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_channels(self) -> int:
        """Number of image channels ``C``."""
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``uint8`` images, scaled to ``[0, 1]``.

    Computed in float64 over every pixel of every image (population std), so normalisation
    constants come from the training set instead of being typed in.

    Args:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``.

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats.

    Example:
        >>> channel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
        ((0.5,), (0.5,))
    """
    if images.dim() != 4:
        raise ValueError(
            "Invalid value for argument `images`: expected shape (N, C, H, W), received "
            f"{tuple(images.shape)}."
        )
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    # Chunked so that a float64 copy of a large set never exists at once.
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.numel() / channels
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


class BatchLoader:
    """Deterministic, rank-sharded batches of an :class:`ImageDataset`.

    Every step draws one *global* batch of ``batch_size`` indices from a permutation that
    depends only on ``(seed, epoch)``; rank ``r`` of ``world_size`` keeps the ``r``-th
    contiguous slice of it. Random augmentation parameters are likewise drawn for the whole
    global batch from ``(seed, epoch, step)`` before slicing, so N processes see exactly the
    samples, crops and flips that one process with the same global batch would.

    Args:
        dataset: the images and labels.
        batch_size: global batch size; must be divisible by ``world_size``.
        shuffle: permute the samples every epoch (training) or keep file order (evaluation).
        seed: base of every random choice the loader makes.
        drop_last: drop the final incomplete global batch (needed for training under DDP).
        augment: batch-wise augmentation applied to the ``uint8`` images, or ``None``.
        rank: index of this process, ``0 <= rank < world_size``.
        world_size: number of processes sharing each global batch.

    Yields:
        ``(images, labels)``: ``uint8`` ``(batch_size // world_size, C, H, W)`` and ``int64``.

    Example:
        >>> ds = ImageDataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8),
        ...                   torch.arange(10) % 2, ("a", "b"))
        >>> loader = BatchLoader(ds, batch_size=4, drop_last=True)
        >>> len(loader), [tuple(x.shape) for x, _ in loader][0]
        (2, (4, 1, 4, 4))
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        augment: BatchAugment | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(
                "Invalid value for argument `batch_size`: expected a positive integer, "
                f"received {batch_size}."
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                "Invalid values for arguments `rank`/`world_size`: expected "
                f"0 <= rank < world_size, received rank={rank}, world_size={world_size}."
            )
        if batch_size % world_size:
            raise ValueError(
                "Invalid value for argument `batch_size`: expected a multiple of "
                f"world_size={world_size}, received {batch_size}."
            )
        if drop_last and batch_size > len(dataset):
            raise ValueError(
                "Invalid value for argument `batch_size`: with drop_last=True it must not "
                f"exceed the dataset size {len(dataset)}, received {batch_size}."
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation) the next iteration produces."""
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this rank's batches of the current epoch, beginning at step ``start``."""
        n = len(self.dataset)
        if self.shuffle:
            order_gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=order_gen)
        else:
            order = torch.arange(n)
        for step in range(start, len(self)):
            global_idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            # The last incomplete batch (evaluation only) is split as evenly as possible.
            bounds = torch.linspace(0, len(global_idx), self.world_size + 1).long()
            lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
            images = self.dataset.images[global_idx[lo:hi]]
            if self.augment is not None:
                aug_gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, step, 1))
                params = self.augment.sample(len(global_idx), images.shape[-2:], aug_gen)
                images = self.augment.apply(images, params.slice(lo, hi))
            yield images, self.dataset.labels[global_idx[lo:hi]]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()
