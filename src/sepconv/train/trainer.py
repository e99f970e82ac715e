"""The training loop: one object that owns model, optimizer, schedule, EMA and checkpoints.

Resume is exact at any step, mid-epoch included: data order and augmentation are functions of
``(seed, epoch, step)`` (see :class:`~sepconv.data.BatchLoader`), and a checkpoint holds the
model, optimizer, scheduler, EMA, every rank's RNG state and the running epoch metrics.
Where the run stands (steps, running metrics, history) is one record,
:class:`~sepconv.train.state.TrainState` (``trainer.state``); the steps of an epoch, its closing
record and the compile warm-up are functions over it in :mod:`sepconv.train.loop`, and
:mod:`sepconv.train.checkpoint` writes it with the weights and reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sepconv.data.augment import BatchAugment
from sepconv.data.dataset import BatchLoader, ImageDataset, channel_stats
from sepconv.data.normalize import Normalize
from sepconv.modelfile.format import write_model_file
from sepconv.modelfile.record import ModelRecord
from sepconv.train.checkpoint import (
    CHECKPOINT_NAME,
    WEIGHTS_NAME,
    restore_checkpoint,
    write_checkpoint,
)
from sepconv.train.checks import check_fit_arguments, check_spread, check_trainer_arguments
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext
from sepconv.train.divergence import DIVERGENCE_FACTOR, DivergenceWatch, TrainingDiverged
from sepconv.train.ema import ModelEma
from sepconv.train.evaluate import EvalResult, evaluate
from sepconv.train.interrupt import interrupt_between_steps
from sepconv.train.loop import (
    LOG_NAME,
    TrainStep,
    compile_warm_up,
    end_epoch,
    train_epoch,
    write_log,
)
from sepconv.train.losses import distillation_loss
from sepconv.train.optim import WarmupCosine, build_optimizer
from sepconv.train.runfolder import claim_run_folder
from sepconv.train.state import TrainState
from sepconv.utils.locks import locked_folder
from sepconv.utils.seeding import mix_seed

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
            from the model itself (:meth:`~sepconv.modelfile.record.ModelRecord.of`: built by
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
        >>> trainer.fit()[-1]["epoch"]  # doctest: +SKIP
        1
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
        check_trainer_arguments(model, config, train_set, test_set, teacher)
        self.config = config
        self.ctx = context or DistributedContext(rank=0, world_size=1, device=torch.device("cpu"))
        # The training images live where the model does: batches are gathered, augmented and
        # normalised there, bit for bit as on the CPU, with no host copy per step.
        train_set = train_set.to(self.ctx.device)
        self.train_set = train_set
        self.test_set = test_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._out_dir_written = False  # this Trainer's own run is in out_dir: fit may go on
        self.metadata = dict(metadata or {})
        self.identity = ModelRecord.of(model, provenance=dict(self.metadata))
        """The model's architecture and builder arguments, as its files record them."""
        self.mean, self.std = channel_stats(train_set.images)
        check_spread(self.std)
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
        self.state = TrainState.start(self.ctx.device)
        """Where the run stands: steps, running metrics, history (restored on resume)."""
        self._watch = DivergenceWatch(self.ctx.device)
        self._saved_step: int | None = None  # the step of the last checkpoint written

    # ------------------------------------------------------------------ the run's state
    @property
    def epoch(self) -> int:
        """Finished epochs."""
        return self.state.epoch

    @property
    def step_in_epoch(self) -> int:
        """Optimizer steps done in the current epoch."""
        return self.state.step_in_epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps done in all."""
        return self.state.global_step

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per finished epoch (the lines of ``log.jsonl``)."""
        return self.state.history

    @property
    def train_step(self) -> TrainStep:
        """What one optimizer step runs: the model (wrapped as trained), optimizer, schedule,
        EMA and loss (see :class:`~sepconv.train.loop.TrainStep`)."""
        return TrainStep(
            net=self.net,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            ema=self.ema,
            loss_fn=self._loss,
            bf16=self.bf16,
            clip_grad_norm=self.config.clip_grad_norm,
        )

    # ------------------------------------------------------------------ training
    def fit(
        self,
        resume: str | os.PathLike[str] | None = None,
        *,
        max_steps: int | None = None,
        overwrite: bool = False,
    ) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` are done and return the per-epoch records.

        Whatever ends the call, ``out_dir`` holds the run so far: the checkpoint to resume
        from, the log of the finished epochs and ``model.safetensors`` with the weights as
        they stand (the EMA when on). A first Ctrl-C (in a single process) stops after the
        step in progress, saves all three and raises ``KeyboardInterrupt``; a second stops at
        once.

        Args:
            resume: checkpoint to continue from (any step, mid-epoch included).
            max_steps: stop once this many optimizer steps are done in total, after writing
                the files: a long run split over several job slots.
            overwrite: replace the run another Trainer left in ``out_dir``
                (:func:`~sepconv.train.runfolder.check_run_folder`). Not needed to continue
                this Trainer's own run with a later ``fit`` or the folder's own checkpoint.

        Raises:
            ValueError: ``max_steps`` below 1, a checkpoint that does not fit this run, an
                ``out_dir`` that another process is training into (one run per folder at a
                time: the folder is locked while the run writes it), or one that holds another
                run's files and ``resume`` is not its checkpoint nor ``overwrite`` set.
        """
        check_fit_arguments(max_steps, overwrite)
        if self.out_dir is None or not self.ctx.is_main:
            return self._fit(resume, max_steps, overwrite)
        with locked_folder(self.out_dir, "out_dir"):
            return self._fit(resume, max_steps, overwrite)

    def _fit(
        self, resume: str | os.PathLike[str] | None, max_steps: int | None, overwrite: bool
    ) -> list[dict[str, Any]]:
        if resume is not None:
            self.load_checkpoint(resume)  # a file that is no checkpoint of this run: refused
        if self.out_dir is not None and self.ctx.is_main and not self._out_dir_written:
            claim_run_folder(self.out_dir, resume=resume, overwrite=overwrite)
        self._out_dir_written = True
        if resume is None:
            # Dropout draws from the global generator: one stream per rank, from the seed.
            torch.manual_seed(mix_seed(self.config.seed, self.ctx.rank))
        state, step, test_set = self.state, self.train_step, self.test_set
        if self._compile_pending and state.epoch < self.config.epochs:
            self._compile_pending = False
            self.compile_time_s = compile_warm_up(state, step, self.loader)
        with interrupt_between_steps(enabled=not self.ctx.distributed) as interrupted:
            while state.epoch < self.config.epochs:
                finished = train_epoch(
                    state,
                    step,
                    self.loader,
                    config=self.config,
                    ctx=self.ctx,
                    watch=self._watch,
                    check_diverged=self._check_diverged,
                    save_checkpoint=self.save_checkpoint,
                    max_steps=max_steps,
                    stop_requested=interrupted,
                )
                if not finished:
                    break
                end_epoch(
                    state,
                    step,
                    ctx=self.ctx,
                    evaluate=None
                    if test_set is None
                    else partial(self._evaluate, test_set=test_set),
                    out_dir=self.out_dir,
                )
                self.save_checkpoint()
            if state.epoch < self.config.epochs:  # stopped early: save the run so far
                self.save_checkpoint()
            self._write_outputs()
            if interrupted():
                raise KeyboardInterrupt
        return state.history

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
        """``model`` scored on ``test_set``, with the training normalisation and precision."""
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
    def model_record(self, source: str | None = None) -> ModelRecord:
        """The record the run's files carry: the model's identity, normalisation, classes and
        training config; ``source`` says which weights a weights file holds."""
        return dataclasses.replace(
            self.identity,
            mean=tuple(self.mean),
            std=tuple(self.std),
            classes=tuple(self.train_set.classes),
            config=self.config.to_dict(),
            source=source,
        )

    def save_checkpoint(self) -> None:
        """Write ``out_dir/last.safetensors`` (all ranks must call it: it gathers RNG states
        and metrics; rank 0 writes). See :mod:`sepconv.train.checkpoint`."""
        self._check_diverged()  # never overwrite the last good checkpoint with diverged weights
        write_checkpoint(
            None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME,
            self.state,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            ema=self.ema,
            record=self.model_record(),
            ctx=self.ctx,
            distilled=self.teacher is not None,
        )
        self._saved_step = self.global_step

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; every rank reads the file."""
        self.state = restore_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            ema=self.ema,
            expected=self.model_record(),
            config=self.config,
            ctx=self.ctx,
            distilled=self.teacher is not None,
            steps_per_epoch=len(self.loader),
        )

    def _write_outputs(self) -> None:
        """Write ``out_dir/log.jsonl`` and ``out_dir/model.safetensors``, the weights that get
        evaluated (the EMA when on); rank 0 only."""
        if not self.ctx.is_main or self.out_dir is None:
            return
        write_log(self.out_dir, self.state.history)
        record = self.model_record("ema" if self.ema is not None else "model")
        write_model_file(self.out_dir / WEIGHTS_NAME, self.eval_model.state_dict(), record)
