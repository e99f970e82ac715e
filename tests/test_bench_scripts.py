"""The benchmark scripts' smoke modes, run on the CPU: every step of their path, at tiny sizes.

``scripts/gpu-check`` runs the two GPU scripts on a GPU; here they run with ``--device cpu
--smoke`` so that a broken script is found before a GPU is. The CPU inference benchmark runs
its ``--smoke`` mode with ``--reruns``. Nothing about speed is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, out: Path, *extra: str) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / name), "--device", "cpu", "--smoke"]
    result = subprocess.run(
        [*command, "--out", str(out), *extra], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]


def run_cpu_smoke(name: str, folder: Path, out: str) -> dict:
    """Run a CPU benchmark's ``--smoke`` mode writing ``folder/out.{json,md}``; its JSON."""
    command = [sys.executable, str(ROOT / "benchmarks" / name), "--smoke"]
    result = subprocess.run(
        [*command, "--results-dir", str(folder), "--out", out],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((folder / f"{out}.json").read_text())


@pytest.mark.slow
def test_gpu_inference_smoke_on_the_cpu(tmp_path: Path) -> None:
    run_script("gpu_inference.py", tmp_path)
    result = json.loads((tmp_path / "gpu_inference_cpu_smoke.json").read_text())
    rows = result["results"]
    assert {(r["batch"], r["contender"]) for r in rows} == {
        (b, c)
        for b in (1, 2)
        for c in ("eager fp32", "eager AMP channels_last", "sepconv compile_for_inference")
    }
    assert all(r["images_per_s"] > 0 and r["fraction_of_peak"] > 0 for r in rows)
    picked = [r for r in rows if r["contender"].startswith("sepconv")]
    assert all(r["picked"] in r["timings_ms"] and r["why"] for r in picked)
    assert result["ceilings"]["device"] == "cpu" and result["skipped"] == []
    assert (
        "| mobilenet_v2 | 1 | eager fp32 |" in (tmp_path / "gpu_inference_cpu_smoke.md").read_text()
    )


@pytest.mark.slow
def test_train_throughput_smoke_on_the_cpu(tmp_path: Path) -> None:
    run_script("train_throughput.py", tmp_path, "--threads", "1")
    result = json.loads((tmp_path / "train_throughput_cpu_smoke.json").read_text())
    workloads = result["results"]
    synthetic = next(v for k, v in workloads.items() if "synthetic" in k)
    assert [row["contender"] for row in synthetic] == [
        "plain PyTorch loop (NCHW)",
        "sepconv Trainer, NCHW",
        "sepconv Trainer, channels_last",
    ]
    assert synthetic[0]["ratio_to_plain"] == 1.0
    assert all(
        row["median_images_per_s"] > 0
        for rows in workloads.values()
        if isinstance(rows, list)
        for row in rows
    )


@pytest.mark.slow
def test_inference_reruns_in_fresh_processes(tmp_path: Path) -> None:
    # One model: every row (int8 too) in two fresh processes takes a few minutes already.
    command = [sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--smoke"]
    command += ["--models", "mobilenet_v2", "--twins"]
    result = subprocess.run(
        [*command, "--reruns", "2", "--results-dir", str(tmp_path), "--out", "inf"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("in a fresh process") == 2
    data = json.loads((tmp_path / "inf.json").read_text())
    reruns = data["reruns"]
    assert reruns["count"] == 2 and len(reruns["runs"]) == 2
    assert data["models"] == reruns["runs"][-1]["models"]  # the single-run tables: the last's
    assert "--reruns" not in reruns["runs"][0]["command"]
    assert [r["model"] for r in data["models"]] == ["mobilenet_v2"]
    model = "mobilenet_v2"
    fp32 = reruns["ratios"][model]["sepconv compile_for_inference"]
    # Recomputed from each rerun's own medians: sepconv fp32 over the best plain fp32 runtime.
    expected = []
    for run in reruns["runs"]:
        rows = next(r for r in run["models"] if r["model"] == model)["rows"]
        plain = min(rows[r]["median_ms"] for r in ("ONNX Runtime (plain)", "OpenVINO (plain, f32)"))
        expected.append(rows["sepconv compile_for_inference"]["median_ms"] / plain)
    assert fp32["per_run"] == pytest.approx(expected, rel=1e-12)
    assert fp32["median"] == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert fp32["worst"] == max(expected)
    assert len(fp32["backends"]) == 2
    # The twin control: the faster plain runtime's second session over that runtime.
    twin = reruns["ratios"][model]["twin control"]
    names = {"ONNX Runtime (plain)": "onnxruntime", "OpenVINO (plain, f32)": "openvino"}
    expected, faster = [], []
    for run in reruns["runs"]:
        rows = next(r for r in run["models"] if r["model"] == model)["rows"]
        best = min(names, key=lambda r: rows[r]["median_ms"])
        twin_row = best.replace(")", ", twin)")
        expected.append(rows[twin_row]["median_ms"] / rows[best]["median_ms"])
        faster.append(names[best])
    assert twin["per_run"] == pytest.approx(expected, rel=1e-12)
    assert twin["backends"] == faster and twin["worst"] == max(expected)
    int8 = reruns["ratios"][model]["int8 OpenVINO"]
    assert len(int8["per_run"]) == 2 and int8["worst"] == max(int8["per_run"])
    text = (tmp_path / "inf.md").read_text()
    assert "## Over 2 reruns, each in a fresh process" in text
    assert "| mobilenet_v2 | sepconv compile_for_inference | best fp32 runtime |" in text
    assert "| mobilenet_v2 | twin control | best fp32 runtime |" in text


@pytest.mark.slow
def test_choice_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("choice.py", tmp_path, "ch")
    assert data["input_shape"] == [1, 3, 64, 64] and data["builds"] == 2
    for model in data["models"]:
        reference = model["reference_ms"]
        assert model["fastest"] == min(reference, key=reference.__getitem__)
        assert set(model["lengths"]) == {"5 rounds", "20 rounds"}
        for length, stats in model["lengths"].items():
            races = [r for r in model["races"] if r["length"] == length]
            assert stats["races"] == len(races) == 2
            assert sum(stats["chosen"].values()) == 2
            # Every race's winner is the candidate with the lowest median it measured.
            for race in races:
                assert race["chosen"] == min(race["medians_ms"], key=race["medians_ms"].get)
            assert 0 <= stats["within_tolerance"] <= 2


@pytest.mark.slow
def test_runtime_config_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("runtime_config.py", tmp_path, "rc")
    assert data["input_shape"] == [1, 3, 64, 64]
    assert [m["model"] for m in data["models"]] == ["mobilenet_v1_025", "mobilenet_v2_050"]
    for model in data["models"]:
        rows = {(r["runtime"], r["config"]): r for r in model["rows"]}
        assert {("onnxruntime", "sepconv"), ("openvino", "sepconv")} <= set(rows)
        for default in (rows[("onnxruntime", "default")], rows[("openvino", "default f32")]):
            assert default["ratio_to_default"] == 1.0
        for row in rows.values():
            # Every row runs the same BN-folded file: the same function as the PyTorch model.
            assert row["max_rel_error"] < 1e-3 and row["median_ms"] > 0
            timed = rows[tuple(row["timed_as"].split(" / "))]  # type: ignore[index]
            assert row["median_ms"] == timed["median_ms"]
    assert "compiled to the same properties" in (tmp_path / "rc.md").read_text()


@pytest.mark.slow
def test_precision_auto_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("precision_auto.py", tmp_path, "pa")
    # The smoke model was trained at batch 32: measured there and at batch 1.
    assert [r["batch_size"] for r in data["results"]] == [32, 1]
    for r in data["results"]:
        rows = r["rows"]
        best = min(rows[p]["median_ms"] for p in ("ONNX Runtime (plain)", "OpenVINO (plain, f32)"))
        for row in rows.values():
            assert row["speedup_vs_best_plain_fp32"] == pytest.approx(best / row["median_ms"])
            assert row["test"]["samples"] == r["test_images"] == 256
            assert 0.0 <= row["test"]["agreement"] <= 1.0
        # sepconv fp32 and the plain fp32 runtimes compute the same function.
        assert rows["sepconv fp32"]["test"]["agreement"] >= 0.99
        auto = r["chosen"]["sepconv auto"]
        candidates = auto["candidates"]
        chosen = candidates[f"{auto['backend']}/{auto['precision']}"]
        assert chosen["kept"] and auto["calibration_agreement"] == chosen["agreement"]
        # Judged on the calibration images int8 was not calibrated on.
        held_out = r["calibration_images"] - min(256, r["calibration_images"] // 2)
        assert chosen["samples"] == r["judged_images"] == held_out
        # Kept: fp32, or a reduced precision that met the agreement bar on the calibration set.
        for c in candidates.values():
            if c["kept"] and c["precision"] != "fp32":
                assert c["agreement"] >= data["min_agreement"]
        # The chosen candidate is the fastest kept one.
        assert chosen["median_ms"] == min(c["median_ms"] for c in candidates.values() if c["kept"])
    text = (tmp_path / "pa.md").read_text()
    assert "## sepconv auto's candidates" in text and "(target >= 1.3x" in text


@pytest.mark.slow
def test_int8_recipes_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("int8_recipes.py", tmp_path, "ir")
    (model,) = data["results"]
    rows = model["rows"]
    assert {"sepconv (ONNX Runtime)", "NNCF (OpenVINO)", "entropy", "classifier fp32"} <= set(rows)
    assert {"depthwise fp32 (ONNX Runtime)", "depthwise fp32 (OpenVINO)"} <= set(rows)
    # 250 calibration images: int8 ranges on 125, the agreement judged on the other 125.
    assert (model["int8_calibration_images"], model["held_out_images"]) == (125, 125)
    for row in rows.values():
        assert row["test"]["samples"] == data["test_images"] == 250
        assert 0.0 <= row["test"]["agreement"] <= 1.0
        assert 0.0 <= row["calibration_agreement"] <= 1.0
    # The script's own MinMax recipe is sepconv's quantize on the same images: the same file,
    # the same predictions, image for image.
    assert rows["MinMax"]["test"] == rows["sepconv (ONNX Runtime)"]["test"]
    assert (
        rows["MinMax"]["calibration_agreement"]
        == (rows["sepconv (ONNX Runtime)"]["calibration_agreement"])
    )
    best = max(rows, key=lambda name: rows[name]["test"]["agreement"])
    assert f"best recipe {best}," in (tmp_path / "ir.md").read_text()


def test_int8_recipes_entropy_ranges_clip_what_minmax_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entropy recipe's ranges are its own: inside MinMax's, and narrower where one image is
    an outlier (with ONNX Runtime's default 128 bins they would be MinMax's exactly)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from int8_recipes import entropy_cache, reader

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()).eval()
    images = torch.randn(250, 1, 12, 12)
    images[0] *= 50.0
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model, (images[:1],), str(path), input_names=["input"],
        dynamic_axes={"input": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    minmax = quantization.create_calibrator(
        path, augmented_model_path=str(tmp_path / "minmax.augmented.onnx")
    )
    minmax.collect_data(reader(images))
    full = minmax.compute_data()
    entropy = quantization.load_tensors_data(entropy_cache(path, images, tmp_path))
    narrower = 0
    for name, ranges in entropy.data.items():
        low, high = (float(v.item()) for v in ranges.range_value)
        full_low, full_high = (float(v.item()) for v in full.data[name].range_value)
        assert full_low <= low <= high <= full_high, name
        narrower += (high - low) < 0.5 * (full_high - full_low)
    assert narrower >= 1
