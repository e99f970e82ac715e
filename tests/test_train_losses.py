"""The distillation loss against its formula (the loop is the Trainer's: tests/test_train.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sepconv.train.losses import distillation_loss


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
        (
            {"label_smoothing": 1.0},
            r"`label_smoothing`: expected a number in \[0, 1\), received 1.0",
        ),
    ],
)
def test_invalid_loss_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(), **kwargs)


def test_alpha_zero_is_exactly_the_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    s = torch.randn(6, 4, requires_grad=True)
    t, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    loss = distillation_loss(s, t, y, alpha=0.0, label_smoothing=0.1)
    (grad,) = torch.autograd.grad(loss, s)
    reference = F.cross_entropy(s, y, label_smoothing=0.1)
    (reference_grad,) = torch.autograd.grad(reference, s)
    assert torch.equal(loss, reference)
    assert torch.equal(grad, reference_grad)
