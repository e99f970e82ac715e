"""The training loop: one object that owns model, optimizer, schedule, EMA and checkpoints.

Resume is exact at any step, mid-epoch included: data order and augmentation are functions of
``(seed, epoch, step)`` (see :class:`~sepconv.data.BatchLoader`), and a checkpoint holds the
model, optimizer, scheduler, EMA, every rank's RNG state and the running epoch metrics.
The steps of an epoch, its closing record and the compile warm-up are in
:mod:`sepconv.train.loop`; checkpoint and weights files in :mod:`sepconv.train.checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sepconv.data.augment import BatchAugment
from sepconv.data.dataset import BatchLoader, ImageDataset, channel_stats
from sepconv.data.normalize import Normalize
from sepconv.models.modelfile import ModelRecord
from sepconv.train.checkpoint import (
    CHECKPOINT_NAME,
    WEIGHTS_NAME,
    restore_checkpoint,
    write_checkpoint,
    write_weights,
)
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext
from sepconv.train.divergence import DIVERGENCE_FACTOR, DivergenceWatch, TrainingDiverged
from sepconv.train.ema import ModelEma
from sepconv.train.evaluate import EvalResult, evaluate
from sepconv.train.loop import LOG_NAME, compile_warm_up, end_epoch, train_epoch
from sepconv.train.losses import distillation_loss
from sepconv.train.optim import WarmupCosine, build_optimizer
from sepconv.utils.seeding import mix_seed
from sepconv.utils.validation import invalid

__all__ = [
    "CHECKPOINT_NAME",
    "DIVERGENCE_FACTOR",
    "LOG_NAME",
    "WEIGHTS_NAME",
    "Trainer",
    "TrainingDiverged",
]


class Trainer:
    """Train an image classifier on an in-memory dataset, single process or under torchrun.

    Args:
        model: classifier ``(N, C, H, W) -> (N, K)``; moved to the device here.
        config: hyper-parameters.
        train_set: training images; normalisation statistics are computed from it.
        test_set: evaluated after every epoch when given.
        out_dir: where ``last.safetensors`` (checkpoint), ``model.safetensors`` (final
            weights: the EMA when enabled) and ``log.jsonl`` (one line per epoch) go; ``None``
            writes nothing.
        augment: batch-wise augmentation of training images, or ``None``.
        context: process placement from :func:`~sepconv.train.init_distributed`; default one
            CPU process. With ``world_size > 1`` the model is wrapped in
            ``DistributedDataParallel`` and only rank 0 writes files.
        metadata: extra JSON-able facts stored in checkpoints and weights (their record's
            ``provenance``, e.g. ``{"data": "fashion-mnist"}``). The model's identity comes
            from the model itself (:meth:`~sepconv.models.modelfile.ModelRecord.of`: built by
            :func:`~sepconv.models.create_model`, then possibly separabilized or made a standard
            twin).
        teacher: a trained classifier to distil from (knowledge distillation, Hinton et al.
            2015), or ``None`` for plain cross-entropy training. It is moved to the device, put
            in eval mode and frozen (``requires_grad_(False)``); on every step its logits are
            computed without gradients on the same augmented batch as the model's, and the
            loss is :func:`~sepconv.train.losses.distillation_loss` with
            ``config.distill_temperature``, ``config.distill_alpha`` and
            ``config.label_smoothing``. Checkpoints do not hold the teacher: resume with the
            same one. Under torchrun every rank runs it on its own slice of the batch.

    Example:
        >>> cfg = TrainConfig(epochs=1)
        >>> trainer = Trainer(model, cfg, train, test, out_dir="runs/a")  # doctest: +SKIP
        >>> trainer.fit()[-1]["test_acc"]  # doctest: +SKIP
        0.91
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_set: ImageDataset,
        test_set: ImageDataset | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        augment: BatchAugment | None = None,
        context: DistributedContext | None = None,
        metadata: dict[str, Any] | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        _check_arguments(model, config, train_set, test_set)
        if teacher is not None and (not isinstance(teacher, nn.Module) or teacher is model):
            raise invalid(
                "teacher",
                "an nn.Module other than `model` or None",
                type(teacher).__name__,
                note=" (the model itself)" if teacher is model else "",
            )
        self.config = config
        self.ctx = context or DistributedContext(rank=0, world_size=1, device=torch.device("cpu"))
        # The training images live where the model does: batches are gathered, augmented and
        # normalised there, bit for bit as on the CPU, with no host copy per step.
        train_set = train_set.to(self.ctx.device)
        self.train_set = train_set
        self.test_set = test_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
        self.identity = ModelRecord.of(model, provenance=dict(self.metadata))
        """The model's architecture and builder arguments, as its files record them."""
        self.mean, self.std = channel_stats(train_set.images)
        model.to(self.ctx.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.net: nn.Module = model
        self.teacher = teacher
        if teacher is not None:
            teacher.to(self.ctx.device)
            if config.channels_last:
                teacher.to(memory_format=torch.channels_last)
            teacher.eval().requires_grad_(False)
        if self.ctx.distributed:
            on_gpu = self.ctx.device.type == "cuda"
            self.net = DistributedDataParallel(
                model, device_ids=[self.ctx.device] if on_gpu else None
            )
        self.optimizer = build_optimizer(model, config)
        self.loader = BatchLoader(
            train_set,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            drop_last=True,
            augment=augment,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            normalize=Normalize(self.mean, self.std, channels_last=config.channels_last),
        )
        if config.compile:
            # After DDP wrapping, so that its gradient hooks stay outside the compiled graph.
            self.net = torch.compile(self.net)  # type: ignore[assignment]  # a Module wrapper
        self._compile_pending = config.compile
        self.compile_time_s = 0.0
        """Seconds of the ``torch.compile`` warm-up (0 without ``config.compile``)."""
        total = config.epochs * len(self.loader)
        warmup = min(total, round(config.warmup_epochs * len(self.loader)))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(warmup, total)
        )
        self.ema = ModelEma(model, config.ema_decay) if config.ema_decay > 0 else None
        on_cuda = self.ctx.device.type == "cuda"
        self.bf16 = config.amp == "bf16" or (
            config.amp == "auto" and on_cuda and torch.cuda.is_bf16_supported()
        )
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        # Loss sum, correct, images; kept on the device so a step needs no host sync.
        self._running = torch.zeros(3, dtype=torch.float64, device=self.ctx.device)
        self._epoch_time = 0.0
        self._watch = DivergenceWatch(self.ctx.device)
        self._saved_step: int | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self, resume: str | os.PathLike[str] | None = None, *, max_steps: int | None = None
    ) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` are done and return the per-epoch records.

        Args:
            resume: checkpoint to continue from (any step, mid-epoch included).
            max_steps: stop once this many optimizer steps are done in total, after writing
                a checkpoint: a long run split over several job slots.
        """
        if resume is not None:
            self.load_checkpoint(resume)
        else:
            # Dropout draws from the global generator: one stream per rank, from the seed.
            torch.manual_seed(mix_seed(self.config.seed, self.ctx.rank))
        if self._compile_pending and self.epoch < self.config.epochs:
            compile_warm_up(self)
        while self.epoch < self.config.epochs:
            if not train_epoch(self, max_steps):
                self.save_checkpoint()
                return self.history
            end_epoch(self)
            self.save_checkpoint()
        self._export_weights()
        return self.history

    def _check_diverged(self) -> None:
        """Raise :class:`TrainingDiverged` if a step so far diverged, on any rank."""
        self._watch.check(
            distributed=self.ctx.distributed,
            checkpoint=None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME,
            saved_step=self._saved_step,
        )

    def _loss(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, or the distillation loss against the teacher's logits on ``x``."""
        cfg = self.config
        if self.teacher is None:
            return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        with (
            torch.no_grad(),
            torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            teacher_logits = self.teacher(x)
        return distillation_loss(
            logits,
            teacher_logits.float(),
            y,
            temperature=cfg.distill_temperature,
            alpha=cfg.distill_alpha,
            label_smoothing=cfg.label_smoothing,
        )

    def _evaluate(self, model: nn.Module, test_set: ImageDataset) -> EvalResult:
        return evaluate(
            model,
            test_set,
            mean=self.mean,
            std=self.std,
            batch_size=self.config.eval_batch_size,
            device=self.ctx.device,
            channels_last=self.config.channels_last,
            autocast_bf16=self.bf16,
        )

    @property
    def eval_model(self) -> nn.Module:
        """The weights that get evaluated and exported: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------ files
    def save_checkpoint(self) -> None:
        """Write ``out_dir/last.safetensors`` (all ranks must call it: it gathers RNG states
        and metrics; rank 0 writes). See :mod:`sepconv.train.checkpoint`."""
        self._check_diverged()  # never overwrite the last good checkpoint with diverged weights
        write_checkpoint(self)
        self._saved_step = self.global_step

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; every rank reads the file."""
        restore_checkpoint(self, path)

    def _export_weights(self) -> None:
        write_weights(self)


def _check_arguments(model: object, config: object, train_set: object, test_set: object) -> None:
    """Refuse arguments of the wrong kind, and splits whose classes differ, before any work."""
    if not isinstance(model, nn.Module):
        raise invalid("model", "an nn.Module", type(model).__name__)
    if not isinstance(config, TrainConfig):
        raise invalid("config", "a TrainConfig", type(config).__name__)
    for name, value in (("train_set", train_set), ("test_set", test_set)):
        if not isinstance(value, ImageDataset) and (name == "train_set" or value is not None):
            expected = "an ImageDataset (see sepconv.data.load_dataset)"
            raise invalid(
                name, expected + (" or None" if name == "test_set" else ""), type(value).__name__
            )
    if not isinstance(train_set, ImageDataset) or not isinstance(test_set, ImageDataset):
        return
    if tuple(test_set.classes) != tuple(train_set.classes):
        # Scored against another split's names, the test accuracy would mean nothing.
        raise invalid(
            "test_set",
            f"the classes of `train_set` ({', '.join(train_set.classes[:10])})",
            ", ".join(test_set.classes[:10]),
            note=" (both splits must name the same classes, in the same order)",
        )
