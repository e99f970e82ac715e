"""Kernel extraction: each block kind becomes the kernels a backend runs, counted against an
independent count of its modules; the ONNX graphs of the kernels are the nodes the exporter
writes; an op no kernel covers is an error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

import sepconv
from sepconv.layers import (
    SE_MOBILENET_V3,
    ConvNeXtBlock,
    ConvNormAct,
    DepthwiseSeparableConv2d,
    FusedMBConv,
    InvertedResidual,
    MBConv,
    SqueezeExcite,
)
from sepconv.predict import Kernel, UnpredictableKernelError, extract_kernels
from sepconv.predict.onnx_graph import kernel_graph, sandwich_graph

ORT_LIKE = {"conv+relu", "conv+relu6", "conv+hardswish", "conv+add"}


def kinds(kernels: list[Kernel]) -> list[str]:
    out = []
    for k in kernels:
        name = f"{k.conv_type} {k.kernel_size}/{k.stride}" if k.kind == "conv" else k.kind
        out.append(
            name + (f" {k.act}" if k.act and k.kind == "conv" else "") + (" +add" if k.add else "")
        )
    return out


def test_conv_norm_act_folds_the_norm_and_fuses_by_the_rules() -> None:
    block = ConvNormAct(8, 16, 3, stride=2)
    shape = (1, 8, 16, 16)
    assert kinds(extract_kernels(block, shape)) == ["standard 3/2", "act"]
    fused = extract_kernels(block, shape, {"conv+relu"})
    assert kinds(fused) == ["standard 3/2 relu"] and fused[0].output == (1, 16, 8, 8)


def test_separable_block() -> None:
    block = DepthwiseSeparableConv2d(16, 32, 5, stride=2, se_ratio=0.25)
    ks = extract_kernels(block, (1, 16, 32, 32), ORT_LIKE)
    assert kinds(ks) == ["depthwise 5/2 relu6", "se", "pointwise 1/1 relu6"]
    se = ks[1]
    assert (se.hidden, se.act, se.gate) == (4, "relu6", "sigmoid")


@pytest.mark.parametrize("fusions", [set(), ORT_LIKE])
def test_inverted_residual_against_its_modules(fusions: set[str]) -> None:
    block = InvertedResidual(
        24,
        24,
        expand_ratio=6,
        kernel_size=3,
        act=nn.Hardswish,
        se_ratio=0.25,
        se_style=SE_MOBILENET_V3,
    )
    ks = extract_kernels(block, (1, 24, 28, 28), fusions)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    se_convs = [m for m in block.se.modules() if isinstance(m, nn.Conv2d)]
    acts = [m for m in block.modules() if isinstance(m, nn.Hardswish)]
    # Independently: every conv outside the SE is one kernel, the SE one, and each activation
    # and the residual add a kernel unless fused.
    expected = len(convs) - len(se_convs) + 1
    if not fusions:
        expected += len(acts) + 1
    assert len(ks) == expected
    assert ks[-1].add == ("conv+add" in fusions)
    (se,) = [k for k in ks if k.kind == "se"]
    assert (se.act, se.gate, se.hidden) == ("relu", "hardsigmoid", 40)


def test_mbconv_keeps_silu_apart_where_not_fused() -> None:
    ks = extract_kernels(MBConv(16, 16, kernel_size=5), (1, 16, 14, 14), ORT_LIKE)
    assert kinds(ks) == ["pointwise 1/1", "act", "depthwise 5/1", "act", "se", "pointwise 1/1 +add"]


def test_convnext_block() -> None:
    ks = extract_kernels(ConvNeXtBlock(32), (1, 32, 14, 14), ORT_LIKE)
    assert kinds(ks) == [
        "depthwise 7/1",
        "layernorm",
        "pointwise 1/1",
        "act",
        "pointwise 1/1",
        "scale",
        "add",
    ]
    assert ks[1].transposed and ks[1].inputs == ((1, 32, 14, 14),)
    assert ks[3].act == "gelu"


def test_fused_mbconv_is_a_standard_conv() -> None:
    ks = extract_kernels(FusedMBConv(16, 16, expand_ratio=4), (1, 16, 28, 28), ORT_LIKE)
    assert kinds(ks) == ["standard 3/1", "act", "pointwise 1/1 +add"]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "efficientnet_b0"])
def test_registered_models_against_their_modules(name: str) -> None:
    model = sepconv.create_model(name)
    ks = extract_kernels(model, (1, 3, 128, 128), ORT_LIKE)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    se = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    silu = sum(isinstance(m, nn.SiLU) for m in model.modules()) - len(se)  # SE's own: inside
    residual = sum(getattr(m, "has_residual", False) for m in model.modules())
    counted = Counter(k.kind for k in ks)
    assert counted["conv"] == convs - 2 * len(se)
    assert counted["se"] == len(se) and counted["act"] == silu
    assert sum(k.add for k in ks) == residual
    assert counted["pool"] == counted["linear"] == 1
    assert sum(k.macs for k in ks) == pytest.approx(sepconv.analyze(model, (1, 3, 128, 128)).macs)


def test_an_op_without_a_kernel_is_an_error() -> None:
    class Cumulative(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)

    model = nn.Sequential(ConvNormAct(3, 8, 3), Cumulative())
    with pytest.raises(
        UnpredictableKernelError, match=r"op `cumsum` in layer `1` \(input 1x8x8x8\)"
    ):
        extract_kernels(model, (1, 3, 8, 8))
    unfolded = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8))
    with pytest.raises(UnpredictableKernelError, match="BatchNorm that does not follow a conv"):
        extract_kernels(unfolded, (1, 3, 8, 8))


def _ops(model: object) -> Counter[str]:
    shape_ops = {"Reshape", "Gather", "Flatten", "Shape", "Concat", "Squeeze", "Unsqueeze"}
    return Counter(n.op_type for n in model.graph.node if n.op_type not in shape_ops)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_kernel_graphs_are_the_nodes_the_exporter_writes(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from sepconv.deploy import export_onnx

    net = nn.Sequential(
        ConvNormAct(3, 16, 3, stride=2, act=nn.ReLU6),
        MBConv(16, 16, kernel_size=5),
        InvertedResidual(
            16,
            24,
            stride=2,
            expand_ratio=3,
            act=nn.Hardswish,
            se_ratio=0.25,
            se_style=SE_MOBILENET_V3,
        ),
        ConvNeXtBlock(24),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 10),
    ).eval()
    export_onnx(
        net, tmp_path / "net.onnx", input_size=(3, 32, 32), dynamic_batch=False, check_batches=(1,)
    )
    exported = _ops(onnx.load(tmp_path / "net.onnx"))
    ours: Counter[str] = Counter()
    for kernel in extract_kernels(net, (1, 3, 32, 32)):
        ours += _ops(kernel_graph([kernel], sandwich=False)[0])
    assert ours == exported


def test_a_sandwich_alone_is_its_two_convs_one_after_the_other() -> None:
    pytest.importorskip("onnx")
    model, shapes = sandwich_graph((1, 24, 7, 5))
    first, last = model.graph.node
    assert (first.op_type, last.op_type) == ("Conv", "Conv")
    assert last.input[0] == first.output[0] and first.input[0] == model.graph.input[0].name
    assert last.output[0] == model.graph.output[0].name and shapes == [(1, 24, 7, 5)]
    used = {name for node in model.graph.node for name in node.input}
    assert {init.name for init in model.graph.initializer} <= used
    assert len(model.graph.initializer) == 4  # each conv's weight and bias, nothing else
