"""Latency sweeps, result files, plots and the ``sepconv bench`` command; no timing asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sepconv.bench.latency import benchmark, measure_latency
from sepconv.bench.per_layer import per_layer_latency
from sepconv.bench.plots import plot_latency_vs_macs, plot_roofline
from sepconv.bench.roofline import Ceilings
from sepconv.cli import main
from sepconv.utils.files import write_atomic, write_json


def tiny() -> nn.Module:
    """A small separable model for ``module:attr`` loading."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1)
    )


def test_sweep_covers_the_grid_in_order_and_leaves_the_model_alone() -> None:
    model = tiny()
    points = benchmark(
        model,
        batches=(1, 2),
        input_sizes=(8,),
        dtypes=("fp32", "bf16"),
        channels_last=(False, True),
        threads=1,
        warmup=1,
        repeats=3,
        progress=False,
    )
    grid = [(p.batch, p.dtype, p.channels_last) for p in points]
    assert grid == [(b, d, c) for b in (1, 2) for d in ("fp32", "bf16") for c in (False, True)]
    assert all(p.timing.threads == 1 and len(p.timing.samples_s) == 3 for p in points)
    assert points[-1].images_per_s == pytest.approx(2 / points[-1].timing.median_s)
    weight = model[0].weight
    assert model.training and weight.dtype == torch.float32 and weight.is_contiguous()


def test_unknown_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"`dtype`: expected one of \['fp32', 'bf16'\].*'fp16'"):
        measure_latency(tiny(), dtype="fp16")


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, fail)
    assert json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(FileNotFoundError, match=r"missing.*does not exist"):
        write_json(tmp_path / "missing" / "x.json", {})


def test_plots_are_written_as_png_and_svg(tmp_path: Path) -> None:
    ceilings = Ceilings(peak_gflops=50.0, bandwidth_gbs=5.0, threads=1, dtype="float32")
    report = per_layer_latency(
        tiny().eval(), torch.randn(1, 3, 16, 16), ceilings=ceilings, warmup=1, repeats=3
    )
    png = plot_roofline(report.rows, ceilings, tmp_path / "roof.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_latency_vs_macs([("a", 1e8, 2.0), ("b", 1e9, 9.0)], tmp_path / "lat.svg")
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"`path`: expected a file name ending in .png or .svg"):
        plot_latency_vs_macs([], tmp_path / "lat.pdf")


def test_cli_bench_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "mobilenet_v2", "--input-size", "32", "--batch", "1,2", "--threads", "1"]
    assert main([*argv, "--repeats", "3", "--channels-last", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(p["batch"], p["channels_last"]) for p in data["points"]] == [
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    ]
    assert data["environment"]["threads"] == 1
    assert data["macs_per_image"] > 0


def test_cli_bench_loads_module_attr(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    spec = f"{__name__}:tiny"
    assert main(["bench", spec, "--input-size", "8", "--repeats", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == spec


def test_cli_bench_twin_counts_and_times_both(tmp_path: Path) -> None:
    out = tmp_path / "twin.json"
    argv = ["bench", "mobilenet_v1_025", "--input-size", "32", "--threads", "1", "--twin"]
    assert main([*argv, "--repeats", "3", "--json", str(out)]) == 0
    twin = json.loads(out.read_text())["twin"]
    assert twin["pairs"] == 13  # MobileNetV1's 13 depthwise separable layers
    assert twin["separable_macs"] == json.loads(out.read_text())["macs_per_image"]
    # each pair's 1/C_out + 1/K^2 saving is at most 9x, and the stem and classifier are shared
    assert 1 < twin["mac_ratio"] < 9
    assert twin["standard"]["median_s"] > 0 and twin["separable"]["median_s"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "no_such_module:thing"], "`model`: expected 'module:attr'"),
        (["bench", "mobilenet_v2", "--plot", "x.png"], "`--plot`: expected it together with"),
    ],
)
def test_cli_bench_errors_are_clean(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_bench_per_layer_prints_every_conv_and_linear_layer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "mobilenet_v1_025", "--input-size", "32", "--threads", "1", "--per-layer"]
    assert main([*argv, "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    # the stem, 13 depthwise + 13 pointwise convs and the classifier, each on its own row
    blocks = [
        f"stages.{s}.{b}.conv_{k}.conv"
        for s, count in enumerate((1, 2, 2, 6, 2))
        for b in range(count)
        for k in ("dw", "pw")
    ]
    layers = ["stem.conv", *blocks, "classifier"]
    rows = [line for line in out.splitlines() if line.startswith("│ ")]
    names = [row.split("│")[1].strip() for row in rows]
    assert [n for n in names if n in layers] == layers
