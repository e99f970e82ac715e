"""A folder of images per class (the ImageFolder layout), read with Pillow.

``root/<class name>/<image file>``; classes are the sub-folder names in sorted order, as in
torchvision's ``ImageFolder`` (hidden folders, whose names start with ``.``, are not classes).
Every image is converted to one mode and resized to one size so the whole set fits in a single
``uint8`` tensor.

The folder is read as untrusted input: a class folder without images, a file that is not a
regular file (a named pipe would block the reader forever), an image of more than
:data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb) or of a pixel format that does not
convert to 8 bits without loss (16-bit or float images) is refused with an error naming it.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch

from sepconv.data.dataset import ImageDataset

#: File suffixes treated as images (lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Largest image read, in pixels (width x height), checked from the header before decoding.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Pillow modes of 8 bits per channel (or fewer): what converts to ``uint8`` as it is.
EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)


def class_names(root: str | os.PathLike[str]) -> list[str]:
    """The class names of an image folder: its sub-folder names that do not start with ``.``,
    sorted (``[]`` if ``root`` is not a folder)."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))


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


def _image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted; anything there that is not a regular file
    or a folder (a named pipe, a device, a socket) is refused before any file is opened. Hidden
    files (``.name``: macOS's ``._photo.png`` resource forks, editors' backups) are skipped,
    as hidden folders are."""
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            mode = path.stat().st_mode  # follows links; never opens the file
        except OSError as err:
            raise ValueError(f"Image folder entry {path} cannot be read: {err.strerror}.") from err
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ValueError(
                f"Image folder entry {path} is not a regular file (a named pipe, device or "
                "socket); image folders hold image files only: remove it."
            )
        if path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
    return files


def _decode(path: Path, mode: str, width: int, height: int, channels: int) -> np.ndarray:
    """One image as ``(height, width, channels)`` ``uint8``, or a ``ValueError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Refused below, by a message naming the file, rather than warned about.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img_file = Image.open(path)
        with img_file as img:
            # Header only so far: refuse what would not fit, before decoding a pixel.
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"Image file {path} declares {img.width}x{img.height} pixels, more than "
                    f"the {MAX_IMAGE_PIXELS:,} an image may have (a decompression bomb, or "
                    "no photo sepconv should train on); shrink it first."
                )
            if img.mode not in EIGHT_BIT_MODES:
                raise ValueError(
                    f"Image file {path} has pixel format {img.mode!r} (16-bit or floating "
                    "point), which does not convert to 8 bits per channel without clipping; "
                    "convert it to 8-bit first."
                )
            img = img.convert(mode)
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(img).reshape(height, width, channels)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as err:
        raise ValueError(f"Image file {path} cannot be decoded: {err}.") from err


def load_image_folder(
    root: str | os.PathLike[str], *, size: int | tuple[int, int] = 32, mode: str = "RGB"
) -> ImageDataset:
    """Load every image under ``root/<class>/`` into memory.

    Args:
        root: folder holding one sub-folder per class (hidden sub-folders are skipped).
        size: output ``(height, width)`` (or one int for square images); images of another
            size are resized with bilinear filtering.
        mode: Pillow mode every image is converted to: ``"RGB"`` (3 channels) or ``"L"``
            (1 channel).

    Returns:
        An :class:`ImageDataset` with images of shape ``(N, C, H, W)``.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no class folder with images.
        ValueError: a class folder holds no image, an entry is not a regular file, or an image
            cannot be decoded, is too large or is not 8-bit (the message names it).

    Example:
        >>> ds = load_image_folder("data/flowers/train", size=64)  # doctest: +SKIP
    """
    if mode not in ("RGB", "L"):
        raise ValueError(
            f"Invalid value for argument `mode`: expected 'RGB' or 'L', received {mode!r}."
        )
    height, width = (size, size) if isinstance(size, int) else size
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"Image folder {base} does not exist.")
    classes = class_names(base)
    found = {name: _image_files(base / name) for name in classes}
    if not any(found.values()):
        raise FileNotFoundError(
            f"Image folder {base} holds no images in class sub-folders (expected "
            f"{base}/<class>/<image> with suffixes {sorted(IMAGE_SUFFIXES)})."
        )
    empty = [name for name in classes if not found[name]]
    if empty:
        # A class without images would still take a label and an output of the model.
        raise ValueError(
            f"Class folder {base / empty[0]} holds no image (files with suffixes "
            f"{sorted(IMAGE_SUFFIXES)}); every class needs images: add some or remove it."
        )
    files = [(path, label) for label, name in enumerate(classes) for path in found[name]]
    channels = 3 if mode == "RGB" else 1
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = _decode(path, mode, width, height, channels)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, tuple(classes)
    )
