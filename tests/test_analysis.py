"""``sepconv.analyze``: counts checked against FlopCounterMode and published figures."""

from __future__ import annotations

import csv
import json
import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import sepconv
from sepconv.analysis import CONVENTIONS, analyze
from sepconv.analysis.counting import conv_kind, op_cost

# Analysis runs on shapes alone, so models are built on the meta device: no weights are
# initialised and no arithmetic is done, for the analyzer and the reference alike.
META = torch.device("meta")


def flop_counter_macs(model: nn.Module, size: tuple[int, ...]) -> int:
    """The independent reference: PyTorch's own FLOP counter, halved."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(size, device=device))
    return counter.get_total_flops() // 2


def build_meta(builder, **kwargs) -> nn.Module:
    with META:
        return builder(**kwargs)


TORCHVISION = {
    "mobilenet_v2": (torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights),
    "efficientnet_b0": (
        torchvision.models.efficientnet_b0,
        torchvision.models.EfficientNet_B0_Weights,
    ),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights),
    "vgg16": (torchvision.models.vgg16, torchvision.models.VGG16_Weights),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_headline_macs_match_flop_counter_and_published(name: str) -> None:
    builder, weights = TORCHVISION[name]
    model = build_meta(builder)
    report = analyze(model)
    assert report.macs == flop_counter_macs(model, (1, 3, 224, 224))
    # torchvision publishes GMACs as `_ops` in each weight entry's metadata (the docs' "GFLOPS").
    assert round(report.macs / 1e9, 3) == weights.IMAGENET1K_V1.meta["_ops"]
    assert report.total_params == weights.IMAGENET1K_V1.meta["num_params"]
    assert report.unknown_ops == {} and report.uncounted_params == {}


@pytest.mark.parametrize("name", sepconv.list_models())
def test_registry_headline_macs_match_flop_counter(name: str) -> None:
    # Real CPU tensors, allocated but not initialised: the reference pass at 64x64 is then
    # cheaper than PyTorch's Python meta kernels, and the values do not enter any count.
    model = build_meta(sepconv.create_model, name=name).to_empty(device="cpu")
    # A non-224 size on purpose: the counts must hold at any resolution.
    report = analyze(model, (1, 3, 64, 64))
    assert report.macs == flop_counter_macs(model, (1, 3, 64, 64))
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in report.rows) == report.total_params
    assert report.unknown_ops == {} and report.uncounted_params == {}


# (name, MACs at 224 rounded as the figure is quoted, divisor). Sources: Howard et al.,
# arXiv:1704.04861 Table 8, 1.0 MobileNet-224: 569M mult-adds; Sandler et al.,
# arXiv:1801.04381 Table 4: 300M; Tan & Le, arXiv:1905.11946 Table 2: 0.39B; torchvision
# weight metadata `_ops` for ResNet-50 (4.089) and VGG-16 (15.47).
PUBLISHED = [
    ("mobilenet_v1", 568.7, 1e6),
    ("mobilenet_v2", 300.8, 1e6),
    ("efficientnet_b0", 385.8, 1e6),
    ("resnet50", 4.089, 1e9),
    ("vgg16", 15.47, 1e9),
]


@pytest.mark.parametrize(("name", "expected", "unit"), PUBLISHED)
def test_registry_reproduces_published_macs(name: str, expected: float, unit: float) -> None:
    report = analyze(build_meta(sepconv.create_model, name=name))
    digits = len(str(expected).split(".")[1])
    assert round(report.macs / unit, digits) == expected


def test_mobilenet_v1_shares_match_paper_table_2() -> None:
    # Howard et al., arXiv:1704.04861 Table 2 (% of mult-adds, % of parameters): Conv 1x1
    # 94.86 / 74.59, Conv DW 3x3 3.06 / 1.06, FC 0.18 / 24.33. (Its "Conv 3x3 1.19" row is
    # a transposition of 1.91: the four rows must sum to 100.) The paper's parameter shares
    # leave out BatchNorm, hence the looser parameter tolerance.
    kinds = analyze(build_meta(sepconv.create_model, name="mobilenet_v1")).by_kind()
    for kind, macs, params in [
        ("pointwise_conv", 94.86, 74.59),
        ("depthwise_conv", 3.06, 1.06),
        ("linear", 0.18, 24.33),
        ("standard_conv", 1.91, 0.02),
    ]:
        assert 100 * (kinds[kind].macs_share or 0) == pytest.approx(macs, abs=0.01)
        assert 100 * kinds[kind].params_share == pytest.approx(params, abs=0.5)


@pytest.mark.parametrize(
    ("in_channels", "groups", "kernel", "kind"),
    [
        (64, 1, (3, 3), "standard_conv"),
        (64, 1, (1, 1), "pointwise_conv"),
        (64, 64, (3, 3), "depthwise_conv"),
        (64, 4, (3, 3), "grouped_conv"),
        (64, 4, (1, 1), "grouped_conv"),
        (1, 1, (3, 3), "standard_conv"),
        (1, 1, (1, 1), "pointwise_conv"),
    ],
)
def test_conv_kind(in_channels: int, groups: int, kernel: tuple[int, int], kind: str) -> None:
    assert conv_kind(in_channels, groups, kernel) == kind


@pytest.mark.parametrize(
    ("pool", "size"),
    [
        (nn.MaxPool1d(3, stride=2), (2, 4, 11)),  # 3 per output, not 3^2
        (nn.AvgPool2d(3, stride=2, padding=1), (1, 2, 9, 9)),  # 3^2, not 3 x 2 dims
        (nn.MaxPool2d((2, 3)), (1, 2, 8, 9)),  # a 2x3 window: 6
        (nn.AvgPool3d(3, stride=1), (1, 2, 4, 5, 6)),  # 3^3
    ],
    ids=["max1d-3", "avg2d-3", "max2d-2x3", "avg3d-3"],
)
def test_windowed_pooling_costs_one_mac_per_window_element(pool: nn.Module, size: tuple) -> None:
    with torch.no_grad():
        outputs = pool(torch.zeros(size)).numel()
    spatial = len(size) - 2
    kernel = pool.kernel_size
    window = kernel**spatial if isinstance(kernel, int) else int(torch.tensor(kernel).prod())
    [row] = analyze(pool, size).rows
    assert (row.kind, row.macs) == ("pooling", outputs * window)


class SmallOps(nn.Module):
    """Dense algebra whose sizes all differ, so that no dimension can stand in for another:
    addmm/matmul/bmm of (6 x 4) @ (4 x 5); attention with L=3 queries, S=7 keys, E=4, E_v=6;
    a strided, grouped transposed conv."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 5))
        self.bias = nn.Parameter(torch.zeros(5))
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (6, 4, 1, 1)
        rows = x.flatten(1)  # (6, 4)
        dense = torch.addmm(self.bias, rows, self.weight) + rows.matmul(self.weight)
        dense = dense + torch.bmm(rows[None], self.weight[None])[0]  # (6, 5)
        # (batch, heads, L, E), (batch, heads, S, E), (batch, heads, S, E_v)
        q, k, v = (x.new_zeros(2, 2, *size) for size in ((3, 4), (7, 4), (7, 6)))
        attended = F.scaled_dot_product_attention(q, k, v)  # (2, 2, 3, 6)
        return self.up(x.expand(6, 4, 5, 3)).sum() + attended.sum() + dense.sum()


def test_dense_algebra_and_transposed_convs_match_flop_counter() -> None:
    model = SmallOps()
    report = analyze(model, (6, 4, 1, 1))
    by_op = {r.op: r for r in report.rows if r.kind in ("linear", "grouped_conv")}
    assert report.macs == flop_counter_macs(model, (6, 4, 1, 1))
    assert by_op["addmm"].macs == by_op["matmul"].macs == by_op["bmm"].macs == 6 * 5 * 4
    assert by_op["scaled_dot_product_attention"].macs == 2 * 2 * 3 * 7 * (4 + 6)
    # Every input element of the transposed conv reaches C_out/g x 3 x 3 outputs.
    assert by_op["conv_transpose2d"].macs == 6 * 4 * 5 * 3 * (3 * 3 * 3)
    assert by_op["conv_transpose2d"].kind == "grouped_conv"


@pytest.mark.parametrize(
    ("weight_shape", "groups", "kind"),
    [((8, 2, 3, 3), 4, "grouped_conv"), ((4, 8, 1, 1), 1, "pointwise_conv")],
)
def test_a_convs_kind_reads_its_channels_with_or_without_a_batch(
    weight_shape: tuple[int, ...], groups: int, kind: str
) -> None:
    # 8 channels of a 3x6 image: unbatched, dim 1 is the height (3), not the channels.
    weight = torch.zeros(weight_shape)
    for x in (torch.zeros(2, 8, 3, 6), torch.zeros(8, 3, 6)):
        out = F.conv2d(x, weight, groups=groups)
        expected = (kind, out.numel() * math.prod(weight_shape[1:]))
        assert op_cost("conv2d", (x, weight), {"groups": groups}, [out]) == expected


def test_a_transposed_convs_kind_reads_its_groups() -> None:
    depthwise_up = nn.ConvTranspose2d(8, 8, 3, groups=8)
    assert analyze(depthwise_up, (1, 8, 5, 6)).rows[0].kind == "depthwise_conv"


class Gated(nn.Module):
    """User code: functional ops, a residual, a weight used through a view, an unknown op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.scale = nn.Parameter(torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) * self.scale.view(1, -1, 1, 1)  # (N, 8, H, W)
        return torch.cumsum(x + torch.sigmoid(y), dim=1)


def test_custom_module_functional_ops_and_unknown_op_listed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 1), Gated())
    report = analyze(model, (2, 3, 10, 12))
    ops = [(r.name, r.op, r.kind) for r in report.rows]
    assert ops == [
        ("0", "conv2d", "pointwise_conv"),
        ("1.conv", "conv2d", "depthwise_conv"),
        ("1", "mul", "elementwise"),
        ("1", "sigmoid", "activation"),
        ("1", "add", "elementwise"),
        ("1", "cumsum", "other"),
    ]
    # The gate's scale reaches `mul` through a view and is still counted there.
    assert report.rows[2].params == 8 and report.uncounted_params == {}
    assert report.unknown_ops == {"cumsum": 1} and not report.rows[-1].known
    assert report.macs == 2 * 10 * 12 * (3 * 8 + 8 * 9)
    assert report.total_params == 3 * 8 + 8 + 8 * 9 + 8
    for text in (report.to_json(), report.to_csv(), report.to_markdown()):
        assert "UNKNOWN" in text or '"cumsum": 1' in text


def test_timm_model_with_layer_scale_matches_flop_counter() -> None:
    model = build_meta(timm.create_model, model_name="convnext_atto")
    report = analyze(model, (1, 3, 64, 64))
    assert report.macs == flop_counter_macs(model, (1, 3, 64, 64))
    # ConvNeXt's layer-scale gamma is read through a reshape; it must not go missing.
    assert report.uncounted_params == {} and report.unknown_ops == {}


def test_residual_adds_and_se_gates_are_rows_of_their_block() -> None:
    rows = analyze(build_meta(torchvision.models.efficientnet_b0)).rows
    gates = [r for r in rows if r.op == "mul"]
    assert len(gates) == 16 and all(r.module_type == "SqueezeExcitation" for r in gates)
    adds = [r for r in rows if r.op == "add"]
    assert len(adds) == 9 and all(r.module_type == "MBConv" for r in adds)
    assert all(r.kind == "elementwise" for r in adds + gates)
    assert all(r.macs == torch.Size(r.output_shapes[0]).numel() for r in adds + gates)


class NeedsData(nn.Module):
    """Data-dependent control flow: cannot run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.abs().sum().item() > 0 else x


def test_real_model_is_run_for_real_when_needed_and_left_untouched() -> None:
    model = nn.Sequential(NeedsData(), nn.BatchNorm2d(4))
    model.train()
    model[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = analyze(model, (1, 3, 8, 8))
    assert report.macs == 4 * 3 * 9 * 6 * 6
    assert model.training and not model[1].training and model[0].training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)


def test_failing_model_names_layer_and_shapes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(100, 10))
    model.train()
    with pytest.raises(ValueError, match=r"input_size \(1, 3, 32, 32\).*layer `2` \(Linear\) "
                       r"received input 1x7200.*op `linear`"):  # fmt: skip
        analyze(model, (1, 3, 32, 32))
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("bad", [(), (1, 3, 0, 4), "1x3x8x8", (1, 3, 8.0, 8), None])
def test_bad_input_size(bad: object) -> None:
    with pytest.raises(ValueError, match=r"argument `input_size`.*received"):
        analyze(nn.Conv2d(3, 3, 1), bad)  # type: ignore[arg-type]


def test_bad_model_and_dtype() -> None:
    with pytest.raises(TypeError, match=r"argument `model`.*received function"):
        analyze(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"argument `dtype`.*received 'float16'"):
        analyze(nn.Conv2d(3, 3, 1), dtype="float16")  # type: ignore[arg-type]


def test_bytes_follow_dtype_and_intensity_is_flops_per_byte() -> None:
    model = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    fp32 = analyze(model, (1, 16, 20, 20)).rows[0]
    fp16 = analyze(model, (1, 16, 20, 20), dtype=torch.float16).rows[0]
    assert fp32.weight_bytes == 16 * 9 * 4 and fp32.read_bytes == fp32.write_bytes == 6400 * 4
    assert fp16.bytes_moved * 2 == fp32.bytes_moved
    assert fp32.intensity == pytest.approx(2 * fp32.macs / fp32.bytes_moved)


def test_outputs_state_conventions_and_parse() -> None:
    report = analyze(build_meta(torchvision.models.mobilenet_v2), (1, 3, 96, 96))
    data = json.loads(report.to_json())
    assert data["conventions"] == list(CONVENTIONS)
    assert data["totals"]["macs"] == report.macs and len(data["rows"]) == len(report.rows)
    assert set(data["by_kind"]) >= {"depthwise_conv", "pointwise_conv", "elementwise"}
    text = report.to_csv()
    assert all(f"# {c}" in text for c in CONVENTIONS)
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert len(rows) == len(report.rows) and int(rows[0]["macs"]) == report.rows[0].macs
    assert all(c in report.to_markdown() for c in CONVENTIONS)
