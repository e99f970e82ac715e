"""A folder of images per class (the ImageFolder layout), read with Pillow.

``root/<class name>/<image file>``; classes are the sub-folder names in sorted order, as in
torchvision's ``ImageFolder``. Every image is converted to one mode and resized to one size so
the whole set fits in a single ``uint8`` tensor.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sepconv.data.dataset import ImageDataset

#: File suffixes treated as images (lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def class_names(root: str | os.PathLike[str]) -> list[str]:
    """The class names of an image folder: its sub-folder names, sorted (``[]`` if missing)."""
    base = Path(root)
    return sorted(d.name for d in base.iterdir() if d.is_dir()) if base.is_dir() else []


def check_same_classes(train_root: Path, test_root: Path) -> None:
    """Raise a ``ValueError`` naming both folders unless they hold the same class sub-folders.

    Labels are indices into the sorted class names, so a test folder with other or extra
    classes would be scored against the wrong names, or crash the loss after a whole epoch.
    """
    train, test = class_names(train_root), class_names(test_root)
    if train and test and train != test:
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        raise ValueError(
            f"Invalid value for argument `data`: the class folders of {test_root} "
            f"({', '.join(test[:10])}) differ from those of {train_root} "
            f"({', '.join(train[:10])}): only in {train_root.name}/: {only_train[:5]}, only in "
            f"{test_root.name}/: {only_test[:5]}; both splits need the same class sub-folders."
        )


def load_image_folder(
    root: str | os.PathLike[str], *, size: int | tuple[int, int] = 32, mode: str = "RGB"
) -> ImageDataset:
    """Load every image under ``root/<class>/`` into memory.

    Args:
        root: folder holding one sub-folder per class.
        size: output ``(height, width)`` (or one int for square images); images of another
            size are resized with bilinear filtering.
        mode: Pillow mode every image is converted to: ``"RGB"`` (3 channels) or ``"L"``
            (1 channel).

    Returns:
        An :class:`ImageDataset` with images of shape ``(N, C, H, W)``.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no class folder with images.
        ValueError: an image file cannot be decoded (the message names it).

    Example:
        >>> ds = load_image_folder("data/flowers/train", size=64)  # doctest: +SKIP
    """
    from PIL import Image, UnidentifiedImageError

    if mode not in ("RGB", "L"):
        raise ValueError(
            f"Invalid value for argument `mode`: expected 'RGB' or 'L', received {mode!r}."
        )
    height, width = (size, size) if isinstance(size, int) else size
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"Image folder {base} does not exist.")
    classes = class_names(base)
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((base / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise FileNotFoundError(
            f"Image folder {base} holds no images in class sub-folders (expected "
            f"{base}/<class>/<image> with suffixes {sorted(IMAGE_SUFFIXES)})."
        )
    channels = 3 if mode == "RGB" else 1
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                images[i] = np.asarray(img).reshape(height, width, channels)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"Image file {path} cannot be decoded: {err}.") from err
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, tuple(classes)
    )
