"""IDX files (the MNIST / Fashion-MNIST format) and the Fashion-MNIST dataset.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(``0x08`` = unsigned byte), the number of dimensions, then each dimension as a big-endian
int32, then the data in C order. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from sepconv.data.dataset import ImageDataset

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable that overrides :data:`FASHION_MNIST_DEFAULT_ROOT`.
FASHION_MNIST_ENV = "SEPCONV_FASHION_MNIST"
#: Label names, from the Fashion-MNIST README (Xiao et al., 2017).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_UBYTE = 0x08


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> torch.Tensor:
    """Read an unsigned-byte IDX file (raw or ``.gz``) into a ``uint8`` tensor.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.
        expected_ndim: number of dimensions the file must declare (3 for images, 1 for
            labels), or ``None`` to accept any.

    Returns:
        ``uint8`` tensor with the shape the header declares.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad magic number, unsupported type code, wrong dimension count, or a file
            shorter or longer than its header says.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz", expected_ndim=1).shape  # doctest: +SKIP
        torch.Size([60000])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist.")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"IDX file {path} is not a readable gzip stream ({err}); the download may be "
            "truncated or corrupt, fetch it again."
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"IDX file {path} has a bad magic number: expected two zero bytes, a type code and "
            f"a dimension count, received {raw[:4].hex() or 'an empty file'}."
        )
    if raw[2] != _UBYTE:
        raise ValueError(
            f"IDX file {path} has type code 0x{raw[2]:02x}; only unsigned bytes (0x08) are "
            "supported."
        )
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(
            f"IDX file {path} declares {ndim} dimensions, expected {expected_ndim} "
            f"(magic {int.from_bytes(raw[:4], 'big')}, expected "
            f"{0x0800 + expected_ndim})."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path} is {problem}: header declares shape {shape} "
            f"({expected} bytes in all), file has {len(raw)} bytes."
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(data.copy())


def _fashion_mnist_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root} (looked for {root / stem}.gz "
        f"and {root / stem}). Install it with `apt-get install dataset-fashion-mnist`, or "
        f"point the `{FASHION_MNIST_ENV}` environment variable (or `--data fashion-mnist:DIR`) "
        "at a folder holding the four IDX files."
    )


def fashion_mnist_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The Fashion-MNIST folder: ``root`` if given, else ``$SEPCONV_FASHION_MNIST``, else
    :data:`FASHION_MNIST_DEFAULT_ROOT`."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(FASHION_MNIST_ENV, FASHION_MNIST_DEFAULT_ROOT))


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> ImageDataset:
    """Load the Fashion-MNIST training or test split from its IDX files.

    Xiao, Rasul and Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
    Learning Algorithms" (arXiv:1708.07747): 60,000 training and 10,000 test images, 28x28
    grey, 10 classes.

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; defaults to
            ``$SEPCONV_FASHION_MNIST`` or ``/usr/share/datasets/fashion-mnist`` (Debian's
            ``dataset-fashion-mnist``).

    Returns:
        An :class:`ImageDataset` with images of shape ``(N, 1, 28, 28)``.

    Example:
        >>> train = load_fashion_mnist("train")  # doctest: +SKIP
        >>> train.images.shape, train.classes[9]  # doctest: +SKIP
        (torch.Size([60000, 1, 28, 28]), 'Ankle boot')
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise ValueError(
            f"Invalid value for argument `split`: expected 'train' or 'test', received {split!r}."
        )
    folder = fashion_mnist_root(root)
    image_file = _fashion_mnist_file(folder, f"{prefixes[split]}-images-idx3-ubyte")
    label_file = _fashion_mnist_file(folder, f"{prefixes[split]}-labels-idx1-ubyte")
    images = read_idx(image_file, expected_ndim=3)
    labels = read_idx(label_file, expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST files disagree: {image_file} holds {images.shape[0]} images but "
            f"{label_file} holds {labels.shape[0]} labels."
        )
    if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"Fashion-MNIST label file {label_file} holds label {int(labels.max())}; expected "
            f"values below {len(FASHION_MNIST_CLASSES)}."
        )
    return ImageDataset(images.unsqueeze(1), labels.long(), FASHION_MNIST_CLASSES)
