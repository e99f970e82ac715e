"""Training hyper-parameters as one typed, JSON-serialisable record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sepconv.utils.validation import (
    bounded_int,
    finite_number,
    invalid,
    non_negative_int,
    one_of,
    positive_int,
)

_OPTIMIZERS = ("sgd", "adamw")
_AMP = ("auto", "bf16", "off")
MAX_SEED = 2**63 - 1
"""Largest ``seed``: generators take 64 bits, and sepconv's derived seeds are 63-bit."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides the model and the data.

    Args:
        epochs: passes over the training set.
        batch_size: global batch size (split evenly over the processes of a torchrun job).
        optimizer: ``"sgd"`` (momentum, Nesterov) or ``"adamw"`` (Loshchilov & Hutter 2019).
        lr: peak learning rate for ``batch_size``, reached after warm-up.
        momentum: SGD momentum (AdamW uses its default betas).
        weight_decay: L2 / decoupled decay, applied to conv and linear weights only; biases and
            normalisation parameters (every parameter with fewer than 2 dimensions) are exempt.
        warmup_epochs: linear warm-up length, then cosine decay to zero (Loshchilov & Hutter,
            "SGDR", 2017; Goyal et al. 2017 for the warm-up), stepped every batch.
        label_smoothing: epsilon of Szegedy et al. 2016, passed to ``cross_entropy``.
        ema_decay: decay of an exponential moving average of the weights, 0 disables it; the
            average is what gets evaluated and exported when enabled.
        amp: ``"auto"`` (bf16 autocast on CUDA devices that support it, off on CPU where most
            chips lack bf16 arithmetic), ``"bf16"`` (always), ``"off"``.
        channels_last: run model and inputs in NHWC memory format.
        compile: train through ``torch.compile(model)`` (the forward and backward passes;
            the optimizer step and evaluation stay eager). The one-time compilation runs on a
            warm-up batch before the first step, whose effects on weights, BatchNorm statistics
            and random state are undone, so it is not counted in ``epoch_time_s``.
        clip_grad_norm: max global gradient norm, 0 disables clipping.
        seed: seed of weights-independent randomness: data order, augmentation, dropout.
        checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
        eval_batch_size: batch size of evaluation.
        distill_temperature: softening temperature ``T`` of knowledge distillation, used only
            when the :class:`~sepconv.train.Trainer` is given a ``teacher`` (see
            :func:`sepconv.train.losses.distillation_loss`).
        distill_alpha: weight of the teacher term in ``[0, 1]`` (the rest goes to the
            label-smoothed cross-entropy); used only with a ``teacher``.

    Example:
        >>> TrainConfig(epochs=2, lr=0.05).optimizer
        'sgd'
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.0
    amp: str = "auto"
    channels_last: bool = True
    clip_grad_norm: float = 0.0
    seed: int = 0
    checkpoint_every: int = 0
    eval_batch_size: int = 512
    distill_temperature: float = 4.0
    distill_alpha: float = 0.9
    compile: bool = False

    def __post_init__(self) -> None:
        # Type, finiteness and range of every field, so that a bad value fails here, naming
        # its argument, and not as a NaN loss or a crash epochs later.
        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive_int(name, getattr(self, name))
        non_negative_int("checkpoint_every", self.checkpoint_every)
        # torch.manual_seed takes 64 bits; a larger seed would fail at the first step.
        bounded_int("seed", self.seed, 0, MAX_SEED)
        one_of("optimizer", self.optimizer, _OPTIMIZERS)
        one_of("amp", self.amp, _AMP)
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise invalid(name, "True or False", getattr(self, name))
        finite_number("lr", self.lr, low=0, low_inclusive=False)
        finite_number("distill_temperature", self.distill_temperature, low=0, low_inclusive=False)
        # weight_decay 0 turns decay off, warmup_epochs 0 warm-up, clip_grad_norm 0 clipping.
        for name in ("weight_decay", "warmup_epochs", "clip_grad_norm"):
            finite_number(name, getattr(self, name), low=0)
        for name in ("momentum", "label_smoothing", "ema_decay"):
            finite_number(name, getattr(self, name), low=0, high=1, high_inclusive=False)
        finite_number("distill_alpha", self.distill_alpha, low=0, high=1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Invalid training config: unknown keys {unknown}; expected a subset of "
                f"{sorted(known)}."
            )
        return cls(**data)
