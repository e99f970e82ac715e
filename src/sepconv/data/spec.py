"""Dataset specs as the command line writes them: ``fashion-mnist``, ``cifar10:DIR``,
``cifar100:DIR``, ``imagefolder:DIR``."""

from __future__ import annotations

from pathlib import Path

from sepconv.data.augment import BatchAugment, Compose, RandomCropFlip, RandomErasing
from sepconv.data.cifar import load_cifar
from sepconv.data.dataset import ImageDataset
from sepconv.data.folder import check_same_classes, load_image_folder
from sepconv.data.idx import load_fashion_mnist

_KINDS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")
FOLDER_SIDE = 32  # what image folders are resized to unless told otherwise


def _parse(spec: str) -> tuple[str, str | None]:
    kind, _, location = spec.partition(":")
    if kind not in _KINDS or (kind != "fashion-mnist" and not location):
        raise ValueError(
            "Invalid value for argument `data`: expected one of 'fashion-mnist[:DIR]', "
            f"'cifar10:DIR', 'cifar100:DIR', 'imagefolder:DIR', received {spec!r}."
        )
    return kind, location or None


def load_dataset(
    spec: str, split: str, *, image_size: int | None = None, resize: bool = False
) -> ImageDataset:
    """Load the ``split`` (``"train"`` or ``"test"``) of the dataset a spec names.

    Args:
        spec: ``fashion-mnist`` (default folder, see :func:`load_fashion_mnist`),
            ``fashion-mnist:DIR``, ``cifar10:DIR``, ``cifar100:DIR`` or ``imagefolder:DIR``;
            an image folder holds ``DIR/train/<class>/...`` and ``DIR/test/<class>/...``
            (``DIR/val`` is accepted for the test split).
        split: ``"train"`` or ``"test"``.
        image_size: side length image folders are decoded at (``None``: 32).
        resize: resize the sets of a fixed size (Fashion-MNIST 28x28, CIFAR 32x32) to
            ``image_size`` as well, when it is given (:meth:`ImageDataset.resized`: every
            image, so load at the own size and resize the images you keep when you need a
            few); without it they keep their own size.

    Example:
        >>> load_dataset("fashion-mnist", "test").images.shape  # doctest: +SKIP
        torch.Size([10000, 1, 28, 28])
    """
    kind, location = _parse(spec)
    if kind == "fashion-mnist":
        fixed = load_fashion_mnist(split, location)
    elif kind in ("cifar10", "cifar100"):
        fixed = load_cifar(location or "", split, variant=kind)
    else:
        return _load_folder(location, split, image_size or FOLDER_SIDE)
    return fixed.resized(image_size) if resize and image_size is not None else fixed


def _load_folder(location: str | None, split: str, image_size: int) -> ImageDataset:
    if split not in ("train", "test"):
        raise ValueError(
            f"Invalid value for argument `split`: expected 'train' or 'test', received {split!r}."
        )
    base = Path(location or "")
    folder = base / split
    if split == "test" and not folder.is_dir() and (base / "val").is_dir():
        folder = base / "val"
    if split == "test":
        check_same_classes(base / "train", folder)  # before decoding any image
    return load_image_folder(folder, size=image_size)


def default_augment(spec: str, image_size: int, random_erasing: float = 0.0) -> BatchAugment:
    """The augmentation a dataset is usually trained with: crop with padding of 1/8 of the
    side (4 px on 32 px CIFAR, He et al. 2016) or 1/14 on Fashion-MNIST (2 px at its 28 px,
    16 px when resized to 224), plus horizontal flips (garments and natural images stay in
    their class when mirrored).
    ``random_erasing`` > 0 adds :class:`~sepconv.data.RandomErasing` with that probability
    after the crop and flip."""
    kind, _ = _parse(spec)
    padding = max(1, image_size // (14 if kind == "fashion-mnist" else 8))
    crop_flip = RandomCropFlip(padding=padding, flip=True)
    if random_erasing == 0.0:
        return crop_flip
    return Compose([crop_flip, RandomErasing(p=random_erasing)])
