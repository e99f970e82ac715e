"""Distillation fine-tuning: the loss against its formula, and a loop that moves the student."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sepconv.convert.distill import NormalizedBatches, distill, distillation_loss
from sepconv.data.dataset import BatchLoader, ImageDataset


def test_loss_matches_hinton_formula_by_hand():
    torch.manual_seed(0)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 3, 1, 4])
    temp, alpha = 3.0, 0.7
    expected = 0.0
    for n in range(4):
        ps = [math.exp(v / temp) for v in s[n].tolist()]
        pt = [math.exp(v / temp) for v in t[n].tolist()]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        kl = sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
        hard = -math.log(math.exp(s[n, y[n]]) / sum(math.exp(v) for v in s[n].tolist()))
        expected += (alpha * temp**2 * kl + (1 - alpha) * hard) / 4
    got = distillation_loss(s, t, y, temperature=temp, alpha=alpha)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # The soft term vanishes when the student equals the teacher.
    assert float(distillation_loss(t, t, y, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0}, r"`temperature`: expected a positive number, received 0"),
        ({"alpha": 1.5}, r"`alpha`: expected a number in \[0, 1\], received 1.5"),
    ],
)
def test_invalid_loss_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(), **kwargs)


def test_distill_brings_the_student_to_the_teacher():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8)
    labels = torch.randint(0, 3, (64,))
    data = ImageDataset(images, labels, ("a", "b", "c"))
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(64, 3))
    student = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(64, 3))
    loader = BatchLoader(data, 16)
    batches = NormalizedBatches(loader, (0.5,), (0.25,), steps=6)
    assert len(batches) == 6 and len(list(batches)) == 6  # continues into the next epoch
    x = next(iter(batches))[0]
    assert x.dtype == torch.float32

    def gap() -> float:
        with torch.no_grad():
            return float(distillation_loss(student(x), teacher(x), labels[:16], alpha=1.0))

    before = gap()
    history = distill(student, teacher, lambda epoch: batches, epochs=3, lr=0.05)
    assert len(history) == 3
    assert history[-1] < history[0]
    assert gap() < before / 2


def test_invalid_epochs():
    with pytest.raises(ValueError, match=r"`epochs`: expected a positive integer, received 0"):
        distill(nn.Linear(2, 2), nn.Linear(2, 2), lambda epoch: [], epochs=0)
