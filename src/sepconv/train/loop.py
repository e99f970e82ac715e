"""The inside of :meth:`Trainer.fit <sepconv.train.Trainer.fit>`: one optimizer step, an epoch
of them, the record that closes an epoch, the per-epoch log and the ``torch.compile`` warm-up.

Every function takes what it touches as arguments, as timm's ``train_one_epoch`` does: the
run's :class:`~sepconv.train.state.TrainState` (advanced in place), the :class:`TrainStep`
(model, optimizer, schedule, EMA, loss), the batches, and callbacks for what the trainer decides
around the loop (divergence checks, checkpoints, evaluation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sepconv.data.dataset import BatchLoader
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext
from sepconv.train.divergence import DivergenceWatch
from sepconv.train.ema import ModelEma
from sepconv.train.evaluate import EvalResult
from sepconv.train.state import TrainState
from sepconv.utils.files import write_atomic

__all__ = [
    "LOG_NAME",
    "LossFn",
    "TrainStep",
    "compile_warm_up",
    "end_epoch",
    "train_epoch",
    "write_log",
]

LOG_NAME = "log.jsonl"

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(logits, x, y) -> loss``: float32 logits ``(N, K)``, the batch ``x`` they came from (a
teacher sees it too) and the labels ``(N,)``; returns the mean loss, a scalar."""


@dataclass(frozen=True)
class TrainStep:
    """One optimizer step: forward pass, loss, backward pass, update, weight average.

    Attributes:
        net: What runs the forward pass: ``model``, possibly wrapped in
            ``DistributedDataParallel`` and compiled.
        model: The model itself, whose parameters are clipped and averaged.
        optimizer: Updates ``model``'s parameters.
        scheduler: Stepped after every optimizer step.
        ema: The weight average updated after every step, or ``None``.
        loss_fn: The training loss (:data:`LossFn`).
        bf16: Run the forward pass under bf16 autocast.
        clip_grad_norm: Clip the gradients to this global norm first; 0 leaves them.
    """

    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEma | None
    loss_fn: LossFn
    bf16: bool
    clip_grad_norm: float

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, loss)`` of the batch ``x`` ``(N, C, H, W)`` with labels ``y`` ``(N,)``."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.net(x)
        return logits, self.loss_fn(logits.float(), x, y)

    def update(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``, then step the optimizer, the schedule and the average."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)


def train_epoch(
    state: TrainState,
    step: TrainStep,
    loader: BatchLoader,
    *,
    config: TrainConfig,
    ctx: DistributedContext,
    watch: DivergenceWatch,
    check_diverged: Callable[[], None],
    save_checkpoint: Callable[[], None],
    max_steps: int | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> bool:
    """Run the rest of the current epoch from ``state.step_in_epoch``.

    Args:
        state: Advanced step by step.
        step: What each step runs.
        loader: The training batches, normalised and on the device (see
            :class:`~sepconv.data.BatchLoader`).
        config: ``epochs`` (for the progress bar) and ``checkpoint_every``.
        ctx: Process placement: only rank 0 shows progress.
        watch: Records every step's loss.
        check_diverged: Raises if a step so far diverged; called where the host syncs anyway
            (progress updates).
        save_checkpoint: Writes a checkpoint of ``state``; called every
            ``config.checkpoint_every`` steps inside the epoch (the trainer writes the one at
            its end).
        max_steps: Stop before the step that would exceed this many steps in all.
        stop_requested: Asked before each step; ``True`` stops the epoch there (an interrupt
            asked for between two steps, so that what is saved is a whole step).

    Returns:
        ``False`` when ``max_steps`` or ``stop_requested`` stopped the epoch early, else
        ``True``.
    """
    loader.set_epoch(state.epoch)
    bar = tqdm(
        total=len(loader),
        initial=state.step_in_epoch,
        desc=f"epoch {state.epoch + 1}/{config.epochs}",
        unit="batch",
        dynamic_ncols=True,
        disable=not ctx.is_main,
    )
    step.net.train()
    start = time.perf_counter()
    finished = True
    for x, y in loader.batches(state.step_in_epoch):
        if (max_steps is not None and state.global_step >= max_steps) or (
            stop_requested is not None and stop_requested()
        ):
            finished = False
            break
        logits, loss = step.forward(x, y)
        watch.record(loss.detach(), state.global_step + 1)
        step.update(loss)
        state.count_step(loss, logits, y)
        bar.update(1)
        if state.step_in_epoch % 10 == 0 or state.step_in_epoch == len(loader):
            check_diverged()
            elapsed = state.epoch_time_s + time.perf_counter() - start
            loss_sum, correct, seen = state.totals()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}",
                acc=f"{correct / seen:.4f}",
                img_s=f"{seen * ctx.world_size / max(elapsed, 1e-9):.0f}",
            )
        if (
            config.checkpoint_every
            and state.global_step % config.checkpoint_every == 0
            and state.step_in_epoch < len(loader)
        ):
            state.epoch_time_s += time.perf_counter() - start
            save_checkpoint()
            start = time.perf_counter()
    state.epoch_time_s += time.perf_counter() - start
    bar.close()
    return finished


def compile_warm_up(state: TrainState, step: TrainStep, loader: BatchLoader) -> float:
    """Compile the forward and backward passes on the next batch, undo the pass, and return
    the seconds it took.

    Weights, BatchNorm statistics and every random state are restored and the gradients
    dropped, so training continues as if the warm-up had not run, and the one-time
    compilation stays out of the timed epochs. ``state`` is only read.
    """
    start = time.perf_counter()
    loader.set_epoch(state.epoch)
    x, y = next(iter(loader.batches(state.step_in_epoch)))
    saved = {k: v.detach().clone() for k, v in step.model.state_dict().items()}
    cpu_rng = torch.get_rng_state()
    on_cuda = x.device.type == "cuda"
    cuda_rng = torch.cuda.get_rng_state(x.device) if on_cuda else None
    step.net.train()
    _, loss = step.forward(x, y)
    loss.backward()
    step.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, value in step.model.state_dict().items():
            value.copy_(saved[name])
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, x.device)
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def end_epoch(
    state: TrainState,
    step: TrainStep,
    *,
    ctx: DistributedContext,
    evaluate: Callable[[nn.Module], EvalResult] | None,
    out_dir: Path | None,
) -> None:
    """Close the current epoch and move ``state`` on to the next.

    The epoch's record holds its number, the step, the learning rate, the training loss and
    accuracy (summed over ranks), images/s and training seconds; with ``evaluate`` (on rank 0)
    also the test loss and accuracy of the weights that get exported (the EMA when on, then
    ``evaluated="ema"`` and the raw model's ``model_test_loss`` / ``model_test_acc`` too). It
    is appended to ``state.history`` and rank 0 prints it and rewrites the log in ``out_dir``.

    Args:
        state: The run; its epoch ends here.
        step: The model, average and schedule the record reads.
        ctx: Process placement; under torchrun every rank must call this.
        evaluate: Scores a model on the test set, or ``None`` without one.
        out_dir: Folder of ``log.jsonl``, or ``None`` to write nothing.
    """
    totals = state.running.clone()
    if ctx.distributed:
        dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    record: dict[str, Any] = {
        "epoch": state.epoch + 1,
        "step": state.global_step,
        "lr": step.scheduler.get_last_lr()[0],
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "images_per_s": seen / max(state.epoch_time_s, 1e-9),
        "epoch_time_s": state.epoch_time_s,
    }
    if evaluate is not None and ctx.is_main:
        result = evaluate(step.ema.module if step.ema is not None else step.model)
        record.update(
            test_loss=result.loss,
            test_acc=result.accuracy,
            evaluated="ema" if step.ema is not None else "model",
        )
        if step.ema is not None:
            # The raw weights too, so one run shows what the average adds.
            raw = evaluate(step.model)
            record.update(model_test_loss=raw.loss, model_test_acc=raw.accuracy)
    state.history.append(record)
    if ctx.is_main:
        tqdm.write(json.dumps(record))
        write_log(out_dir, state.history)
    state.next_epoch()


def write_log(out_dir: Path | None, history: list[dict[str, Any]]) -> None:
    """Rewrite ``out_dir/log.jsonl`` with ``history``, one JSON line per epoch (nothing without
    ``out_dir``)."""
    if out_dir is None:
        return
    text = "".join(json.dumps(r) + "\n" for r in history)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / LOG_NAME, lambda tmp: tmp.write_text(text))
