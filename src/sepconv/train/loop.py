"""The inside of :meth:`Trainer.fit <sepconv.train.Trainer.fit>`: an epoch's steps, the record
that closes it, the per-epoch log and the ``torch.compile`` warm-up.

Each function takes the :class:`~sepconv.train.Trainer` and advances its state (step counters,
running metrics, history) in place, as :mod:`sepconv.train.checkpoint` reads and restores it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sepconv.utils.files import write_atomic

if TYPE_CHECKING:
    from sepconv.train.trainer import Trainer

__all__ = ["LOG_NAME", "compile_warm_up", "end_epoch", "train_epoch", "write_log"]

LOG_NAME = "log.jsonl"


def train_epoch(trainer: Trainer, max_steps: int | None) -> bool:
    """Run the rest of the current epoch; False when ``max_steps`` stopped it early."""
    cfg = trainer.config
    trainer.loader.set_epoch(trainer.epoch)
    bar = tqdm(
        total=len(trainer.loader),
        initial=trainer.step_in_epoch,
        desc=f"epoch {trainer.epoch + 1}/{cfg.epochs}",
        unit="batch",
        dynamic_ncols=True,
        disable=not trainer.ctx.is_main,
    )
    trainer.net.train()
    # A restored checkpoint holds the sums on the CPU.
    trainer._running = trainer._running.to(trainer.ctx.device)
    start = time.perf_counter()
    finished = True
    # Normalised inputs and labels, already on the device (see BatchLoader).
    for x, y in trainer.loader.batches(trainer.step_in_epoch):
        if max_steps is not None and trainer.global_step >= max_steps:
            finished = False
            break
        with torch.autocast(trainer.ctx.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
            logits = trainer.net(x)
        loss = trainer._loss(logits.float(), x, y)
        trainer._watch.record(loss.detach(), trainer.global_step + 1)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.clip_grad_norm)
        trainer.optimizer.step()
        trainer.scheduler.step()
        if trainer.ema is not None:
            trainer.ema.update(trainer.model)
        trainer.global_step += 1
        trainer.step_in_epoch += 1
        n = y.shape[0]
        # The same float64 sums as host arithmetic would give, without a sync per step.
        trainer._running += torch.stack(
            [
                loss.detach().double() * n,
                (logits.argmax(1) == y).sum().double(),
                torch.full((), n, dtype=torch.float64, device=y.device),
            ]
        )
        bar.update(1)
        if trainer.step_in_epoch % 10 == 0 or trainer.step_in_epoch == len(trainer.loader):
            trainer._check_diverged()
            elapsed = trainer._epoch_time + time.perf_counter() - start
            loss_sum, correct, seen = trainer._running.tolist()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}",
                acc=f"{correct / seen:.4f}",
                img_s=f"{seen * trainer.ctx.world_size / max(elapsed, 1e-9):.0f}",
            )
        if (
            cfg.checkpoint_every
            and trainer.global_step % cfg.checkpoint_every == 0
            and trainer.step_in_epoch < len(trainer.loader)
        ):
            trainer._epoch_time += time.perf_counter() - start
            trainer.save_checkpoint()
            start = time.perf_counter()
    trainer._epoch_time += time.perf_counter() - start
    bar.close()
    return finished


def compile_warm_up(trainer: Trainer) -> None:
    """Compile the forward and backward passes on the next batch, then undo the pass.

    Weights, BatchNorm statistics and every random state are restored and the gradients
    dropped, so training continues as if the warm-up had not run, and the one-time
    compilation stays out of the timed epochs.
    """
    trainer._compile_pending = False
    start = time.perf_counter()
    trainer.loader.set_epoch(trainer.epoch)
    x, y = next(iter(trainer.loader.batches(trainer.step_in_epoch)))
    saved = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    cpu_rng = torch.get_rng_state()
    on_cuda = trainer.ctx.device.type == "cuda"
    cuda_rng = torch.cuda.get_rng_state(trainer.ctx.device) if on_cuda else None
    trainer.net.train()
    with torch.autocast(trainer.ctx.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
        logits = trainer.net(x)
    trainer._loss(logits.float(), x, y).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, value in trainer.model.state_dict().items():
            value.copy_(saved[name])
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, trainer.ctx.device)
        torch.cuda.synchronize(trainer.ctx.device)
    trainer.compile_time_s = time.perf_counter() - start


def end_epoch(trainer: Trainer) -> None:
    """Close the current epoch: reduce the running metrics over ranks, evaluate on the test
    set (rank 0), append the epoch's record to the history and the log, and reset the
    counters for the next epoch."""
    totals = trainer._running.clone()
    if trainer.ctx.distributed:
        dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    record: dict[str, Any] = {
        "epoch": trainer.epoch + 1,
        "step": trainer.global_step,
        "lr": trainer.scheduler.get_last_lr()[0],
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "images_per_s": seen / max(trainer._epoch_time, 1e-9),
        "epoch_time_s": trainer._epoch_time,
    }
    if trainer.test_set is not None and trainer.ctx.is_main:
        result = trainer._evaluate(trainer.eval_model, trainer.test_set)
        record.update(
            test_loss=result.loss,
            test_acc=result.accuracy,
            evaluated="ema" if trainer.ema is not None else "model",
        )
        if trainer.ema is not None:
            # The raw weights too, so one run shows what the average adds.
            raw = trainer._evaluate(trainer.model, trainer.test_set)
            record.update(model_test_loss=raw.loss, model_test_acc=raw.accuracy)
    trainer.history.append(record)
    if trainer.ctx.is_main:
        tqdm.write(json.dumps(record))
        write_log(trainer)
    trainer.epoch += 1
    trainer.step_in_epoch = 0
    trainer._running.zero_()
    trainer._epoch_time = 0.0


def write_log(trainer: Trainer) -> None:
    """Rewrite ``out_dir/log.jsonl`` with the whole history, one JSON line per epoch (nothing
    without ``out_dir``)."""
    if trainer.out_dir is None:
        return
    text = "".join(json.dumps(r) + "\n" for r in trainer.history)
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(trainer.out_dir / LOG_NAME, lambda tmp: tmp.write_text(text))
