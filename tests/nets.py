"""Small networks and BatchNorm randomisation shared by the deployment tests."""

from __future__ import annotations

import torch
from torch import nn

from sepconv import ConvNormAct, MBConv


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm2d, in place.

    Fresh BatchNorms fold to the identity; random ones make folding change every weight it
    touches, so that a wrong fold shows up in the outputs.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                if m.running_mean is not None and m.running_var is not None:
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                    m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.5)
    return model


def mbconv_net(in_chans: int) -> nn.Sequential:
    """A small EfficientNet-style classifier: strided stem, MBConv with SiLU, squeeze-excite and
    a residual add, a 1x1 head, pooling and a linear layer (10 classes)."""
    return nn.Sequential(
        ConvNormAct(in_chans, 16, 3, stride=2, act=nn.SiLU),
        MBConv(16, 16),  # expand, depthwise, SE, project, residual add
        MBConv(16, 24, stride=2),
        ConvNormAct(24, 32, 1, act=nn.SiLU),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
