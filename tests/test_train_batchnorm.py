"""update_bn_statistics(): BatchNorm running statistics recomputed from given batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sepconv.train import update_bn_statistics


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Dropout(0.9),
        nn.Conv2d(4, 5, 1),
        nn.BatchNorm2d(5),
    )


def test_statistics_are_the_batch_average_with_dropout_off() -> None:
    model = net()
    batches = [torch.randn(6, 3, 8, 8) * 3 + 1 for _ in range(3)]
    update_bn_statistics(model, batches)
    conv1, bn1, _, conv2, bn2 = model
    # Computed here by hand: each BatchNorm normalises with its batch's statistics while the
    # statistics are gathered, and dropout passes everything through.
    means1, vars1, means2, vars2 = [], [], [], []
    with torch.no_grad():
        for x in batches:
            h = conv1(x)
            means1.append(h.mean((0, 2, 3)))
            vars1.append(h.var((0, 2, 3), unbiased=True))
            h = F.batch_norm(h, None, None, bn1.weight, bn1.bias, training=True, eps=bn1.eps)
            h = conv2(h)
            means2.append(h.mean((0, 2, 3)))
            vars2.append(h.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(bn1.running_mean, torch.stack(means1).mean(0))
    torch.testing.assert_close(bn1.running_var, torch.stack(vars1).mean(0))
    torch.testing.assert_close(bn2.running_mean, torch.stack(means2).mean(0))
    torch.testing.assert_close(bn2.running_var, torch.stack(vars2).mean(0))
    assert not model.training and all(not m.training for m in model)
    assert bn1.momentum == 0.1 and bn2.momentum == 0.1


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="`model`: Conv2d has no BatchNorm"):
        update_bn_statistics(nn.Conv2d(3, 4, 3), [torch.randn(1, 3, 8, 8)])
    model = net()
    with pytest.raises(ValueError, match="`batches`: expected at least one input batch"):
        update_bn_statistics(model, [])
    assert model[1].momentum == 0.1 and not model.training
