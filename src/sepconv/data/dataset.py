"""In-memory image datasets and the batch iterator that feeds the trainer.

Images live in memory as one ``uint8`` tensor of shape ``(N, C, H, W)``; a batch is a slice of
it, so no DataLoader worker processes are needed. The order of every epoch is a pure function
of ``(seed, epoch)``, which is what makes an interrupted run resumable bit for bit.

The memory may be a GPU's (:meth:`ImageDataset.to`; Fashion-MNIST is 47 MB as ``uint8``). Then
batches are gathered, augmented and normalised there: per step only the batch's indices and
random choices, drawn on the CPU exactly as for a CPU dataset, travel to the device, and the
batches are bit for bit those of the CPU dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from math import sqrt

import torch
import torch.nn.functional as F

from sepconv.data.augment import BatchAugment
from sepconv.data.normalize import Normalize
from sepconv.utils.seeding import mix_seed


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set held in memory.

    Args:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``.
        labels: integer tensor of shape ``(N,)`` with values in ``[0, len(classes))``, on
            the same device as ``images`` (kept as ``int64``).
        classes: distinct class names, index ``i`` naming label ``i``.

    Raises:
        ValueError: a tensor of the wrong dtype or shape, labels out of range or not integers,
            or class names that are missing or repeated (each message names the argument).

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        ...                   torch.tensor([0, 1, 0, 1]), ("a", "b"))
        >>> len(ds), ds.num_channels, ds.num_classes, ds.to("cpu").device
        (4, 1, 2, device(type='cpu'))
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
        if self.labels.device != self.images.device:
            raise ValueError(
                "Invalid value for argument `labels`: expected a tensor on the device of "
                f"`images` ({self.images.device}), received one on {self.labels.device}."
            )
        _check_classes(self.classes)
        # A tuple, whatever sequence was given: the dataset is frozen and hashable.
        object.__setattr__(self, "classes", tuple(self.classes))
        _check_labels(self.labels, len(self.classes))
        if self.labels.dtype != torch.int64:
            object.__setattr__(self, "labels", self.labels.long())

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

    @property
    def device(self) -> torch.device:
        """Where the images and labels are."""
        return self.images.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same dataset with images (still ``uint8``) and labels on ``device``.

        A :class:`BatchLoader` over the result yields batches on ``device``, gathered and
        augmented there. Returns ``self`` when the data is there already.

        Example:
            >>> ds = ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
            ...                   torch.tensor([0, 1]), ("a", "b"))
            >>> ds.to("cpu") is ds
            True
        """
        device = torch.device(device)
        if device.type == self.device.type and device.index in (None, self.device.index):
            return self
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def resized(self, side: int, *, chunk: int = 1024) -> ImageDataset:
        """The same dataset with every image resized to ``side x side`` (still ``uint8``).

        Bilinear, as image folders are resized on loading, with antialiasing when shrinking;
        rounded back to ``uint8``. Fashion-MNIST's 28x28 garments at 224x224 are how a
        deployment-size model is trained on them. Returns ``self`` when the images have that
        size already. Works in chunks of ``chunk`` images, so the float copy stays small.

        Example:
            >>> ds = ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
            ...                   torch.tensor([0, 1]), ("a", "b"))
            >>> tuple(ds.resized(8).images.shape), ds.resized(4) is ds
            ((2, 1, 8, 8), True)
        """
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise ValueError(
                f"Invalid value for argument `side`: expected a positive integer, received "
                f"{side!r}."
            )
        n, c, h, w = (int(v) for v in self.images.shape)
        if (h, w) == (side, side):
            return self
        out = torch.empty((n, c, side, side), dtype=torch.uint8, device=self.device)
        for start in range(0, n, chunk):
            part = self.images[start : start + chunk].float()
            part = F.interpolate(
                part, size=(side, side), mode="bilinear", align_corners=False,
                antialias=side < max(h, w),
            )  # fmt: skip
            out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
        return replace(self, images=out)


def _check_classes(classes: object) -> None:
    """Raise unless ``classes`` is a non-empty sequence of distinct strings."""
    if (
        isinstance(classes, str)
        or not isinstance(classes, (tuple, list))
        or not classes
        or not all(isinstance(c, str) for c in classes)
    ):
        raise ValueError(
            "Invalid value for argument `classes`: expected a non-empty tuple of class names "
            f"(strings), received {classes!r}."
        )
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(
            "Invalid value for argument `classes`: expected distinct class names, received "
            f"{repeated[0]!r} {classes.count(repeated[0])} times."
        )


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise unless ``labels`` are integer class indices in ``[0, num_classes)``."""
    if labels.dtype == torch.bool or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ValueError(
            "Invalid value for argument `labels`: expected an integer tensor of class indices, "
            f"received dtype {labels.dtype}."
        )
    if labels.numel() == 0 or labels.device.type == "meta":  # no values to check
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"Invalid value for argument `labels`: expected class indices in [0, {num_classes}) "
            f"(one per class of `classes`), received values from {low} to {high}."
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``uint8`` images, scaled to ``[0, 1]``.

    Computed from exact integer sums over every pixel of every image (population std), so
    the constants are correctly rounded and the same whichever device holds the images; they
    come from the training set instead of being typed in.

    Args:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``, on any device.

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats.

    Example:
        >>> channel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
        ((0.5,), (0.5,))
    """
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(
            "Invalid value for argument `images`: expected a uint8 tensor of shape "
            f"(N, C, H, W), received dtype {images.dtype} and shape {tuple(images.shape)}."
        )
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.int64, device=images.device)
    total_sq = torch.zeros(channels, dtype=torch.int64, device=images.device)
    # Integer sums are exact in any order, so no device's reduction order shows in the result.
    # Chunked so that an int64 copy of a large set never exists at once.
    for chunk in images.split(4096):
        x = chunk.to(torch.int64)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.numel() // channels
    means, stds = [], []
    for s, s2 in zip(total.tolist(), total_sq.tolist(), strict=True):
        # Exact rationals: mean = s / (n * 255), var = (n * s2 - s^2) / (n * 255)^2.
        scale = max(count, 1) * 255
        means.append(float(Fraction(s, scale)))
        stds.append(sqrt(Fraction(count * s2 - s * s, scale * scale)))
    return tuple(means), tuple(stds)


class BatchLoader:
    """Deterministic, rank-sharded batches of an :class:`ImageDataset`.

    Every step draws one *global* batch of ``batch_size`` indices from a permutation that
    depends only on ``(seed, epoch)``; rank ``r`` of ``world_size`` keeps the ``r``-th
    contiguous slice of it. Random augmentation parameters are likewise drawn for the whole
    global batch from ``(seed, epoch, step)`` before slicing, so N processes see exactly the
    samples, crops and flips that one process with the same global batch would.

    The batches are on the dataset's device (see :meth:`ImageDataset.to`). The order and the
    augmentation choices are drawn on the CPU whatever that device is, so the batches of a
    ``(seed, epoch, step)`` are bit for bit the same on every device; on a GPU, a step moves
    only those choices and the epoch's order (once per epoch) to it, never image data.

    Args:
        dataset: the images and labels.
        batch_size: global batch size; must be divisible by ``world_size``.
        shuffle: permute the samples every epoch (training) or keep file order (evaluation).
        seed: base of every random choice the loader makes.
        drop_last: drop the final incomplete global batch (needed for training under DDP).
        augment: batch-wise augmentation applied to the ``uint8`` images, or ``None``.
        rank: index of this process, ``0 <= rank < world_size``.
        world_size: number of processes sharing each global batch.
        normalize: applied after augmentation, on the dataset's device, to yield model
            inputs instead of ``uint8`` images; ``None`` yields ``uint8``.

    Yields:
        ``(images, labels)`` on the dataset's device: ``uint8`` (or, with ``normalize``, its
        floating dtype) ``(batch_size // world_size, C, H, W)`` and ``int64``
        ``(batch_size // world_size,)``.

    Example:
        >>> ds = ImageDataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8),
        ...                   torch.arange(10) % 2, ("a", "b"))
        >>> loader = BatchLoader(ds, batch_size=4, drop_last=True)
        >>> len(loader), [tuple(x.shape) for x, _ in loader][0]
        (2, (4, 1, 4, 4))
        >>> # On a GPU: BatchLoader(ds.to("cuda"), 4, normalize=Normalize((0.5,), (0.25,)))
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
        normalize: Normalize | None = None,
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
        self.normalize = normalize
        self.epoch = 0

    @property
    def device(self) -> torch.device:
        """Where the batches are: the dataset's device."""
        return self.dataset.device

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
        # One copy per epoch; the per-step slices below are then views on the device.
        order = order.to(self.device)
        for step in range(start, len(self)):
            global_idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            # The last incomplete batch (evaluation only) is split as evenly as possible.
            # (On the CPU: the batch length is a shape, so no device synchronisation.)
            bounds = torch.linspace(0, len(global_idx), self.world_size + 1).long()
            lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
            images = self.dataset.images[global_idx[lo:hi]]
            if self.augment is not None:
                aug_gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, step, 1))
                params = self.augment.sample(len(global_idx), images.shape[-2:], aug_gen)
                # apply() moves the (CPU) choices of this rank's slice to the images' device.
                images = self.augment.apply(images, params.slice(lo, hi))
            if self.normalize is not None:
                images = self.normalize(images)
            yield images, self.dataset.labels[global_idx[lo:hi]]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()
