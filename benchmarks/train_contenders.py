"""Who ``train_throughput.py`` compares, on what: the rows (hand-written loops of
``plain_loop.py`` and sepconv's Trainer), the workloads, and how each row is built for one.

Every row of a workload trains the same model (seeded), on the same data, with the same
optimizer settings (``TrainConfig`` -> ``build_optimizer``), batch size and augmentation; a
row differs only in its loop, memory layout, torch.compile, and the precision of the run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from plain_loop import PlainLoop, TimmStyleLoop

import sepconv
from sepconv.data import ImageDataset, RandomCropFlip, load_fashion_mnist
from sepconv.train import DistributedContext, TrainConfig, Trainer


@dataclass(frozen=True)
class Row:
    name: str
    loop: str  # "plain", "timm" or "trainer"
    channels_last: bool
    compile: bool = False


ROWS = (
    Row("plain loop, NCHW", "plain", False),
    Row("plain loop, channels_last", "plain", True),
    Row("timm-style step, channels_last", "timm", True),
    Row("timm-style step, channels_last, compile", "timm", True, True),
    Row("sepconv Trainer, NCHW", "trainer", False),
    Row("sepconv Trainer, channels_last", "trainer", True),
    Row("sepconv Trainer, channels_last, compile", "trainer", True, True),
)
BASELINE = "plain loop, channels_last"
TRAINER_AMP = {"bf16": "bf16", "fp32": "off"}  # TrainConfig.amp for each precision


@dataclass(frozen=True)
class Workload:
    label: str
    model: str
    kwargs: dict[str, Any]
    batch: int
    augment: bool
    load: Callable[[], ImageDataset]


class TrainerEpochs:
    """The Trainer, one epoch per :meth:`epoch` (``fit(max_steps=...)`` resumes its run)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.done = trainer, 0
        self.steps = len(trainer.loader)

    def epoch(self) -> int:
        self.done += 1
        self.trainer.fit(max_steps=self.done * self.steps)
        return self.steps * self.trainer.config.batch_size // self.trainer.ctx.world_size


def workloads(args: argparse.Namespace, cuda: bool) -> list[Workload]:
    if not cuda and not args.smoke:
        return [
            Workload(
                f"mobilenet_v1_025 on Fashion-MNIST ({args.images} images)", "mobilenet_v1_025",
                {"num_classes": 10, "in_chans": 1, "small_input": True}, args.batch_size, True,
                lambda: fashion(args.images),
            )
        ]  # fmt: skip
    size, n224, b224 = (32, 16, 8) if args.smoke else (224, 2560, 128)
    n_fm, b_fm = (16, 8) if args.smoke else (args.images * 4, 256)
    table = {
        "synthetic": Workload(
            f"mobilenet_v2 {size}x{size} synthetic, batch {b224}", "mobilenet_v2",
            {"num_classes": 1000, "in_chans": 3, "small_input": False}, b224, False,
            lambda: synthetic(n224, size, 1000),
        ),
        "fashion": Workload(
            f"mobilenet_v2 28x28 Fashion-MNIST, batch {b_fm}", "mobilenet_v2",
            {"num_classes": 10, "in_chans": 1, "small_input": True}, b_fm, True,
            lambda: fashion(n_fm),
        ),
    }  # fmt: skip
    return [table[name] for name in args.workloads]


def synthetic(n: int, size: int, classes: int) -> ImageDataset:
    """``n`` seeded random uint8 RGB images of side ``size`` with random labels."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return ImageDataset(images, labels, tuple(str(i) for i in range(classes)))


def fashion(n: int) -> ImageDataset:
    full = load_fashion_mnist("train")
    return ImageDataset(full.images[:n], full.labels[:n], full.classes)


def build(row: Row, work: Workload, data: ImageDataset, precision: str, args: argparse.Namespace):
    """The row's loop on ``work`` (anything with ``epoch() -> images``)."""
    torch.manual_seed(0)
    model = sepconv.create_model(work.model, **work.kwargs)
    base = {"batch_size": work.batch, "warmup_epochs": 0.0}
    if row.loop == "trainer":
        config = TrainConfig(
            **base, epochs=1 + args.repeats, amp=TRAINER_AMP[precision],
            channels_last=row.channels_last, compile=row.compile,
        )  # fmt: skip
        augment = RandomCropFlip(padding=2, flip=True) if work.augment else None
        context = DistributedContext(args.rank, args.world_size, args.device)
        return TrainerEpochs(Trainer(model, config, data, augment=augment, context=context))
    config = TrainConfig(**base)
    common = {"augment": work.augment, "channels_last": row.channels_last, "precision": precision}
    if row.loop == "plain":
        return PlainLoop(data, config, model, args.device, **common)
    return TimmStyleLoop(
        data, config, model, args.device, **common, workers=args.workers, compile=row.compile
    )


def not_runnable(row: Row, precision: str, args: argparse.Namespace) -> str | None:
    if row.compile and not args.compile:
        return "without --compile"
    if row.loop == "trainer" and precision not in TRAINER_AMP:
        return f"TrainConfig.amp has no {precision} (bf16 autocast or off)"
    return None
