"""A real ``torchrun --nproc_per_node=2`` job on CPU (gloo) against one process."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from sepconv.data import RandomCropFlip, load_fashion_mnist
from sepconv.train import TrainConfig, Trainer

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
