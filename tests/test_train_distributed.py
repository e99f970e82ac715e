"""A real ``torchrun --nproc_per_node=2`` job on CPU (gloo) against one process; the
process-group set-up and the cross-rank divergence check with ranks that are threads of this
process, so that ranks can differ (RANK != LOCAL_RANK, one rank diverging before another)."""

from __future__ import annotations

import functools
import gzip
import math
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

import sepconv.train.distributed as distributed
import sepconv.train.divergence as divergence
from sepconv.data import RandomCropFlip, load_fashion_mnist
from sepconv.train import TrainConfig, Trainer, TrainingDiverged
from sepconv.train.divergence import DivergenceWatch

# The job and the reference share these; BatchNorm is left out on purpose: without SyncBatchNorm
# each rank normalises with its own half-batch statistics, which a single process cannot match.
MODEL_AND_CONFIG = """
import torch
from torch import nn
from sepconv.train import TrainConfig

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 8, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )

CONFIG = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0.5, seed=3)
"""

JOB = """
import sys
from safetensors.torch import save_file
from sepconv.data import RandomCropFlip, load_fashion_mnist
from sepconv.train import Trainer, cleanup_distributed, init_distributed
from shared import CONFIG, build_model

root, out = sys.argv[1], sys.argv[2]
ctx = init_distributed("cpu")
trainer = Trainer(build_model(), CONFIG, load_fashion_mnist("train", root), out_dir=out,
                  augment=RandomCropFlip(padding=2), context=ctx)
trainer.fit()
state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, f"{out}/rank{ctx.rank}.safetensors")
cleanup_distributed()
"""


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_torchrun_two_ranks_match_one_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for prefix, n in (("train", 64), ("t10k", 8)):
        write_idx(
            data / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8)
        )
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    (tmp_path / "shared.py").write_text(textwrap.dedent(MODEL_AND_CONFIG))
    (tmp_path / "job.py").write_text(textwrap.dedent(JOB))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "job.py"), str(data), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (load_file(out / f"rank{r}.safetensors") for r in range(2))
    # Only rank 0 writes the run's files.
    assert sorted(p.name for p in out.iterdir()) == [
        "last.safetensors",
        "log.jsonl",
        "model.safetensors",
        "rank0.safetensors",
        "rank1.safetensors",
    ]

    namespace: dict[str, object] = {}
    exec(textwrap.dedent(MODEL_AND_CONFIG), namespace)
    model: nn.Module = namespace["build_model"]()  # type: ignore[operator]
    config: TrainConfig = namespace["CONFIG"]  # type: ignore[assignment]
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    single = Trainer(
        model, config, load_fashion_mnist("train", data), augment=RandomCropFlip(padding=2)
    )
    single.fit()
    for name, expected in single.model.state_dict().items():
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(expected, initial[name]), f"{name} never moved"


# ---------------------------------------------------------------- ranks as threads
class ThreadWorld:
    """The collectives of ``torch.distributed`` for ranks that are threads of this process: as
    the real ones, each call returns once every rank has made it, with every rank's tensor."""

    ReduceOp = dist.ReduceOp

    def __init__(self, size: int) -> None:
        self.size = size
        self._barrier = threading.Barrier(size, timeout=30)
        self._slots: list[torch.Tensor | None] = [None] * size
        self._local = threading.local()

    def get_world_size(self, group: object = None) -> int:
        return self.size

    def get_rank(self, group: object = None) -> int:
        return int(self._local.rank)

    def _exchange(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self._slots[self.get_rank()] = tensor.clone()
        self._barrier.wait()
        every = [t for t in self._slots if t is not None]
        self._barrier.wait()  # no rank refills its slot before every rank has read them all
        return every

    def all_reduce(self, tensor: torch.Tensor, op: Any = dist.ReduceOp.SUM, **_: object) -> None:
        combine = {
            dist.ReduceOp.MIN: torch.minimum,
            dist.ReduceOp.MAX: torch.maximum,
            dist.ReduceOp.SUM: torch.add,
        }[op]
        tensor.copy_(functools.reduce(combine, self._exchange(tensor)))

    def all_gather(self, out: list[torch.Tensor], tensor: torch.Tensor, **_: object) -> None:
        for target, value in zip(out, self._exchange(tensor), strict=True):
            target.copy_(value)

    def run(self, work: Callable[[int], object]) -> list[object]:
        """``work(rank)`` on every rank at once; what each returned or raised."""
        results: list[object] = [None] * self.size

        def rank_main(rank: int) -> None:
            self._local.rank = rank
            try:
                results[rank] = work(rank)
            except Exception as err:  # handed to the test
                results[rank] = err

        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


def _watch(losses: list[float]) -> DivergenceWatch:
    watch = DivergenceWatch(torch.device("cpu"))
    for step, loss in enumerate(losses, 1):
        watch.record(torch.tensor(loss), step)
    return watch


def test_every_rank_stops_at_the_first_diverged_step_of_any_rank_with_its_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = ThreadWorld(3)
    monkeypatch.setattr(divergence, "dist", world)
    healthy = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7]
    watches = [
        _watch(healthy),  # rank 0: never diverges
        _watch([*healthy[:6], math.inf]),  # rank 1: from step 7
        _watch([*healthy[:3], 5e4, 2.0, 1.9, 1.8]),  # rank 2: step 4, above 1e4 x 2.3
    ]
    found = world.run(lambda rank: watches[rank].first_bad(distributed=True))
    assert found == [(4, 5e4)] * 3
    # Each rank's own view, without the other ranks.
    assert [w.first_bad(distributed=False) for w in watches] == [None, (7, math.inf), (4, 5e4)]
    # The main rank, which saw no bad loss itself, names the step and the loss of the rank
    # that diverged first.
    raised = world.run(
        lambda rank: watches[rank].check(distributed=True, checkpoint=None, saved_step=None)
    )
    assert all(isinstance(err, TrainingDiverged) for err in raised), raised
    assert str(raised[0]).startswith("Training diverged at step 4: the loss 5e+04 exceeds 2.3e+04")
    # No rank diverged: every rank goes on.
    quiet = [_watch(healthy) for _ in range(3)]
    assert world.run(lambda rank: quiet[rank].first_bad(distributed=True)) == [None] * 3


def test_a_first_loss_near_zero_does_not_make_every_later_loss_a_divergence() -> None:
    # A run resumed from a nearly perfect fit: the bound has a floor of 1e4 x 1e-3.
    watch = _watch([1e-7, 5.0, 9.9])
    assert watch.bound == pytest.approx(10.0)
    assert watch.first_bad(distributed=False) is None
    watch.record(torch.tensor(10.5), step=4)
    assert watch.first_bad(distributed=False) == (4, 10.5)


class _ProcessGroup:
    """What init_distributed asks of torch.distributed, recorded."""

    def __init__(self) -> None:
        self.backends: list[str] = []

    def is_initialized(self) -> bool:
        return bool(self.backends)

    def init_process_group(self, backend: str) -> None:
        self.backends.append(backend)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_process_of_the_second_node_takes_its_global_rank_and_its_local_gpu(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchrun on 2 nodes of 2 GPUs: the second process of the second node is rank 3 of 4 and
    # uses GPU 1 of its node. (On one node RANK and LOCAL_RANK are equal, and either would do.)
    for name, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    group = _ProcessGroup()
    chosen: list[torch.device] = []
    monkeypatch.setattr(distributed, "dist", group)
    monkeypatch.setattr(distributed, "check_device", torch.device)  # no GPU needed here
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    ctx = distributed.init_distributed(device)
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (3, 4, False, True)
    if device == "cuda":
        assert ctx.device == torch.device("cuda", 1) and chosen == [ctx.device]
        assert group.backends == ["nccl"]
    else:
        assert ctx.device == torch.device("cpu") and chosen == []
        assert group.backends == ["gloo"]
