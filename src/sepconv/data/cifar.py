"""CIFAR-10 / CIFAR-100 from their python-pickle batch files, read with a restricted unpickler.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009): 32x32 RGB images,
50,000 training and 10,000 test. Each batch file is a pickled dict with ``b"data"`` (a
``uint8`` array of shape ``(N, 3072)``, channel-major) and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` (CIFAR-100). The files come from outside, so the unpickler resolves only the
handful of globals a numpy array needs; anything else is refused instead of executed.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sepconv.data.dataset import ImageDataset
from sepconv.utils.files import file_kind

# The function numpy pickles arrays with, found without importing a private module path
# (``numpy.core`` in numpy 1.x, ``numpy._core`` in 2.x).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles bytes with protocol 2 as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): __import__("codecs").encode,
}
_LAYOUTS = {
    # variant: (folder, train files, test file, meta file, label key, names key)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        b"fine_labels",
        b"fine_label_names",
    ),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(
                f"CIFAR batch {self.path} references {module}.{name}; only plain data and "
                "numpy arrays are accepted, so this file is not a CIFAR batch (or was tampered "
                "with)."
            ) from None


def _unpickle(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        kind = file_kind(path)
        if kind is not None:  # never opened: reading a named pipe would wait for a writer
            raise ValueError(f"CIFAR batch file {path} is {kind}, not a regular file.")
        raise FileNotFoundError(f"CIFAR batch file {path} does not exist.")
    try:
        obj = _RestrictedUnpickler(path.read_bytes(), path).load()
    except (pickle.UnpicklingError, EOFError, TypeError, IndexError) as err:
        raise ValueError(f"CIFAR batch {path} is truncated or corrupt: {err}.") from err
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR batch {path} holds a {type(obj).__name__}, expected a dict.")
    return obj


def _read_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise ValueError(
            f"CIFAR batch {path} lacks the keys b'data' and {label_key!r}; found {sorted(batch)}."
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR batch {path}: expected b'data' as uint8 of shape (N, 3072), received "
            f"{data.dtype} of shape {data.shape}."
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"CIFAR batch {path}: {data.shape[0]} images but {labels.shape[0]} labels."
        )
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def load_cifar(
    root: str | os.PathLike[str], split: str = "train", *, variant: str = "cifar10"
) -> ImageDataset:
    """Load a CIFAR-10 or CIFAR-100 split from the python batch files.

    Args:
        root: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its
            parent.
        split: ``"train"`` or ``"test"``.
        variant: ``"cifar10"`` or ``"cifar100"`` (fine labels).

    Returns:
        An :class:`ImageDataset` with images of shape ``(N, 3, 32, 32)``.

    Example:
        >>> test = load_cifar("data/cifar-10-batches-py", "test")  # doctest: +SKIP
        >>> test.images.shape, test.classes[0]  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), 'airplane')
    """
    if variant not in _LAYOUTS:
        raise ValueError(
            "Invalid value for argument `variant`: expected 'cifar10' or 'cifar100', "
            f"received {variant!r}."
        )
    if split not in ("train", "test"):
        raise ValueError(
            f"Invalid value for argument `split`: expected 'train' or 'test', received {split!r}."
        )
    folder, train_files, test_file, meta_file, label_key, names_key = _LAYOUTS[variant]
    base = Path(root)
    if not (base / meta_file).is_file() and (base / folder / meta_file).is_file():
        base = base / folder
    if not (base / meta_file).is_file():
        raise FileNotFoundError(
            f"{variant} metadata file {meta_file} not found in {Path(root)} or "
            f"{Path(root) / folder}; expected the extracted python version of the dataset."
        )
    meta = _unpickle(base / meta_file)
    if names_key not in meta:
        raise ValueError(f"CIFAR metadata {base / meta_file} lacks the key {names_key!r}.")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
    parts = [
        _read_batch(base / name, label_key)
        for name in (train_files if split == "train" else (test_file,))
    ]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise ValueError(
            f"CIFAR labels in {base} range over [{int(labels.min())}, {int(labels.max())}]; "
            f"expected [0, {len(classes) - 1}] for the {len(classes)} names in {meta_file}."
        )
    return ImageDataset(images, labels, classes)
