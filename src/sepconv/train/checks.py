"""Checks of what training receives, before any work: the Trainer's arguments and the fields of
a checkpoint it resumes from.

A checkpoint is read as untrusted input: every field of its training state is checked for
presence, type and range, and against the run that resumes it (epochs, steps per epoch, the
optimizer's parameters), so that a damaged or edited file is refused, named, instead of
training nothing, resuming inexactly or failing with a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sepconv.data.dataset import ImageDataset
from sepconv.modelfile.mismatch import weight_mismatch
from sepconv.train.config import TrainConfig
from sepconv.utils.validation import invalid, invalid_type, positive_int

__all__ = [
    "check_checkpoint_state",
    "check_fit_arguments",
    "check_spread",
    "check_trainer_arguments",
]


def check_trainer_arguments(
    model: object,
    config: object,
    train_set: object,
    test_set: object,
    teacher: object = None,
) -> None:
    """Refuse arguments of the wrong kind, splits whose classes or image sizes differ, and a
    model (or teacher) whose number of outputs is not the number of classes, before any work.

    Raises:
        ValueError: naming the argument at fault.
    """
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
    if not isinstance(train_set, ImageDataset):
        return
    if len(train_set) == 0:
        raise invalid("train_set", "an ImageDataset with images", "an empty one")
    if teacher is not None and (not isinstance(teacher, nn.Module) or teacher is model):
        raise invalid(
            "teacher",
            "an nn.Module other than `model` or None",
            type(teacher).__name__,
            note=" (the model itself)" if teacher is model else "",
        )
    if isinstance(test_set, ImageDataset):
        if tuple(test_set.classes) != tuple(train_set.classes):
            # Scored against another split's names, the test accuracy would mean nothing.
            raise invalid(
                "test_set",
                f"the classes of `train_set` ({', '.join(train_set.classes[:10])})",
                ", ".join(test_set.classes[:10]),
                note=" (both splits must name the same classes, in the same order)",
            )
        train_shape, test_shape = _shape(train_set), _shape(test_set)
        if test_shape != train_shape:
            raise invalid(
                "test_set",
                f"images of the size of those of `train_set` ({train_shape})",
                f"images of size {test_shape}",
            )
    _check_outputs("model", model, train_set)
    if isinstance(teacher, nn.Module):
        _check_outputs("teacher", teacher, train_set)


def _shape(dataset: ImageDataset) -> str:
    """``"CxHxW"`` of the dataset's images."""
    return "x".join(str(int(v)) for v in dataset.images.shape[1:])


def _check_outputs(name: str, model: nn.Module, train_set: ImageDataset) -> None:
    """Run ``model`` on one training image (eval mode, no gradient, its modes restored after) and
    refuse it unless it returns ``(1, num_classes)`` logits."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = train_set.images[:1].to(device=device, dtype=torch.float32) / 255.0
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        if "out of memory" in str(err):
            raise
        raise invalid(
            name,
            f"a classifier of the images of `train_set` ({_shape(train_set)})",
            type(model).__name__,
            note=f", which fails on one of them: {str(err).strip().splitlines()[0]}",
        ) from err
    finally:
        for module, training in modes.items():
            module.training = training
    classes = train_set.num_classes
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise invalid(
            name,
            f"a classifier with {classes} outputs, one per class of `train_set`",
            type(model).__name__,
            note=f" returning {shape} for one image",
        )


def check_spread(std: tuple[float, ...]) -> None:
    """Refuse training images whose pixels are one value in a channel (standard deviation 0):
    normalised by that spread, every input would be infinite."""
    flat = [c for c, s in enumerate(std) if s == 0]
    if flat:
        raise invalid(
            "train_set",
            "images whose pixels vary in every channel",
            "images of one value",
            note=f" in channel(s) {flat} (nothing to learn, and nothing to normalise by)",
        )


def check_fit_arguments(max_steps: object, overwrite: object) -> None:
    """Refuse a ``max_steps`` that is not ``None`` or a positive integer (0 would train
    nothing and return an empty history), and an ``overwrite`` that is not a bool."""
    if max_steps is not None:
        positive_int("max_steps", max_steps)  # type: ignore[arg-type]
    if not isinstance(overwrite, bool):
        raise invalid_type("overwrite", "True or False", overwrite)


# ------------------------------------------------------------------------------ checkpoints
def _damaged(path: object, field: str, expected: str, received: object) -> ValueError:
    return invalid(
        "resume",
        "an intact checkpoint",
        str(path),
        note=f", whose `{field}` is {received!r} (expected {expected}); resume from another "
        "checkpoint or train again",
    )


def _integer(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_checkpoint_state(
    state: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    path: object,
    *,
    config: TrainConfig,
    steps_per_epoch: int,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
) -> None:
    """Refuse a checkpoint whose training state is missing a field, has one of the wrong type
    or out of range, or does not fit the run that resumes it.

    Args:
        state: The checkpoint's training state (its header's ``"state"``).
        tensors: Its tensors, prefixed (``model.``, ``ema.``, ``optimizer.``, ``rng.``).
        path: The file, for the message.
        config: The resuming run's config (epochs).
        steps_per_epoch: Optimizer steps per epoch of the resuming run.
        optimizer: The resuming run's optimizer: saved state must fit its parameters.
        ema: The resuming run's weight average, or ``None``: its tensors must be there.

    Raises:
        ValueError: ``argument `resume```, naming the file and the field.
    """
    for key in ("epoch", "step_in_epoch", "global_step", "world_size"):
        if not _integer(state.get(key)) or state[key] < 0:
            raise _damaged(path, key, "an integer >= 0", state.get(key))
    epoch, step, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
    if epoch > config.epochs:
        raise _damaged(path, "epoch", f"at most the {config.epochs} epochs of the run", epoch)
    if step >= steps_per_epoch or (epoch == config.epochs and step):
        raise _damaged(path, "step_in_epoch", f"below the {steps_per_epoch} steps per epoch", step)
    if global_step != epoch * steps_per_epoch + step:
        raise _damaged(
            path,
            "global_step",
            f"{epoch * steps_per_epoch + step}: `epoch` x {steps_per_epoch} steps per epoch + "
            "`step_in_epoch` (another data set or batch size?)",
            global_step,
        )
    if not 1 <= state["world_size"] <= 65536:
        raise _damaged(path, "world_size", "a process count >= 1", state["world_size"])
    running = state.get("running")
    if (
        not isinstance(running, list)
        or len(running) != 3
        or not all(_number(v) and v >= 0 for v in running)
    ):
        raise _damaged(path, "running", "3 finite sums >= 0", running)
    if not _number(state.get("epoch_time_s")) or state["epoch_time_s"] < 0:
        raise _damaged(path, "epoch_time_s", "a finite number >= 0", state.get("epoch_time_s"))
    history = state.get("history")
    if (
        not isinstance(history, list)
        or len(history) != epoch
        or not all(isinstance(r, dict) for r in history)
    ):
        shown = f"{len(history)} records" if isinstance(history, list) else history
        raise _damaged(path, "history", f"one record per finished epoch ({epoch})", shown)
    if not isinstance(state.get("distilled", False), bool):
        raise _damaged(path, "distilled", "true or false", state.get("distilled"))
    _check_scheduler(state.get("scheduler"), path, global_step, len(optimizer.param_groups))
    _check_rng(tensors, path, state["world_size"])
    _check_optimizer(state.get("optimizer"), tensors, path, optimizer)
    if ema is not None:
        saved = {k[4:]: t for k, t in tensors.items() if k.startswith("ema.")}
        problem = weight_mismatch(
            ema.state_dict(), saved, origin=f"checkpoint {path} (weight average)", target="EMA"
        )
        if problem is not None:
            raise ValueError(f"Invalid value for argument `resume`: {problem}")


def _check_scheduler(scheduler: object, path: object, global_step: int, groups: int) -> None:
    """The schedule must stand at the checkpoint's step, with one rate per parameter group."""
    if not isinstance(scheduler, dict) or scheduler.get("last_epoch") != global_step:
        shown = scheduler.get("last_epoch") if isinstance(scheduler, dict) else scheduler
        raise _damaged(path, "scheduler.last_epoch", f"the global step {global_step}", shown)
    for key in ("base_lrs", "_last_lr"):
        rates = scheduler.get(key)
        if key in scheduler and (
            not isinstance(rates, list) or len(rates) != groups or not all(map(_number, rates))
        ):
            raise _damaged(path, f"scheduler.{key}", f"{groups} finite learning rates", rates)


def _check_rng(tensors: Mapping[str, torch.Tensor], path: object, world_size: int) -> None:
    """Every saved rank's CPU generator state must be there and be one: without it the resumed
    run would draw other random numbers than the uninterrupted one."""
    size = torch.get_rng_state().numel()
    for rank in range(world_size):
        key = f"rng.cpu.{rank}"
        value = tensors.get(key)
        if value is None:
            raise _damaged(path, key, "the random state of that process", "missing")
        if value.dtype != torch.uint8 or value.dim() != 1 or value.numel() != size:
            shown = f"{value.dtype} tensor of shape {tuple(value.shape)}"
            raise _damaged(path, key, f"a uint8 tensor of {size} bytes", shown)
    for key, value in tensors.items():
        if key.startswith("rng.cuda.") and (value.dtype != torch.uint8 or value.dim() != 1):
            shown = f"{value.dtype} tensor of shape {tuple(value.shape)}"
            raise _damaged(path, key, "a uint8 tensor", shown)


def _check_optimizer(
    meta: object,
    tensors: Mapping[str, torch.Tensor],
    path: object,
    optimizer: torch.optim.Optimizer,
) -> None:
    """The saved optimizer state must describe the resuming optimizer's parameter groups and
    hold, per parameter, tensors of that parameter's shape (or scalars such as step counts)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("param_groups"), list)
        or not isinstance(meta.get("scalars"), dict)
    ):
        raise _damaged(path, "optimizer", "an object with `param_groups` and `scalars`", meta)
    groups = meta["param_groups"]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    saved = [
        len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else None
        for g in groups
    ]
    if saved != sizes:
        raise _damaged(path, "optimizer.param_groups", f"groups of {sizes} parameters", saved)
    for index in meta["scalars"]:
        if not str(index).isdigit() or int(index) >= len(params):
            raise _damaged(path, "optimizer.scalars", f"parameter indices < {len(params)}", index)
    for key, value in tensors.items():
        if not key.startswith("optimizer."):
            continue
        index, _, _ = key[len("optimizer.") :].partition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise _damaged(path, key, f"the state of one of {len(params)} parameters", key)
        shape = params[int(index)].shape
        if value.dim() != 0 and value.shape != shape:
            raise _damaged(path, key, f"a tensor of shape {tuple(shape)}", tuple(value.shape))
