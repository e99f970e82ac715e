"""The training loop: one object that owns model, optimizer, schedule, EMA and checkpoints.

Resume is exact at any step, mid-epoch included: data order and augmentation are functions of
``(seed, epoch, step)`` (see :class:`~sepconv.data.BatchLoader`), and a checkpoint holds the
model, optimizer, scheduler, EMA, every rank's RNG state and the running epoch metrics.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sepconv.data.augment import BatchAugment
from sepconv.data.dataset import BatchLoader, ImageDataset, channel_stats
from sepconv.train.checkpoint import (
    load_tensors,
    pack_optimizer,
    prefixed,
    save_tensors,
    unpack_optimizer,
    unprefixed,
)
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext
from sepconv.train.ema import ModelEma
from sepconv.train.evaluate import EvalResult, evaluate, to_model_input
from sepconv.train.losses import distillation_loss
from sepconv.train.optim import WarmupCosine, build_optimizer
from sepconv.utils.files import write_atomic
from sepconv.utils.seeding import mix_seed

CHECKPOINT_NAME = "last.safetensors"
WEIGHTS_NAME = "model.safetensors"
LOG_NAME = "log.jsonl"


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
        metadata: extra JSON-able facts stored in checkpoints and weights (e.g. model name).
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
        if teacher is not None and (not isinstance(teacher, nn.Module) or teacher is model):
            raise ValueError(
                "Invalid value for argument `teacher`: expected an nn.Module other than `model` "
                f"or None, received {type(teacher).__name__}"
                f"{' (the model itself)' if teacher is model else ''}."
            )
        self.config = config
        self.ctx = context or DistributedContext(rank=0, world_size=1, device=torch.device("cpu"))
        self.train_set = train_set
        self.test_set = test_set
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
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
        )
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
        self._running = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images
        self._epoch_time = 0.0

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
        while self.epoch < self.config.epochs:
            if not self._train_epoch(max_steps):
                self.save_checkpoint()
                return self.history
            self._end_epoch()
            self.save_checkpoint()
        self._export_weights()
        return self.history

    def _train_epoch(self, max_steps: int | None) -> bool:
        """Run the rest of the current epoch; False when ``max_steps`` stopped it early."""
        cfg = self.config
        self.loader.set_epoch(self.epoch)
        bar = tqdm(
            total=len(self.loader),
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            unit="batch",
            dynamic_ncols=True,
            disable=not self.ctx.is_main,
        )
        self.net.train()
        start = time.perf_counter()
        finished = True
        for images, labels in self.loader.batches(self.step_in_epoch):
            if max_steps is not None and self.global_step >= max_steps:
                finished = False
                break
            x = to_model_input(
                images, self.mean, self.std, device=self.ctx.device, channels_last=cfg.channels_last
            )
            y = labels.to(self.ctx.device)
            with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.net(x)
            loss = self._loss(logits.float(), x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.global_step += 1
            self.step_in_epoch += 1
            n = y.shape[0]
            self._running += torch.tensor(
                [float(loss.detach()) * n, float((logits.argmax(1) == y).sum()), n],
                dtype=torch.float64,
            )
            bar.update(1)
            if self.step_in_epoch % 10 == 0 or self.step_in_epoch == len(self.loader):
                elapsed = self._epoch_time + time.perf_counter() - start
                loss_sum, correct, seen = self._running.tolist()
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.4f}",
                    acc=f"{correct / seen:.4f}",
                    img_s=f"{seen * self.ctx.world_size / max(elapsed, 1e-9):.0f}",
                )
            if (
                cfg.checkpoint_every
                and self.global_step % cfg.checkpoint_every == 0
                and self.step_in_epoch < len(self.loader)
            ):
                self._epoch_time += time.perf_counter() - start
                self.save_checkpoint()
                start = time.perf_counter()
        self._epoch_time += time.perf_counter() - start
        bar.close()
        return finished

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

    def _end_epoch(self) -> None:
        totals = self._running.clone()
        if self.ctx.distributed:
            dist.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "images_per_s": seen / max(self._epoch_time, 1e-9),
            "epoch_time_s": self._epoch_time,
        }
        if self.test_set is not None and self.ctx.is_main:
            result = self._evaluate(self.eval_model, self.test_set)
            record.update(
                test_loss=result.loss,
                test_acc=result.accuracy,
                evaluated="ema" if self.ema is not None else "model",
            )
            if self.ema is not None:
                # The raw weights too, so one run shows what the average adds.
                raw = self._evaluate(self.model, self.test_set)
                record.update(model_test_loss=raw.loss, model_test_acc=raw.accuracy)
        self.history.append(record)
        if self.ctx.is_main:
            tqdm.write(json.dumps(record))
            self._write_log()
        self.epoch += 1
        self.step_in_epoch = 0
        self._running.zero_()
        self._epoch_time = 0.0

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
    def _write_log(self) -> None:
        if self.out_dir is None:
            return
        text = "".join(json.dumps(r) + "\n" for r in self.history)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out_dir / LOG_NAME, lambda tmp: tmp.write_text(text))

    def _common_meta(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "classes": list(self.train_set.classes),
            **self.metadata,
        }

    def save_checkpoint(self) -> None:
        """Write ``out_dir/last.safetensors`` (all ranks must call it: it gathers RNG states
        and metrics; rank 0 writes)."""
        running = self._running.clone()
        rng = [torch.get_rng_state()]
        if self.ctx.device.type == "cuda":
            rng.append(torch.cuda.get_rng_state(self.ctx.device))
        states: list[Any] = [rng]
        if self.ctx.distributed:
            dist.all_reduce(running)
            states = [None] * self.ctx.world_size
            dist.all_gather_object(states, rng)
        if not self.ctx.is_main or self.out_dir is None:
            return
        opt_tensors, opt_meta = pack_optimizer(self.optimizer.state_dict())
        tensors = {
            **prefixed("model.", self.model.state_dict()),
            **prefixed("optimizer.", opt_tensors),
        }
        if self.ema is not None:
            tensors.update(prefixed("ema.", self.ema.module.state_dict()))
        for rank, rank_states in enumerate(states):
            for kind, state in zip(("cpu", "cuda"), rank_states, strict=False):
                tensors[f"rng.{kind}.{rank}"] = state
        meta = {
            "kind": "checkpoint",
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.ctx.world_size,
            "scheduler": self.scheduler.state_dict(),
            "optimizer": opt_meta,
            "running": running.tolist(),
            "epoch_time_s": self._epoch_time,
            "history": self.history,
            "distilled": self.teacher is not None,
            **self._common_meta(),
        }
        save_tensors(self.out_dir / CHECKPOINT_NAME, tensors, meta)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; every rank reads the file."""
        tensors, meta = load_tensors(path)
        if meta.get("kind") != "checkpoint":
            raise ValueError(
                f"File {path} holds {meta.get('kind')!r} data; `resume` expects a checkpoint "
                f"({CHECKPOINT_NAME}) written during training."
            )
        saved = TrainConfig.from_dict(meta["config"])
        if saved != self.config:
            diff = {
                k: (v, getattr(self.config, k))
                for k, v in saved.to_dict().items()
                if getattr(self.config, k) != v
            }
            raise ValueError(
                f"Checkpoint {path} was trained with a different config; "
                f"(checkpoint, requested) values: {diff}."
            )
        distilled = bool(meta.get("distilled", False))
        if distilled != (self.teacher is not None):
            raise ValueError(
                f"Checkpoint {path} was written by a run "
                f"{'with' if distilled else 'without'} a teacher, but this Trainer has "
                f"{'none' if self.teacher is None else 'one'}; resume with the same `teacher` "
                f"argument{' (the same teacher model)' if distilled else ' (None)'}."
            )
        self.model.load_state_dict(unprefixed("model.", tensors))
        self.optimizer.load_state_dict(
            unpack_optimizer(unprefixed("optimizer.", tensors), meta["optimizer"])
        )
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(unprefixed("ema.", tensors))
        self.epoch = meta["epoch"]
        self.step_in_epoch = meta["step_in_epoch"]
        self.global_step = meta["global_step"]
        self.history = list(meta["history"])
        # The saved metrics are global sums: rank 0 carries them, the others restart at zero.
        self._running = torch.tensor(meta["running"], dtype=torch.float64)
        self._epoch_time = meta["epoch_time_s"]
        if not self.ctx.is_main:
            self._running.zero_()
        cpu_state = tensors.get(f"rng.cpu.{self.ctx.rank}")
        if cpu_state is None:
            # Resumed with more processes than saved: a fresh, still deterministic stream.
            torch.manual_seed(mix_seed(self.config.seed, self.ctx.rank, self.global_step))
        else:
            torch.set_rng_state(cpu_state)
        cuda_state = tensors.get(f"rng.cuda.{self.ctx.rank}")
        if cuda_state is not None and self.ctx.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, self.ctx.device)

    def _export_weights(self) -> None:
        if not self.ctx.is_main or self.out_dir is None:
            return
        meta = {
            "kind": "weights",
            "source": "ema" if self.ema is not None else "model",
            **self._common_meta(),
        }
        save_tensors(self.out_dir / WEIGHTS_NAME, self.eval_model.state_dict(), meta)
