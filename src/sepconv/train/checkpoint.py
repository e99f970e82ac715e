"""Checkpoints: a model file (:mod:`sepconv.modelfile.format`) plus the training state.

A checkpoint's tensors are the model's (``model.``), the EMA's (``ema.``), the optimizer's
(``optimizer.``) and every rank's RNG states as ``uint8`` (``rng.cpu.R``, ``rng.cuda.R``); its
header holds the model record (architecture, builder arguments, normalisation, classes, training
config) and, under ``"state"``, the run's :class:`~sepconv.train.state.TrainState` (epoch, steps,
running metrics summed over ranks, epoch time, history) with the scheduler, the optimizer's
hyper-parameters, the world size and whether a teacher was used, so one file is one consistent
snapshot, written atomically.
:func:`~sepconv.modelfile.load_model` reads a checkpoint as it reads weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepconv.modelfile.format import (
    METADATA_KEY,
    read_model_file,
    read_safetensors,
    write_model_file,
    write_safetensors,
)
from sepconv.modelfile.interop import upgrade_keys
from sepconv.modelfile.record import ModelRecord
from sepconv.train.checks import check_checkpoint_state
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext
from sepconv.train.ema import ModelEma
from sepconv.train.state import TrainState
from sepconv.utils.seeding import mix_seed

META_KEY = METADATA_KEY
CHECKPOINT_NAME = "last.safetensors"
WEIGHTS_NAME = "model.safetensors"


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``tensors`` and the JSON-able header ``meta`` to a safetensors file, atomically.

    The low-level container of model files; :func:`sepconv.modelfile.format.write_model_file`
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


# ---------------------------------------------------------------- a training run's checkpoint
def write_checkpoint(
    path: Path | None,
    state: TrainState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ModelEma | None,
    record: ModelRecord,
    ctx: DistributedContext,
    distilled: bool,
) -> None:
    """Write the checkpoint of a run at ``path`` (``None``: write nothing).

    Every rank must call it: it sums the running metrics of ``state`` over the ranks and
    gathers every rank's RNG states; rank 0 writes the file, atomically.

    Args:
        path: The checkpoint file (``out_dir/last.safetensors``); its folder is created.
        state: Where the run stands.
        model, optimizer, scheduler, ema: The objects whose state the file holds.
        record: The model's record (identity, normalisation, classes, training config).
        ctx: Process placement.
        distilled: Whether the run trains against a teacher (resuming must use one too).
    """
    import torch.distributed as dist

    running = state.running.clone()
    rng = [torch.get_rng_state()]
    if ctx.device.type == "cuda":
        rng.append(torch.cuda.get_rng_state(ctx.device))
    states: list[Any] = [rng]
    if ctx.distributed:
        dist.all_reduce(running)
        states = [None] * ctx.world_size
        dist.all_gather_object(states, rng)
    if not ctx.is_main or path is None:
        return
    opt_tensors, opt_meta = pack_optimizer(optimizer.state_dict())
    tensors = {
        **prefixed("model.", model.state_dict()),
        **prefixed("optimizer.", opt_tensors),
    }
    if ema is not None:
        tensors.update(prefixed("ema.", ema.module.state_dict()))
    for rank, rank_states in enumerate(states):
        for kind, rank_state in zip(("cpu", "cuda"), rank_states, strict=False):
            tensors[f"rng.{kind}.{rank}"] = rank_state
    training = {
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "global_step": state.global_step,
        "world_size": ctx.world_size,
        "scheduler": scheduler.state_dict(),
        "optimizer": opt_meta,
        "running": running.tolist(),
        "epoch_time_s": state.epoch_time_s,
        "history": state.history,
        "distilled": distilled,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_model_file(path, tensors, record, kind="checkpoint", state=training)


def restore_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ModelEma | None,
    expected: ModelRecord,
    config: TrainConfig,
    ctx: DistributedContext,
    distilled: bool,
    steps_per_epoch: int,
) -> TrainState:
    """Load into the given objects what :func:`write_checkpoint` wrote, set this rank's RNG
    states, and return the run's state; every rank reads the file.

    Args:
        path: The checkpoint.
        model, optimizer, scheduler, ema: Loaded in place.
        expected: The record of the model being trained: the checkpoint must be of the same
            architecture, builder arguments and classes.
        config: The training config; the checkpoint must have been written with the same.
        ctx: Process placement: the running sums go to ``ctx.device``.
        distilled: Whether this run trains against a teacher; the checkpoint's run must agree.
        steps_per_epoch: Optimizer steps per epoch of the resuming run: the checkpoint's step
            counters must fit them.

    Raises:
        ValueError: the file is not a checkpoint, was written for another model, classes,
            config or choice of teacher, or a field of its training state is missing, of the
            wrong type or out of range (:func:`~sepconv.train.checks.check_checkpoint_state`).
    """
    file = read_model_file(path)
    if file.kind != "checkpoint":
        raise ValueError(
            f"File {path} holds {file.kind!r} data; `resume` expects a checkpoint "
            f"({CHECKPOINT_NAME}) written during training."
        )
    meta, tensors = file.state, dict(file.tensors)
    # A model of the user's own with sepconv's separable blocks, saved under the earlier key
    # names (sepconv's registered models are renamed by read_model_file already).
    current = model.state_dict()
    for prefix in ("model.", "ema."):
        part = unprefixed(prefix, tensors)
        if part:
            for key in part:
                del tensors[prefix + key]
            tensors.update({prefix + k: v for k, v in upgrade_keys(part, current).items()})
    _check_resumed_model(model, expected, file.record, tensors, path)
    try:
        saved = TrainConfig.from_dict(dict(file.record.config or {}))
    except (TypeError, ValueError) as err:
        # Not "argument `lr`": the reader typed no such option, the file holds it.
        reason = str(err).replace("Invalid value for argument ", "field ").rstrip(".")
        raise ValueError(
            f"Invalid value for argument `resume`: checkpoint {path} records an invalid "
            f"training config ({reason}); resume from another checkpoint or train again."
        ) from err
    if saved != config:
        diff = {
            k: (v, getattr(config, k))
            for k, v in saved.to_dict().items()
            if getattr(config, k) != v
        }
        raise ValueError(
            f"Checkpoint {path} was trained with a different config; "
            f"(checkpoint, requested) values: {diff}."
        )
    check_checkpoint_state(
        meta,
        tensors,
        path,
        config=config,
        steps_per_epoch=steps_per_epoch,
        optimizer=optimizer,
        ema=None if ema is None else ema.module,
    )
    was_distilled = bool(meta.get("distilled", False))
    if was_distilled != distilled:
        raise ValueError(
            f"Checkpoint {path} was written by a run "
            f"{'with' if was_distilled else 'without'} a teacher, but this Trainer has "
            f"{'one' if distilled else 'none'}; resume with the same `teacher` "
            f"argument{' (the same teacher model)' if was_distilled else ' (None)'}."
        )
    model.load_state_dict(unprefixed("model.", tensors))
    try:
        optimizer.load_state_dict(
            unpack_optimizer(unprefixed("optimizer.", tensors), meta["optimizer"])
        )
        scheduler.load_state_dict(dict(meta["scheduler"]))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        raise ValueError(
            f"Invalid value for argument `resume`: checkpoint {path} holds an optimizer or "
            f"schedule state this run cannot load ({err}); resume from another checkpoint or "
            "train again."
        ) from err
    if ema is not None:
        ema.module.load_state_dict(unprefixed("ema.", tensors))
    state = TrainState(
        running=torch.tensor(meta["running"], dtype=torch.float64, device=ctx.device),
        epoch=meta["epoch"],
        step_in_epoch=meta["step_in_epoch"],
        global_step=meta["global_step"],
        epoch_time_s=meta["epoch_time_s"],
        history=list(meta["history"]),
    )
    if not ctx.is_main:
        # The saved metrics are global sums: rank 0 carries them, the others restart at zero.
        state.running.zero_()
    cpu_state = tensors.get(f"rng.cpu.{ctx.rank}")
    if cpu_state is None:
        # Resumed with more processes than saved: a fresh, still deterministic stream.
        torch.manual_seed(mix_seed(config.seed, ctx.rank, state.global_step))
    else:
        torch.set_rng_state(cpu_state)
    cuda_state = tensors.get(f"rng.cuda.{ctx.rank}")
    if cuda_state is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(cuda_state, ctx.device)
    return state


def _check_resumed_model(
    model: nn.Module,
    expected: ModelRecord,
    record: ModelRecord,
    tensors: dict[str, torch.Tensor],
    path: object,
) -> None:
    """Refuse a checkpoint (``record``, ``tensors``) of another model or data than ``model``
    and its ``expected`` record, before anything is loaded.

    Raises:
        ValueError: another architecture or builder arguments, other classes, or tensors that
            do not fit (summarised by :func:`~sepconv.modelfile.mismatch.weight_mismatch`).
    """
    from sepconv.modelfile.mismatch import weight_mismatch
    from sepconv.utils.validation import invalid

    if record.arch is not None and expected.arch is not None and record.arch != expected.arch:
        raise invalid(
            "resume",
            f"a checkpoint of {expected.arch!r}, the model being trained",
            str(path),
            note=f", a checkpoint of {record.arch!r}",
        )
    if record.arch == expected.arch and record.kwargs and expected.kwargs:
        differ = {
            k: (record.kwargs.get(k), v)
            for k, v in expected.kwargs.items()
            if record.kwargs.get(k) != v
        }
        if differ:
            raise invalid(
                "resume",
                f"a checkpoint of the model being trained ({expected.arch}({expected.kwargs}))",
                str(path),
                note=f", built with other arguments (checkpoint, requested): {differ}",
            )
    classes = tuple(expected.classes or ())
    if record.classes is not None and tuple(record.classes) != classes:
        raise invalid(
            "resume",
            f"a checkpoint trained on the classes of `train_set` ({', '.join(classes[:10])})",
            str(path),
            note=f", trained on {', '.join(tuple(record.classes)[:10])}",
        )
    problem = weight_mismatch(
        model.state_dict(),
        unprefixed("model.", tensors),
        origin=f"checkpoint {path}",
        target=type(model).__name__,
    )
    if problem is not None:
        raise ValueError(f"Invalid value for argument `resume`: {problem}")
