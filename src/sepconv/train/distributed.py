"""Process-group set-up for ``torchrun``: DDP over gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sepconv.utils.devices import check_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs, checkpoints and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process shares the work."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment, if any.

    ``WORLD_SIZE`` > 1 starts a process group (nccl when the device is CUDA, gloo otherwise);
    each process uses GPU ``LOCAL_RANK`` on CUDA. Without torchrun it returns a single-process
    context on ``device`` (default: CUDA if available, else CPU).

    Example:
        >>> init_distributed("cpu").world_size  # doctest: +SKIP
        1
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    # A device this machine lacks fails here, named, not at the first tensor moved to it.
    dev = (
        check_device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if dev.type == "cuda" and world_size > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group, if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()
