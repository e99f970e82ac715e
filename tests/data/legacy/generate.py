"""Write the legacy model files of this folder with the code of the commit named in README.md.

Run from the repository root of that commit: ``python tests/data/legacy/generate.py``. The
current code writes the new format, so running it today writes files of the new format instead.
"""

from __future__ import annotations

import gzip
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import sepconv.convert
import sepconv.train
from sepconv.cli import main
from sepconv.data import load_fashion_mnist
from sepconv.models import create_model, save_model

HERE = Path(__file__).resolve().parent


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fashion_mnist_subset(folder: Path, train: int = 64, test: int = 32) -> None:
    """The first images of real Fashion-MNIST, in its own IDX format."""
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        data = load_fashion_mnist(split)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", data.images[:count, 0].numpy())
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", data.labels[:count].numpy())


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).detach().clone()


def main_() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 28, 28)
    expected = {"input": x}

    # 1. sepconv.save_model
    torch.manual_seed(0)
    model = create_model(
        "mobilenet_v1", num_classes=10, in_chans=1, small_input=True, width_mult=0.1
    )
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 28, 28))  # BN statistics that are not the defaults
    save_model(model, HERE / "save_model.safetensors")
    expected["save_model"] = logits(model, x)

    # 2. sepconv train: 2 steps on 64 Fashion-MNIST images, with an EMA (the "ema." tensors)
    trainers: list[sepconv.train.Trainer] = []

    class Recording(sepconv.train.Trainer):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            trainers.append(self)

    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "fmnist", Path(tmp) / "run"
        data.mkdir()
        fashion_mnist_subset(data)
        sepconv.train.Trainer = Recording  # type: ignore[misc]
        code = main(
            [
                "train",
                "--model",
                "mobilenet_v1",
                "--width-mult",
                "0.1",
                "--data",
                f"fashion-mnist:{data}",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--ema-decay",
                "0.9",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        assert code == 0
        (run / "last.safetensors").replace(HERE / "train_last.safetensors")
        (run / "model.safetensors").replace(HERE / "train_model.safetensors")
    (trainer,) = trainers
    expected["train_last"] = logits(trainer.eval_model, x)  # the EMA
    expected["train_model"] = logits(trainer.eval_model, x)

    # 3. sepconv convert: MobileNetV1-0.25's stem decoupled at rank 1
    converted: list[torch.nn.Module] = []
    original_separabilize = sepconv.convert.separabilize

    def recording_separabilize(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original_separabilize(*args, **kwargs)
        converted.append(result.model)
        return result

    sepconv.convert.separabilize = recording_separabilize  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / "original.safetensors"
        save_model(create_model("mobilenet_v1_025", num_classes=10, in_chans=1), weights)
        code = main(
            [
                "convert",
                "mobilenet_v1_025",
                "--weights",
                str(weights),
                "--num-classes",
                "10",
                "--in-chans",
                "1",
                "--rank",
                "1",
                "--input-size",
                "28",
                "28",
                "--output",
                str(HERE / "convert.safetensors"),
            ]
        )
        assert code == 0
    expected["convert"] = logits(converted[0], x)

    save_file({k: v.contiguous() for k, v in expected.items()}, str(HERE / "expected.safetensors"))
    for path in sorted(HERE.glob("*.safetensors")):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main_()
