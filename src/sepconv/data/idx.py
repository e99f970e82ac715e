"""IDX files (the MNIST / Fashion-MNIST format) and the Fashion-MNIST dataset.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(``0x08`` = unsigned byte), the number of dimensions, then each dimension as a big-endian
int32, then the data in C order. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from sepconv.data.dataset import ImageDataset
from sepconv.utils.files import file_kind

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


def _check_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file (never opening a named pipe, which would block)."""
    if path.is_file():
        return
    kind = file_kind(path)
    if kind is None:
        raise FileNotFoundError(f"IDX file {path} does not exist.")
    raise ValueError(f"IDX file {path} is {kind}, not a regular file.")


def _read_header(fh: BinaryIO, path: Path, expected_ndim: int | None) -> tuple[int, ...]:
    """The shape an IDX header declares, read from ``fh`` (left just after the header)."""
    head = fh.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"IDX file {path} has a bad magic number: expected two zero bytes, a type code and "
            f"a dimension count, received {head[:4].hex() or 'an empty file'}."
        )
    if head[2] != _UBYTE:
        raise ValueError(
            f"IDX file {path} has type code 0x{head[2]:02x}; only unsigned bytes (0x08) are "
            "supported."
        )
    ndim = head[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(
            f"IDX file {path} declares {ndim} dimensions, expected {expected_ndim} "
            f"(magic {int.from_bytes(head, 'big')}, expected "
            f"{0x0800 + expected_ndim})."
        )
    dims = fh.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"IDX file {path} is truncated inside its header ({4 + len(dims)} bytes).")
    return tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))


def _open(path: Path) -> BinaryIO:
    # gzip.open's errors on a corrupt stream come on reading, not here; an unreadable file
    # (permissions) is the OSError of open() itself, naming the path.
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if path.suffix != ".gz":
        return raw
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def idx_shape(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> tuple[int, ...]:
    """The shape the header of an IDX file (raw or ``.gz``) declares, reading nothing else.

    Example:
        >>> idx_shape("t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
        (10000, 28, 28)
    """
    file = Path(path)
    _check_file(file)
    with _open(file) as fh:
        try:
            return _read_header(fh, file, expected_ndim)
        except (EOFError, OSError, zlib.error) as err:
            raise _corrupt(file, err) from err


def _corrupt(path: Path, err: BaseException) -> ValueError:
    return ValueError(
        f"IDX file {path} is not a readable gzip stream ({err}); the download may be "
        "truncated or corrupt, fetch it again."
    )


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> torch.Tensor:
    """Read an unsigned-byte IDX file (raw or ``.gz``) into a ``uint8`` tensor.

    The header is read first; then exactly the bytes it declares (and one more, to find a file
    longer than its header says), so a header claiming more data than the file holds, or a
    compressed file that would expand without end, is refused without reading it all.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.
        expected_ndim: number of dimensions the file must declare (3 for images, 1 for
            labels), or ``None`` to accept any.

    Returns:
        ``uint8`` tensor with the shape the header declares.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a regular file, bad magic number, unsupported type code, wrong
            dimension count, or a file shorter or longer than its header says.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz", expected_ndim=1).shape  # doctest: +SKIP
        torch.Size([60000])
    """
    path = Path(path)
    _check_file(path)
    with _open(path) as fh:
        try:
            shape = _read_header(fh, path, expected_ndim)
            header = 4 + 4 * len(shape)
            expected = header + math.prod(shape)  # exact: a header may claim 2**64 bytes
            if path.suffix != ".gz":
                size = path.stat().st_size
                if size != expected:
                    _refuse_length(path, shape, expected, size)
            data = bytearray()
            while len(data) <= expected - header:
                chunk = fh.read(min(_CHUNK, expected - header + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
        except (EOFError, OSError, zlib.error) as err:
            if path.suffix != ".gz":
                raise
            raise _corrupt(path, err) from err
    if header + len(data) != expected:
        _refuse_length(path, shape, expected, header + len(data) if len(data) < expected else None)
    array = np.frombuffer(data, dtype=np.uint8).reshape(shape)
    return torch.from_numpy(array.copy())


_CHUNK = 1 << 26  # bytes read at a time: a header's claim is believed only as far as the data goes


def _refuse_length(path: Path, shape: tuple[int, ...], expected: int, size: int | None) -> None:
    """Raise: the file holds ``size`` bytes (``None``: more than ``expected``)."""
    problem = "truncated" if size is not None and size < expected else "longer than its header says"
    raise ValueError(
        f"IDX file {path} is {problem}: header declares shape {shape} "
        f"({expected} bytes in all), file has {'more' if size is None else size} bytes."
    )


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


def _check_same_size(folder: Path, split: str, image_file: Path, size: tuple[int, ...]) -> None:
    """Refuse a split whose images differ in size from the other split's (when that is there):
    a model trained at one size and scored at another says nothing about either."""
    other = "t10k" if split == "train" else "train"
    try:
        other_file = _fashion_mnist_file(folder, f"{other}-images-idx3-ubyte")
    except FileNotFoundError:
        return
    other_size = idx_shape(other_file, expected_ndim=3)[1:]
    if other_size != size:
        raise ValueError(
            f"Fashion-MNIST files disagree: {image_file} holds images of "
            f"{'x'.join(map(str, size))} pixels, {other_file} of "
            f"{'x'.join(map(str, other_size))}; both splits need images of one size."
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
    if min(images.shape) == 0:
        raise ValueError(
            f"Fashion-MNIST file {image_file} holds no images (header shape "
            f"{tuple(images.shape)}); fetch the files again."
        )
    _check_same_size(folder, split, image_file, tuple(images.shape[1:]))
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
