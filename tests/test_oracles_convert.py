"""``sepconv convert --finetune-epochs``: the fine-tune must lower its own objective.

The distillation objective (Hinton et al. 2015: ``alpha T^2 KL(teacher || student)`` at
temperature ``T`` plus ``(1 - alpha)`` cross-entropy) is computed here in float64 from the
weights files the command writes, on the fine-tuning images, before (``--finetune-epochs 0``)
and after the fine-tune. The student's BatchNorm layers normalise with the statistics of those
images (training-mode BatchNorm over the whole set), so what is measured is what the trained
weights learned: refreshing BatchNorm's running statistics alone already lowers an eval-mode
loss after a conversion, even with a learning rate too small to move any weight.
"""

from __future__ import annotations

import copy
import gzip
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sepconv.cli import main
from sepconv.modelfile import load_model, save_model
from sepconv.models import create_model

TEMPERATURE, ALPHA = 4.0, 1.0


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fashion_mnist_lookalike(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """64 training and 16 test images in the real IDX format; returns the training split.

    Smooth images (4x4 noise upsampled bilinearly): the 2-pixel crops and the flips of the
    fine-tune's augmentation change them little, so a few steps show a clear trend.
    """
    rng = np.random.default_rng(0)
    train = None
    for split, count in (("train", 64), ("t10k", 16)):
        low = torch.from_numpy(rng.integers(0, 256, (count, 1, 4, 4)).astype(np.float64))
        images = F.interpolate(low, size=(28, 28), mode="bilinear")[:, 0].numpy().astype(np.uint8)
        labels = rng.integers(0, 10, count)
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        train = train or (images, labels)
    assert train is not None
    return train


def _objective(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    student = copy.deepcopy(student).double().eval()
    for m in student.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()  # normalise by the statistics of x itself (dropout stays off)
    with torch.no_grad():
        s = student(x)
        t = teacher.double().eval()(x)
    log_p_t = F.log_softmax(t / TEMPERATURE, dim=1)
    log_p_s = F.log_softmax(s / TEMPERATURE, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()
    ce = -F.log_softmax(s, dim=1)[torch.arange(len(y)), y].mean()
    return float(ALPHA * TEMPERATURE**2 * kl + (1 - ALPHA) * ce)


def test_finetune_lowers_the_distillation_objective_on_its_data(tmp_path: Path) -> None:
    images, labels = _fashion_mnist_lookalike(tmp_path)
    # pixels normalised by their population mean / std, as the fine-tune does
    pixels = images.astype(np.float64) / 255.0
    x = torch.from_numpy((pixels - pixels.mean()) / pixels.std())[:, None]
    y = torch.from_numpy(labels).long()
    torch.manual_seed(0)
    original = create_model("mobilenet_v1_025", in_chans=1, num_classes=10)
    # A teacher with something to teach: a classifier that is not zero, and BatchNorm
    # statistics of these images (cumulative averages over one pass in training mode).
    with torch.no_grad():
        original.classifier.weight.normal_(0, 0.1)
        for m in original.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        original.train()(x.float())
        original.eval()
    weights = tmp_path / "original.safetensors"
    save_model(original, weights)

    def convert(epochs: int, out: Path) -> None:
        code = main(
            ["convert", "mobilenet_v1_025", "--weights", str(weights), "--in-chans", "1",
             "--num-classes", "10", "--rank", "1", "--input-size", "28", "28",
             "--finetune-epochs", str(epochs), "--batch-size", "32", "--lr", "0.1",
             "--temperature", str(TEMPERATURE), "--alpha", str(ALPHA),
             "--data", f"fashion-mnist:{tmp_path}", "--output", str(out), "--device", "cpu"]
        )  # fmt: skip
        assert code == 0

    before, after = tmp_path / "converted.safetensors", tmp_path / "finetuned.safetensors"
    convert(0, before)
    convert(3, after)

    teacher = load_model(weights)
    loss_before = _objective(load_model(before), teacher, x, y)
    loss_after = _objective(load_model(after), teacher, x, y)
    assert loss_after < 0.98 * loss_before, (loss_before, loss_after)

    # Every conv and linear weight moved, not only BatchNorm's running statistics.
    a, b = load_file(before), load_file(after)
    trained = [k for k, v in a.items() if v.ndim > 1]
    assert trained and all(not torch.equal(a[k], b[k]) for k in trained)
