"""``compare_conv`` and the ``sepconv profile`` / ``sepconv compare`` commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sepconv import analyze, compare_conv
from sepconv.cli import main


def reference_macs(conv: nn.Conv2d, height: int, width: int) -> int:
    with FlopCounterMode(display=False) as counter:
        conv(torch.empty(1, conv.in_channels, height, width, device="meta"))
    return counter.get_total_flops() // 2


def meta_conv(c_in: int, c_out: int, k: int, groups: int = 1, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False, device="meta")


def test_64_to_128_at_56_matches_issue_figures() -> None:
    result = compare_conv(64, 128, 3, 56)
    millions = {r.label: round(r.macs / 1e6, 1) for r in result.rows}
    assert millions["standard"] == 231.2 and millions["separable"] == 27.5
    assert millions["depthwise"] == 1.8 and millions["pointwise"] == 25.7
    assert f"{result.reduction:.1f}" == "8.4"
    assert result.mac_ratio == pytest.approx(result.closed_form, rel=1e-12)
    # Not the 256-channel figures (1,849.7M vs 226.5M) a widely read tutorial prints here.
    assert result.row("standard").macs != 1_849_688_064


def test_256_to_256_at_56() -> None:
    result = compare_conv(256, 256, 3, 56)
    assert round(result.row("standard").macs / 1e9, 2) == 1.85
    assert round(result.row("separable").macs / 1e6, 1) == 212.7


@pytest.mark.parametrize("groups", [1, 2, 4, 64])
def test_grouped_counts_match_real_convs(groups: int) -> None:
    result = compare_conv(64, 128, 3, 28, groups=[groups])
    row = result.row(f"grouped g={groups}")
    conv = meta_conv(64, 128, 3, groups)
    assert row.macs == reference_macs(conv, 28, 28)
    assert row.params == conv.weight.numel()
    assert row.kind == analyze(conv, (1, 64, 28, 28)).rows[0].kind
    expected_kind = {1: "standard_conv", 64: "depthwise_conv"}.get(groups, "grouped_conv")
    assert row.kind == expected_kind


def test_separable_parts_match_real_convs_with_stride() -> None:
    result = compare_conv(32, 48, 5, 30, 20, stride=2, groups=[])
    assert result.row("standard").macs == reference_macs(meta_conv(32, 48, 5, 1, 2), 30, 20)
    assert result.row("depthwise").macs == reference_macs(meta_conv(32, 32, 5, 32, 2), 30, 20)
    assert result.row("pointwise").macs == reference_macs(meta_conv(32, 48, 1), 15, 10)


@pytest.mark.parametrize(
    ("k", "stride", "height", "width"),
    [(4, 1, 10, 9), (3, 2, 29, 30), (5, 2, 15, 16), (2, 2, 9, 9)],
    ids=["even-kernel", "odd-height-stride-2", "odd-and-even-k5", "k2-stride-2"],
)
def test_sizes_where_a_shortcut_for_the_output_size_would_be_wrong(
    k: int, stride: int, height: int, width: int
) -> None:
    # An even kernel under "same" padding (K - 1) // 2 loses K - 1 - 2 pad positions, and an odd
    # side over stride 2 rounds up: H_out is (H + 2 pad - K) // s + 1, not H // s.
    result = compare_conv(12, 20, k, height, width, stride=stride, groups=[4])
    convs = {
        "standard": meta_conv(12, 20, k, 1, stride),
        "grouped g=4": meta_conv(12, 20, k, 4, stride),
        "depthwise": meta_conv(12, 12, k, 12, stride),
    }
    with torch.no_grad():
        h_out, w_out = convs["standard"](torch.empty(1, 12, height, width, device="meta")).shape[2:]
    convs["pointwise"] = meta_conv(12, 20, 1)
    for label, conv in convs.items():
        size = (height, width) if label != "pointwise" else (h_out, w_out)
        row = result.row(label)
        assert row.macs == reference_macs(conv, *size), label
        # The bytes too: the pointwise conv reads the depthwise output, at the strided size.
        [counted] = analyze(conv, (1, 12, *size)).rows
        assert row.bytes_moved == counted.bytes_moved, label


def test_arithmetic_intensity_depthwise_near_2_standard_in_hundreds() -> None:
    for c_in, c_out in [(64, 128), (256, 256)]:
        result = compare_conv(c_in, c_out, 3, 56)
        # Depthwise: 2*9 FLOPs per output element over 4 B read + 4 B written -> 2.25.
        assert 2.0 <= result.row("depthwise").intensity < 2.5
        assert 100 <= result.row("standard").intensity < 1000
    fp16 = compare_conv(64, 128, dtype=torch.float16).row("depthwise").intensity
    assert fp16 == pytest.approx(2 * compare_conv(64, 128).row("depthwise").intensity)


@given(c_in=st.integers(1, 512), c_out=st.integers(1, 512), k=st.sampled_from([1, 3, 5, 7]))
def test_separable_ratio_is_closed_form(c_in: int, c_out: int, k: int) -> None:
    result = compare_conv(c_in, c_out, k, 14, groups=[])
    assert result.mac_ratio == pytest.approx(1 / c_out + 1 / k**2, rel=1e-12)
    assert result.param_ratio == pytest.approx(result.closed_form, rel=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"argument `groups`.*out_channels=128, received 3"):
        compare_conv(64, 128, groups=[3])
    with pytest.raises(ValueError, match=r"argument `in_channels`: .* received 0"):
        compare_conv(0, 128)


def test_cli_compare_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--in", "64", "--out", "128", "--size", "56"]) == 0
    table = capsys.readouterr().out
    assert all(s in table for s in ("231.2M", "27.5M", "1.8M", "25.7M", "8.4x fewer", "1 MAC"))
    assert main(["compare", "--in", "256", "--out", "256", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in data["rows"]][-1] == "separable"
    assert data["rows"][0]["macs"] == 1_849_688_064 and data["conventions"]


def test_cli_compare_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--in", "8", "--out", "8", "--size", "7y7"]) == 2
    assert "`--size`" in capsys.readouterr().err


def test_cli_profile_registry_model_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "mobilenet_v1_025", "--input-size", "64", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [1, 3, 64, 64] and data["totals"]["macs"] > 0


def test_cli_profile_module_attr_table_and_csv_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = "torchvision.models:mobilenet_v3_small"
    assert main(["profile", spec, "--input-size", "3x64x64"]) == 0
    out = capsys.readouterr().out
    assert "depthwise_conv" in out and "MACs (conv+linear)" in out and "1 MAC" in out
    target = tmp_path / "cost.csv"
    argv = ["profile", spec, "--input-size", "1,3,64,64", "--format", "csv", "-o", str(target)]
    assert main(argv) == 0
    lines = target.read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert rows[0]["kind"] == "standard_conv" and rows[0]["input_shapes"] == "1x3x64x64"
    assert [p.name for p in tmp_path.iterdir()] == ["cost.csv"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "mobilenet_v1_025", "--input-size", "3x64"], "`--input-size`"),
        (["profile", "no_such_module_xyz:net"], "cannot import module 'no_such_module_xyz'"),
        (["profile", "torch.nn:NoSuchNet"], "has no attribute 'NoSuchNet'"),
        (["profile", "math:pi"], "nn.Module or a callable"),
        (["profile", "mobilenet_v1_025", "--input-size", "1x1x64x64"], "failed to run"),
    ],
)
def test_cli_profile_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
