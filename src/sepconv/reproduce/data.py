"""The images of a sweep and the model of each row, built the same way by every step.

Training, the dry run's timing, cost counting and latency all build a row's model from
:func:`build_row_model` on the sweep's :class:`SweepData`, so each measures the same network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sepconv.convert.twin import standard_twin
from sepconv.data import BatchAugment, ImageDataset, default_augment, load_dataset
from sepconv.models import create_model
from sepconv.models.init import init_conv
from sepconv.models.options import small_input_for
from sepconv.reproduce.config import ReproduceConfig, RowConfig


def first_images(
    dataset: ImageDataset, count: int, key: str, config: ReproduceConfig
) -> ImageDataset:
    """The first ``count`` images of ``dataset`` in file order; ``key`` names the config key
    that asked for them in the error raised when the dataset holds fewer."""
    if count > len(dataset):
        raise ValueError(
            f"{config.path}: invalid value for key `{key}`: expected at most {len(dataset)} "
            f"(the images {config.data!r} holds), received {count}."
        )
    return ImageDataset(dataset.images[:count], dataset.labels[:count], dataset.classes)


def _resized(dataset: ImageDataset, config: ReproduceConfig) -> ImageDataset:
    side = config.image_size
    return dataset if side is None else dataset.resized(side)


@dataclass(frozen=True)
class SweepData:
    """The training and test images of a sweep, loaded once for every run.

    Args:
        train: The whole training split, at its own size (see :meth:`train_set`).
        test: The test split (its first ``test_images`` when the config says so).
        config: The sweep, for the row subsets and error messages.

    Example:
        >>> data = SweepData.load(load_config("configs/reproduce_compact.toml"))  # doctest: +SKIP
        >>> data.input_shape  # doctest: +SKIP
        (1, 28, 28)
    """

    train: ImageDataset
    test: ImageDataset
    config: ReproduceConfig
    _sized: dict[int | None, ImageDataset] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def load(cls, config: ReproduceConfig) -> SweepData:
        """Load the splits of ``config.data``."""
        # Image folders are decoded at the side; the other sets are resized per subset below.
        train = load_dataset(config.data, "train", image_size=config.image_size)
        test = load_dataset(config.data, "test", image_size=config.image_size)
        if config.test_images is not None:
            test = first_images(test, config.test_images, "test_images", config)
        return cls(train, _resized(test, config), config)

    def train_set(self, row: RowConfig) -> ImageDataset:
        """The images ``row`` trains on: all, or the first ``train_images`` in file order
        (resized to the config's ``image_size`` after the subset is taken, once per subset)."""
        if row.train_images not in self._sized:
            subset = self.train
            if row.train_images is not None:
                key = f"row[{self.config.rows.index(row) + 1}].train_images"
                subset = first_images(self.train, row.train_images, key, self.config)
            self._sized[row.train_images] = _resized(subset, self.config)
        return self._sized[row.train_images]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, as the models take it."""
        return tuple(int(v) for v in self.test.images.shape[1:])  # type: ignore[return-value]

    def build(self, row: RowConfig, seed: int) -> nn.Module:
        """:func:`build_row_model` for this data's classes, channels and image size."""
        c, h, _ = self.input_shape
        return build_row_model(
            row, seed, num_classes=self.train.num_classes, in_chans=c, image_size=h
        )


def build_row_model(
    row: RowConfig, seed: int, *, num_classes: int, in_chans: int, image_size: int
) -> nn.Module:
    """Build the model of ``row``, initialised from ``seed`` alone.

    The registered model is built after ``torch.manual_seed(seed)`` with ``small_input`` as
    :func:`sepconv.models.options.small_input_for` decides it (as ``sepconv train`` does). For
    ``twin = "standard"`` the depthwise + pointwise pairs are then replaced by standard convs
    (:func:`sepconv.convert.twin.standard_twin`, found from a pass in eval mode so that
    BatchNorm statistics stay untouched), and the new convs are re-drawn from the seed with the
    rule the builders apply to every conv (Kaiming-normal, fan-out; ``init_conv``) instead of
    PyTorch's default, so both twins start from the same initialisation scheme and share every
    other initial weight.

    Args:
        row: The row.
        seed: Seed of the initial weights.
        num_classes: Classifier outputs.
        in_chans: Input channels.
        image_size: Input side (square), for the twin's example pass and ``small_input``.

    Example:
        >>> build_row_model(row, 0, num_classes=10, in_chans=1, image_size=28)  # doctest: +SKIP
    """
    torch.manual_seed(seed)
    model = create_model(
        row.model,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input_for(image_size),
        **row.model_kwargs,
    )
    if row.twin is None:
        return model
    model.eval()
    twin, pairs = standard_twin(model, torch.zeros(1, in_chans, image_size, image_size))
    if pairs == 0:
        raise ValueError(
            f"Invalid value for row `{row.name}` key `twin`: expected a model with depthwise + "
            f"pointwise conv pairs to replace, received {row.model!r}, which has none; remove "
            "`twin` from the row."
        )
    original = dict(model.named_modules())
    torch.manual_seed(seed)
    for name, module in twin.named_modules():
        before = original.get(name)
        # A depthwise conv turned standard:
        if (
            isinstance(module, nn.Conv2d)
            and isinstance(before, nn.Conv2d)
            and before.groups != module.groups
        ):
            init_conv(module)
    return twin.train()


def training_augment(
    config: ReproduceConfig, side: int, row: RowConfig | None = None
) -> BatchAugment | None:
    """The augmentation the runs of ``config`` train with, for images ``side`` px high.

    Args:
        config: The sweep.
        side: Image side in pixels.
        row: The row trained, whose own ``random_erasing`` replaces the sweep's when set
            (default: the sweep's).

    Example:
        >>> training_augment(config, 28)  # doctest: +SKIP
        RandomCropFlip(...)
    """
    if not config.augment:
        return None
    erasing = config.random_erasing if row is None else config.erasing(row)
    return default_augment(config.data, side, random_erasing=erasing)
