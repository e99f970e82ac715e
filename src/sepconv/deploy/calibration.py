"""Calibration images for ``precision="auto"`` and int8 quantization, drawn from a dataset."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sepconv.data import channel_stats, load_dataset
from sepconv.deploy.quantize import prepare_images
from sepconv.utils.validation import invalid, positive_int

__all__ = ["calibration_images"]


def calibration_images(
    calib_data: str,
    calib_samples: int,
    *,
    image_size: int,
    in_chans: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """A seeded draw of training images of a dataset, as model inputs.

    ``calib_samples`` images of the training split of ``calib_data``, drawn without
    replacement with seed 0 and kept in file order, so that every call (and ``sepconv
    evaluate --calib-data``) gets the same images. The first images of a class-sorted file
    would miss classes.

    Args:
        calib_data: A data spec of :func:`sepconv.data.load_dataset` (``fashion-mnist[:DIR]``,
            ``cifar10:DIR``, ``cifar100:DIR``, ``imagefolder:DIR``).
        calib_samples: How many images (at most the split's size).
        image_size: Side of the model's input; images are resized to it.
        in_chans: Channels the model takes; the dataset must have as many.
        mean, std: Per-channel normalisation (the weights' training values); default: the
            training split's own statistics.

    Returns:
        Float32 inputs ``(calib_samples, in_chans, image_size, image_size)``.

    Example:
        >>> calibration_images(  # doctest: +SKIP
        ...     "fashion-mnist", 8, image_size=28, in_chans=1
        ... ).shape
        torch.Size([8, 1, 28, 28])
    """
    positive_int("calib_samples", calib_samples)
    train = load_dataset(calib_data, "train", image_size=image_size)
    channels = int(train.images.shape[1])
    if channels != in_chans:
        raise invalid(
            "calib_data", f"images of {in_chans} channel(s), as the model takes", calib_data,
            note=f", whose images have {channels}",
        )  # fmt: skip
    if mean is None or std is None:
        mean, std = channel_stats(train.images)
    keep = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))
    picked = train.images[keep[:calib_samples].sort().values]
    return prepare_images(picked, input_size=(channels, image_size, image_size), mean=mean, std=std)
