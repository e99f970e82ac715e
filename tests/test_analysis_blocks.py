"""``sepconv.analyze`` on the blocks and models of MobileNetV3/V4, EfficientNetV2 and ConvNeXt:
convolutions and linear layers against PyTorch's FlopCounterMode, norms and activations (layer
norm, hard-swish, hard-sigmoid, GELU, ...) against hand formulas and against the outputs their
modules really produce; nothing is costed at zero unseen."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sepconv.analysis import analyze
from sepconv.layers import (
    SE_MOBILENET_V3,
    ConvNeXtBlock,
    FusedMBConv,
    InvertedResidual,
    LayerNorm2d,
    UniversalInvertedResidual,
)
from sepconv.models import create_model


def flop_counter_macs(model: nn.Module, size: tuple[int, ...]) -> int:
    """The independent reference for convolutions and linear layers: PyTorch's counter, halved."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(size))
    return counter.get_total_flops() // 2


def totals(model: nn.Module, size: tuple[int, ...]) -> tuple[dict[str, int], dict[str, int]]:
    """analyze's MACs per kind and per op name."""
    report = analyze(model, size)
    assert report.unknown_ops == {} and report.uncounted_params == {}
    assert report.macs == flop_counter_macs(model, size)
    kinds: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    for row in report.rows:
        kinds[row.kind] += row.macs
        ops[row.op] += row.macs
    return dict(kinds), dict(ops)


def test_convnext_block_hand_formulas() -> None:
    c, h = 16, 8
    kinds, ops = totals(ConvNeXtBlock(c), (1, c, h, h))
    positions = h * h
    assert kinds["depthwise_conv"] == c * 7 * 7 * positions
    assert kinds["pointwise_conv"] == 2 * c * 4 * c * positions  # the MLP, as 1x1 convs
    assert ops["layer_norm"] == kinds["norm"] == c * positions  # one output per element
    assert ops["gelu"] == kinds["activation"] == 4 * c * positions
    # layer scale (a multiply) and the residual add
    assert ops["mul"] == ops["add"] == c * positions


def test_mobilenet_v3_block_hand_formulas() -> None:
    c, mid, h = 16, 48, 8
    block = InvertedResidual(
        c, c, expand_ratio=3, act=nn.Hardswish, se_ratio=0.25, se_style=SE_MOBILENET_V3
    )
    reduced = block.se.conv_reduce.out_channels
    assert reduced == 16  # make_divisible(48 / 4, 8)
    kinds, ops = totals(block, (1, c, h, h))
    p = h * h
    assert kinds["pointwise_conv"] == 2 * c * mid * p + 2 * mid * reduced  # + the SE's 1x1s
    assert kinds["depthwise_conv"] == mid * 9 * p
    assert ops["hardswish"] == 2 * mid * p  # after the expansion and the depthwise conv
    assert ops["relu"] == reduced and ops["hardsigmoid"] == mid  # inside the squeeze-excite
    assert ops["batch_norm"] == (2 * mid + c) * p
    assert kinds["pooling"] == mid * p  # the squeeze: a mean over every input element
    assert ops["mul"] == mid * p and ops["add"] == c * p  # the gate, the residual


@pytest.mark.parametrize(
    ("block", "c_in", "expected"),
    [
        # ExtraDW UIB, 16 -> 24, t = 3 (48), start 5x5 at 8x8, middle 3x3 strided to 4x4
        (
            UniversalInvertedResidual(16, 24, 2, 3, start_kernel_size=5, kernel_size=3),
            16,
            16 * 25 * 64 + 16 * 48 * 64 + 48 * 9 * 16 + 48 * 24 * 16,
        ),
        # Fused-MBConv 16 -> 24, t = 4 (64): a 3x3 standard conv strided to 4x4, a 1x1 projection
        (FusedMBConv(16, 24, 2, 4), 16, 16 * 64 * 9 * 16 + 64 * 24 * 16),
    ],
    ids=["uib", "fused-mbconv"],
)
def test_new_block_macs_closed_form(block: nn.Module, c_in: int, expected: int) -> None:
    kinds, _ = totals(block, (1, c_in, 8, 8))
    assert sum(v for k, v in kinds.items() if k.endswith("conv")) == expected


def test_layer_norm_2d_is_a_norm_of_one_mac_per_element() -> None:
    report = analyze(LayerNorm2d(12), (2, 12, 5, 5))
    [row] = report.rows
    assert (row.op, row.kind, row.macs, row.params) == ("layer_norm", "norm", 2 * 12 * 25, 24)
    assert report.macs == 0  # outside the headline


def _module_outputs(model: nn.Module, size: tuple[int, ...]) -> Counter[str]:
    """Independent oracle: output elements of every norm and activation module, by class."""
    seen: Counter[str] = Counter()
    kinds = (nn.BatchNorm2d, nn.LayerNorm, nn.ReLU, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.SiLU)

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen[type(module).__name__] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(torch.zeros(size))
    for handle in handles:
        handle.remove()
    return seen


# Module class -> the op it calls (LayerNorm2d is an nn.LayerNorm)
OP_OF = {
    "BatchNorm2d": "batch_norm",
    "LayerNorm": "layer_norm",
    "LayerNorm2d": "layer_norm",
    "ReLU": "relu",
    "Hardswish": "hardswish",
    "Hardsigmoid": "hardsigmoid",
    "GELU": "gelu",
    "SiLU": "silu",
}


@pytest.mark.parametrize(
    "name",
    ["mobilenet_v3_small", "mobilenet_v4_conv_small", "efficientnet_v2_s", "convnext_tiny"],
)
def test_every_norm_and_activation_of_the_new_families_is_counted(name: str) -> None:
    model = create_model(name, num_classes=10)
    size = (1, 3, 64, 64)
    _, ops = totals(model, size)
    expected: Counter[str] = Counter()
    for cls, elements in _module_outputs(model, size).items():
        expected[OP_OF[cls]] += elements
    assert expected  # the oracle saw the model's norms and activations
    assert {op: ops.get(op, 0) for op in expected} == dict(expected)
