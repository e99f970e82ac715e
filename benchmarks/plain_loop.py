"""The hand-written training loops sepconv's Trainer is measured against
(``train_throughput.py``), each built once and then run one epoch at a time.

- :class:`PlainLoop`: what a tutorial writes: a ``Dataset`` with per-sample torchvision
  transforms (crop, flip, scale, normalise on the host), or for an unaugmented workload the
  uint8 images normalised on the device; a ``DataLoader`` (``num_workers=0``: in-memory data);
  ``SGD`` from the same optimizer settings.
- :class:`TimmStyleLoop`: the step of timm's ``train.py``: a ``DataLoader`` with worker
  processes and pinned memory giving uint8 images (augmented per sample in the workers),
  moved ``non_blocking`` and normalised on the device (timm's ``PrefetchLoader``), and
  optionally ``torch.compile`` of the model (``--torchcompile``).

Both take ``channels_last`` (model and batches in NHWC) and the precision of the comparison:
``bf16`` (autocast), ``fp16`` (autocast with a ``GradScaler``, as timm's ``NativeScaler``) or
``fp32``. Under a process group (``torchrun``) the model is wrapped in
``DistributedDataParallel`` and each process reads its shard of the data.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from sepconv.data import ImageDataset, channel_stats
from sepconv.train import TrainConfig, build_optimizer

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PerSampleDataset(Dataset):
    """One image at a time through torchvision transforms: crop (2 px padding) and flip, then,
    with ``mean``/``std``, scaled to float and normalised (else left uint8)."""

    def __init__(
        self, data: ImageDataset, augment: bool, mean: list[float] | None, std: list[float] | None
    ) -> None:
        self.data = data
        steps: list[nn.Module] = []
        if augment:
            side = data.images.shape[-1]
            steps += [v2.RandomCrop(side, padding=2), v2.RandomHorizontalFlip()]
        if mean is not None and std is not None:
            steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        self.transform = v2.Compose(steps) if steps else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.data.images[i]
        return (self.transform(image) if self.transform else image), self.data.labels[i]


class _Loop:
    """What both loops share: model, optimizer, scaler, the step and the device normalisation."""

    def __init__(
        self,
        data: ImageDataset,
        config: TrainConfig,
        model: nn.Module,
        device: torch.device,
        *,
        channels_last: bool,
        precision: str,
    ) -> None:
        self.device, self.precision, self.config = device, precision, config
        self.memory = torch.channels_last if channels_last else torch.contiguous_format
        self.mean, self.std = channel_stats(data.images)
        self.model = model.to(device, memory_format=self.memory)
        self.optimizer = build_optimizer(self.model, config)
        self.net: nn.Module = self.model
        if dist.is_initialized():
            on_gpu = device.type == "cuda"
            self.net = DistributedDataParallel(self.model, device_ids=[device] if on_gpu else None)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.m = torch.tensor(self.mean, device=device).view(1, -1, 1, 1) * 255
        self.s = torch.tensor(self.std, device=device).view(1, -1, 1, 1) * 255
        self.loader: DataLoader  # set by each loop
        self.epochs = 0

    def _loader(self, dataset: Dataset, workers: int) -> DataLoader:
        shard = dist.is_initialized()
        sampler = DistributedSampler(dataset, seed=self.config.seed) if shard else None
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size // (dist.get_world_size() if sampler else 1),
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=self.device.type == "cuda" and workers > 0,
            persistent_workers=workers > 0,
        )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dtype == torch.uint8:  # normalised here, on the device
            x = (x.float() - self.m) / self.s
        x = x.contiguous(memory_format=self.memory)
        dtype = AUTOCAST.get(self.precision, torch.bfloat16)
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.precision in AUTOCAST):
            logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def epoch(self) -> int:
        """Train one epoch; the images it trained on (this process)."""
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(self.epochs)
        self.epochs += 1
        self.net.train()
        seen = 0
        for x, y in self.loader:
            self.step(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
            seen += y.shape[0]
        return seen


class PlainLoop(_Loop):
    """The tutorial loop (module docstring)."""

    def __init__(self, data: ImageDataset, config: TrainConfig, model: nn.Module,
                 device: torch.device, *, augment: bool, channels_last: bool,
                 precision: str) -> None:  # fmt: skip
        super().__init__(
            data, config, model, device, channels_last=channels_last, precision=precision
        )
        # per-sample normalisation on the host where it augments there anyway
        host = (self.mean, self.std) if augment else (None, None)
        self.loader = self._loader(PerSampleDataset(data, augment, *host), workers=0)


class TimmStyleLoop(_Loop):
    """The step of timm's ``train.py`` (module docstring)."""

    def __init__(self, data: ImageDataset, config: TrainConfig, model: nn.Module,
                 device: torch.device, *, augment: bool, channels_last: bool, precision: str,
                 workers: int, compile: bool) -> None:  # fmt: skip
        super().__init__(
            data, config, model, device, channels_last=channels_last, precision=precision
        )
        if compile:
            self.net = torch.compile(self.net)  # type: ignore[assignment]  # a Module wrapper
        self.loader = self._loader(PerSampleDataset(data, augment, None, None), workers=workers)
