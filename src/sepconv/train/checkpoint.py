"""Checkpoints: a model file (:mod:`sepconv.models.modelfile`) plus the training state.

A checkpoint's tensors are the model's (``model.``), the EMA's (``ema.``), the optimizer's
(``optimizer.``) and every rank's RNG states as ``uint8`` (``rng.cpu.R``, ``rng.cuda.R``); its
header holds the model record (architecture, builder arguments, normalisation, classes, training
config) and, under ``"state"``, epoch, step, scheduler, optimizer hyper-parameters, running
metrics and history, so one file is one consistent snapshot, written atomically.
:func:`~sepconv.models.load_model` reads a checkpoint as it reads weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sepconv.models.modelfile import (
    METADATA_KEY,
    ModelRecord,
    read_model_file,
    read_safetensors,
    write_model_file,
    write_safetensors,
)
from sepconv.train.config import TrainConfig
from sepconv.utils.seeding import mix_seed

if TYPE_CHECKING:
    from sepconv.train.trainer import Trainer

META_KEY = METADATA_KEY
CHECKPOINT_NAME = "last.safetensors"
WEIGHTS_NAME = "model.safetensors"


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``tensors`` and the JSON-able header ``meta`` to a safetensors file, atomically.

    The low-level container of model files; :func:`sepconv.models.modelfile.write_model_file`
    writes the header sepconv's readers expect.

    Example:
        >>> save_tensors("w.safetensors", {"x": torch.zeros(2)}, {"kind": "demo"})  # doctest: +SKIP
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, meta)


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors` (or any sepconv model file): its tensors and
    its raw JSON header.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a safetensors file or lacks sepconv metadata.
    """
    import json

    tensors, header = read_safetensors(path)
    if META_KEY not in header:
        raise ValueError(
            f"File {Path(path)} has no sepconv metadata; expected a checkpoint or weights file "
            "written by `sepconv train`."
        )
    return tensors, json.loads(header[META_KEY])


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix + name: tensor}``."""
    return {prefix + name: t for name, t in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}


def pack_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``"{param}.{key}"``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`pack_optimizer`, ready for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------- the Trainer's files
def model_record(trainer: Trainer, source: str | None = None) -> ModelRecord:
    """The record of ``trainer``'s model: its identity, normalisation, classes and config."""
    return dataclasses.replace(
        trainer.identity,
        mean=tuple(trainer.mean),
        std=tuple(trainer.std),
        classes=tuple(trainer.train_set.classes),
        config=trainer.config.to_dict(),
        source=source,
    )


def write_weights(trainer: Trainer) -> None:
    """Write ``out_dir/model.safetensors``: the weights that get evaluated (the EMA when on)."""
    if not trainer.ctx.is_main or trainer.out_dir is None:
        return
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    record = model_record(trainer, "ema" if trainer.ema is not None else "model")
    write_model_file(trainer.out_dir / WEIGHTS_NAME, trainer.eval_model.state_dict(), record)


def write_checkpoint(trainer: Trainer) -> None:
    """Write ``out_dir/last.safetensors`` (all ranks must call it: it gathers RNG states and
    metrics; rank 0 writes)."""
    import torch.distributed as dist

    ctx = trainer.ctx
    running = trainer._running.clone()
    rng = [torch.get_rng_state()]
    if ctx.device.type == "cuda":
        rng.append(torch.cuda.get_rng_state(ctx.device))
    states: list[Any] = [rng]
    if ctx.distributed:
        dist.all_reduce(running)
        states = [None] * ctx.world_size
        dist.all_gather_object(states, rng)
    if not ctx.is_main or trainer.out_dir is None:
        return
    opt_tensors, opt_meta = pack_optimizer(trainer.optimizer.state_dict())
    tensors = {
        **prefixed("model.", trainer.model.state_dict()),
        **prefixed("optimizer.", opt_tensors),
    }
    if trainer.ema is not None:
        tensors.update(prefixed("ema.", trainer.ema.module.state_dict()))
    for rank, rank_states in enumerate(states):
        for kind, state in zip(("cpu", "cuda"), rank_states, strict=False):
            tensors[f"rng.{kind}.{rank}"] = state
    training = {
        "epoch": trainer.epoch,
        "step_in_epoch": trainer.step_in_epoch,
        "global_step": trainer.global_step,
        "world_size": ctx.world_size,
        "scheduler": trainer.scheduler.state_dict(),
        "optimizer": opt_meta,
        "running": running.tolist(),
        "epoch_time_s": trainer._epoch_time,
        "history": trainer.history,
        "distilled": trainer.teacher is not None,
    }
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    write_model_file(
        trainer.out_dir / CHECKPOINT_NAME,
        tensors,
        model_record(trainer),
        kind="checkpoint",
        state=training,
    )


def restore_checkpoint(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Restore into ``trainer`` everything :func:`write_checkpoint` wrote; every rank reads it.

    Raises:
        ValueError: the file is not a checkpoint, or was written with another config or
            another choice of teacher.
    """
    file = read_model_file(path)
    if file.kind != "checkpoint":
        raise ValueError(
            f"File {path} holds {file.kind!r} data; `resume` expects a checkpoint "
            f"({CHECKPOINT_NAME}) written during training."
        )
    meta, tensors, ctx = file.state, file.tensors, trainer.ctx
    _check_resumed_model(trainer, file.record, tensors, path)
    saved = TrainConfig.from_dict(dict(file.record.config or {}))
    if saved != trainer.config:
        diff = {
            k: (v, getattr(trainer.config, k))
            for k, v in saved.to_dict().items()
            if getattr(trainer.config, k) != v
        }
        raise ValueError(
            f"Checkpoint {path} was trained with a different config; "
            f"(checkpoint, requested) values: {diff}."
        )
    distilled = bool(meta.get("distilled", False))
    if distilled != (trainer.teacher is not None):
        raise ValueError(
            f"Checkpoint {path} was written by a run "
            f"{'with' if distilled else 'without'} a teacher, but this Trainer has "
            f"{'none' if trainer.teacher is None else 'one'}; resume with the same `teacher` "
            f"argument{' (the same teacher model)' if distilled else ' (None)'}."
        )
    trainer.model.load_state_dict(unprefixed("model.", tensors))
    trainer.optimizer.load_state_dict(
        unpack_optimizer(unprefixed("optimizer.", tensors), meta["optimizer"])
    )
    trainer.scheduler.load_state_dict(meta["scheduler"])
    if trainer.ema is not None:
        trainer.ema.module.load_state_dict(unprefixed("ema.", tensors))
    trainer.epoch = meta["epoch"]
    trainer.step_in_epoch = meta["step_in_epoch"]
    trainer.global_step = meta["global_step"]
    trainer.history = list(meta["history"])
    # The saved metrics are global sums: rank 0 carries them, the others restart at zero.
    trainer._running = torch.tensor(meta["running"], dtype=torch.float64)
    trainer._epoch_time = meta["epoch_time_s"]
    if not ctx.is_main:
        trainer._running.zero_()
    cpu_state = tensors.get(f"rng.cpu.{ctx.rank}")
    if cpu_state is None:
        # Resumed with more processes than saved: a fresh, still deterministic stream.
        torch.manual_seed(mix_seed(trainer.config.seed, ctx.rank, trainer.global_step))
    else:
        torch.set_rng_state(cpu_state)
    cuda_state = tensors.get(f"rng.cuda.{ctx.rank}")
    if cuda_state is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(cuda_state, ctx.device)


def _check_resumed_model(
    trainer: Trainer, record: ModelRecord, tensors: dict[str, torch.Tensor], path: object
) -> None:
    """Refuse a checkpoint of another model or data, before anything is loaded into the trainer.

    Raises:
        ValueError: another architecture or builder arguments, other classes, or tensors that
            do not fit (summarised by :func:`~sepconv.models.mismatch.weight_mismatch`).
    """
    from sepconv.models.mismatch import weight_mismatch
    from sepconv.utils.validation import invalid

    mine = trainer.identity
    if record.arch is not None and mine.arch is not None and record.arch != mine.arch:
        raise invalid(
            "resume",
            f"a checkpoint of {mine.arch!r}, the model being trained",
            str(path),
            note=f", a checkpoint of {record.arch!r}",
        )
    if record.arch == mine.arch and record.kwargs and mine.kwargs:
        differ = {
            k: (record.kwargs.get(k), v)
            for k, v in mine.kwargs.items()
            if record.kwargs.get(k) != v
        }
        if differ:
            raise invalid(
                "resume",
                f"a checkpoint of the model being trained ({mine.arch}({mine.kwargs}))",
                str(path),
                note=f", built with other arguments (checkpoint, requested): {differ}",
            )
    classes = tuple(trainer.train_set.classes)
    if record.classes is not None and tuple(record.classes) != classes:
        raise invalid(
            "resume",
            f"a checkpoint trained on the classes of `train_set` ({', '.join(classes[:10])})",
            str(path),
            note=f", trained on {', '.join(tuple(record.classes)[:10])}",
        )
    problem = weight_mismatch(
        trainer.model.state_dict(),
        unprefixed("model.", tensors),
        origin=f"checkpoint {path}",
        target=type(trainer.model).__name__,
    )
    if problem is not None:
        raise ValueError(f"Invalid value for argument `resume`: {problem}")
