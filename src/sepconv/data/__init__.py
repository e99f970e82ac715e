"""Datasets held in memory (host or GPU) as ``uint8`` tensors, batch-wise augmentation (crop
and flip, random erasing), normalisation and batching.

Loaders: :func:`load_fashion_mnist` (IDX files), :func:`load_cifar` (python pickle batches),
:func:`load_image_folder` (one folder per class, Pillow), and :func:`load_dataset`, which
reads the ``fashion-mnist`` / ``cifar10:DIR`` / ``cifar100:DIR`` / ``imagefolder:DIR`` specs
the command line uses.
"""

from __future__ import annotations

from sepconv.data.augment import (
    BatchAugment,
    Compose,
    ComposeParams,
    CropFlipParams,
    EraseParams,
    RandomCropFlip,
    RandomErasing,
)
from sepconv.data.cifar import load_cifar
from sepconv.data.dataset import BatchLoader, ImageDataset, channel_stats
from sepconv.data.folder import load_image_folder
from sepconv.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from sepconv.data.normalize import Normalize, to_model_input
from sepconv.data.spec import default_augment, load_dataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "BatchAugment",
    "BatchLoader",
    "Compose",
    "ComposeParams",
    "CropFlipParams",
    "EraseParams",
    "ImageDataset",
    "Normalize",
    "RandomCropFlip",
    "RandomErasing",
    "channel_stats",
    "default_augment",
    "load_cifar",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
    "to_model_input",
]
