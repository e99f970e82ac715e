"""Training: :class:`Trainer`, :class:`TrainConfig`, the run's :class:`TrainState`,
evaluation, checkpoints and torchrun set-up."""

from __future__ import annotations

from sepconv.train.batchnorm import update_bn_statistics
from sepconv.train.checkpoint import load_tensors, save_tensors
from sepconv.train.config import TrainConfig
from sepconv.train.distributed import DistributedContext, cleanup_distributed, init_distributed
from sepconv.train.divergence import TrainingDiverged
from sepconv.train.ema import ModelEma
from sepconv.train.evaluate import EvalResult, evaluate, plot_confusion_matrix
from sepconv.train.optim import WarmupCosine, build_optimizer, param_groups
from sepconv.train.state import TrainState
from sepconv.train.trainer import Trainer

__all__ = [
    "DistributedContext",
    "EvalResult",
    "ModelEma",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "WarmupCosine",
    "build_optimizer",
    "cleanup_distributed",
    "evaluate",
    "init_distributed",
    "load_tensors",
    "param_groups",
    "plot_confusion_matrix",
    "save_tensors",
    "update_bn_statistics",
]
