"""The benchmark scripts' smoke modes, run on the CPU: every step of their path, at tiny sizes.

``scripts/gpu-check`` runs the GPU scripts on a GPU; here they run with ``--device cpu
--smoke`` so that a broken script is found before a GPU is. The CPU inference benchmark runs
its ``--smoke`` mode with ``--reruns``. Nothing about speed is asserted. The scripts reach the
library only through its public names, which is checked without running them.
"""

from __future__ import annotations

import ast
import gzip
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = ROOT / "results" / "benchmarks"


def run_gpu_script(name: str, folder: Path, *extra: str, launch: tuple[str, ...] = ()) -> None:
    """Run a GPU benchmark's ``--smoke`` mode on the CPU, writing into ``folder``."""
    command = [sys.executable, *launch, str(BENCHMARKS / name), "--device", "cpu", "--smoke"]
    result = subprocess.run(
        [*command, "--results-dir", str(folder), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


ONE_THREAD = ("--threads", "1")
"""A smoke run's threads: the suite runs two test processes on two cores, and a benchmark's
second thread would only wait for a core (ONNX Runtime's spinning on it, burning one)."""


def run_cpu_smoke(name: str, folder: Path, out: str, *extra: str) -> dict:
    """Run a CPU benchmark's ``--smoke`` mode (with ``extra`` flags) at one thread, writing
    ``folder/out.{json,md}``; its JSON."""
    command = [sys.executable, str(ROOT / "benchmarks" / name), "--smoke", *ONE_THREAD, *extra]
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
    """Every row of the plan that can run on a CPU runs, is checked and timed; the rest are
    recorded with the reason; the parts of a run merge into one file."""
    # batch 2 only: each torch.compile on a CPU takes tens of seconds (the plan for batch 1 is
    # checked without running it, below)
    run_gpu_script("gpu_inference.py", tmp_path, "--batches", "2")
    result = json.loads((tmp_path / "gpu_inference_smoke.json").read_text())
    rows = result["results"]
    assert [(r["batch"], r["contender"]) for r in rows] == [
        (2, c)
        for c in (
            "timm eager bf16", "sepconv auto bf16 (default)", "timm eager autocast-bf16",
            "timm compile default bf16", "timm compile default autocast-bf16",
        )
    ]  # fmt: skip
    for r in rows:  # one row per model, batch and contender, with the fields results promise
        assert r["check"]["passed"] and r["check"]["rel_error"] <= r["check"]["tolerance"]
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and len(r["runs"]) == 3
        assert r["p99_ms"] >= r["p50_ms"] > 0 and r["fraction_of_bandwidth"] > 0
    anchors = [r for r in rows if r["contender"] == "timm eager bf16"]
    assert all(r["drift"] > 0 for r in anchors)
    ours = [r for r in rows if r["kind"] == "sepconv"]
    assert all(r["picked"] in r["timings_ms"] and r["why"] for r in ours)
    skipped = result["skipped"]
    assert "mobilenet_v1 batch 2: timm graph bf16 (needs CUDA" in " ".join(skipped)
    assert all("(" in s for s in skipped) and len(skipped) == 6
    for facts in result["models"]["mobilenet_v1"].values():  # activations kept their scale
        assert facts["norm_output_std_min"] > 0.5 and facts["logits_std"] > 0.1
    counts = result["traffic"]["mobilenet_v1 batch 2"]
    assert counts["minimum"] < counts["folded"] < counts["unfolded"]
    text = (tmp_path / "gpu_inference_smoke.md").read_text()
    assert "| mobilenet_v1 | 2 | timm eager bf16 | ok " in text and "peer / sepconv" in text
    # two parts, merged
    shutil.copy(tmp_path / "gpu_inference_smoke.json", tmp_path / "part2.json")
    command = [sys.executable, str(BENCHMARKS / "gpu_inference_report.py")]
    command += [str(tmp_path / "gpu_inference_smoke.json"), str(tmp_path / "part2.json")]
    done = subprocess.run(
        [*command, "--results-dir", str(tmp_path), "--out", "merged"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert len(merged["results"]) == 2 * len(rows) and len(merged["parts"]) == 2


@pytest.mark.slow
def test_gpu_inference_dram_without_a_gpu_says_why(tmp_path: Path) -> None:
    run_gpu_script("gpu_inference_dram.py", tmp_path)
    result = json.loads((tmp_path / "gpu_inference_dram_smoke.json").read_text())
    assert result["measured"] == {} and len(result["skipped"]) == 2
    assert "needs a CUDA GPU and Nsight Compute" in result["skipped"][0]
    est = result["estimate_bytes"]
    assert 0 < est["minimum"] < est["folded"] < est["unfolded"]


@pytest.mark.slow
def test_train_throughput_smoke_on_the_cpu(tmp_path: Path) -> None:
    # The synthetic workload here, Fashion-MNIST's under torchrun (below).
    extra = ("--threads", "1", "--workloads", "synthetic", "--precisions", "bf16,fp16")
    run_gpu_script("train_throughput.py", tmp_path, *extra)
    result = json.loads((tmp_path / "train_throughput_cpu_smoke.json").read_text())
    rows = result["results"]
    synthetic = [r for r in rows if "synthetic" in r["workload"]]
    assert synthetic == rows
    names = ["plain loop, NCHW", "plain loop, channels_last", "timm-style step, channels_last"]
    trainer = ["sepconv Trainer, NCHW", "sepconv Trainer, channels_last"]
    assert [(r["precision"], r["contender"]) for r in synthetic] == [
        *(("bf16", n) for n in names + trainer),
        *(("fp16", n) for n in names),
    ]
    baseline = [r for r in rows if r["contender"] == "plain loop, channels_last"]
    assert all(r["ratio_to_plain_channels_last"] == 1.0 for r in baseline)
    assert all(r["median_images_per_s"] > 0 for r in rows)
    assert "TrainConfig.amp has no fp16" in " ".join(result["skipped"])
    assert result["distributed"] is None


@pytest.mark.slow
def test_train_throughput_under_torchrun_on_the_cpu(tmp_path: Path) -> None:
    """One process under torchrun joins a gloo process group (NCCL on a GPU)."""
    launch = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1")
    extra = ("--threads", "1", "--workloads", "fashion", "--precisions", "bf16")
    run_gpu_script("train_throughput.py", tmp_path, *extra, "--out", "tr", launch=launch)
    result = json.loads((tmp_path / "tr.json").read_text())
    assert result["distributed"] == {"backend": "gloo", "world_size": 1}
    assert result["command"].startswith("python -m torch.distributed.run --standalone")
    assert len(result["results"]) == 5
    assert all(
        "Fashion-MNIST" in r["workload"] and r["median_images_per_s"] > 0 for r in result["results"]
    )


def test_gpu_inference_plan_spells_what_each_row_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from gpu_inference_contenders import ANCHOR, PLAN, plan_for

    names = [c.name for c in PLAN]
    assert len(set(names)) == len(names) and ANCHOR.name == "timm eager bf16"
    for c in PLAN:
        assert c.precision in c.name and (c.mode or "") in c.name
        assert (c.kind == "graph") == c.name.startswith("timm graph ")
        assert c.name.startswith("sepconv " if c.kind == "sepconv" else "timm ")
    modes = {"default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"}
    for batch in (1, 256):
        rows = plan_for(batch)
        assert {c.mode for c in rows if c.kind == "compile"} <= modes
        assert {c.kind for c in rows} == {"eager", "graph", "compile", "sepconv"}
        assert {c.precision for c in rows if c.kind in ("eager", "graph")} == {
            "bf16", "autocast-bf16",
        }  # fmt: skip
    assert {c.mode for c in plan_for(256) if c.kind == "compile"} == modes
    assert all(c.note for c in PLAN if len(c.regimes) == 1)


def test_calibrated_norms_keep_scale_and_bound_bf16_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fresh BatchNorm statistics shrink a random network's activations; calibrated ones (with
    the shift that keeps it out of the chaotic regime) keep them, and bf16 stays within the
    check's bound."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import torch
    from gpu_inference_models import BF16_TOLERANCE, calibrate_norms, check, fp32_reference

    import sepconv

    cpu = torch.device("cpu")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    fresh = sepconv.create_model("mobilenet_v2", num_classes=10).eval()
    assert fp32_reference(fresh, x, cpu).std() < 1e-3  # collapsed
    facts = calibrate_norms(fresh, 32, cpu)
    reference = fp32_reference(fresh, x, cpu)
    assert facts["norms"] > 0 and 0.5 < facts["norm_output_std_min"] <= facts["norm_output_std_max"]
    assert reference.std() > 0.1
    with torch.no_grad():
        bf16 = fresh.to(torch.bfloat16)(x.to(torch.bfloat16))
    verdict = check(bf16, reference)
    assert verdict["passed"] and verdict["rel_error"] <= BF16_TOLERANCE


def test_ncu_csv_is_summed_per_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from gpu_inference_dram import parse_ncu_csv

    header = '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"'
    text = "\n".join([
        "==PROF== Connected to process 1",
        header,
        '"0","conv","dram__bytes_read.sum","byte","1,000"',
        '"0","conv","dram__bytes_write.sum","Kbyte","2"',
        '"1","relu","dram__bytes_read.sum","byte","500"',
        '"1","relu","sm__cycles_elapsed.avg","cycle","7"',
    ])  # fmt: skip
    assert parse_ncu_csv(text) == {"read": 1500.0, "write": 2000.0, "total": 3500.0, "kernels": 2}
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        parse_ncu_csv(header + '\n"0","k","dram__bytes_read.sum","furlong","1"')


def test_gpu_check_lists_its_parts_and_refuses_an_unknown_one() -> None:
    script = str(ROOT / "scripts" / "gpu-check")
    listed = subprocess.run(["bash", script, "--list"], capture_output=True, text=True, check=True)
    lines = listed.stdout.splitlines()
    assert len(lines) == 15 and lines[0].split()[:2] == ["1", "tests"]
    assert lines[10].split()[:2] == ["11", "train"]
    assert lines[-1].split()[:2] == ["15", "predict"]
    for model in ("mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "resnet50"):
        assert sum(f"infer-{model}-" in line for line in lines) == 2
    wrong = subprocess.run(["bash", script, "--part", "16"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "invalid value for --part" in wrong.stderr
    assert "received '16'" in wrong.stderr


@pytest.mark.slow
def test_gpu_check_part_packs_its_files_and_names_the_next(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "SEPCONV_GPU_CHECK_ALLOW_CPU": "1"}
    command = ["bash", str(ROOT / "scripts" / "gpu-check"), "--smoke", "--part", "1"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} >= {"summary.md", "gpu-check-tests.tar.gz"}
    assert len(list(tmp_path.iterdir())) <= 8
    assert "part 1 of 15: tests (smoke)" in (tmp_path / "summary.md").read_text()
    next_line = done.stdout.strip().splitlines()[-1]
    assert next_line == (
        f"next part (2 of 15): bash scripts/gpu-check --part roofline --smoke --out {tmp_path}"
    )


@pytest.mark.slow
def test_inference_reruns_in_fresh_processes(tmp_path: Path) -> None:
    # One model, the one with the smallest graph (every row exports or converts it), without
    # the torch.compile row (no ratio of the reruns is taken from it). The first of the two
    # runs is a finished one found on disk (tests/data/reruns/README.md): reused, not run.
    arguments = [
        "--smoke", "--models", "mobilenet_v1", "--self-control", "--no-compile", *ONE_THREAD
    ]  # fmt: skip
    folder = tmp_path / "inf_runs"
    folder.mkdir()
    finished = json.loads((ROOT / "tests/data/reruns/inference_smoke.json").read_text())
    (folder / "run1.json").write_text(json.dumps({**finished, "rerun_arguments": arguments}))
    command = [sys.executable, str(ROOT / "benchmarks" / "inference.py"), *arguments]
    result = subprocess.run(
        [*command, "--reruns", "2", "--results-dir", str(tmp_path), "--out", "inf"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("in a fresh process") == 1
    assert "rerun 1/2: reusing" in result.stdout
    data = json.loads((tmp_path / "inf.json").read_text())
    reruns = data["reruns"]
    assert reruns["count"] == 2 and len(reruns["runs"]) == 2
    assert data["models"] == reruns["runs"][-1]["models"]  # the single-run tables: the last's
    assert "--reruns" not in reruns["runs"][0]["command"]
    assert reruns["runs"][0]["elapsed_s"] == finished["elapsed_s"]  # the finished run, as it was
    assert [r["model"] for r in data["models"]] == ["mobilenet_v1"]
    # Each int8 row quantized in its own process: the cross row ran the same file's bytes.
    assert data["models"][0]["int8_cross_same_file"] is True
    model = "mobilenet_v1"
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
    # The self-control: the faster plain runtime's second session over that runtime.
    control = reruns["ratios"][model]["self-control"]
    names = {"ONNX Runtime (plain)": "onnxruntime", "OpenVINO (plain, f32)": "openvino"}
    expected, faster = [], []
    for run in reruns["runs"]:
        rows = next(r for r in run["models"] if r["model"] == model)["rows"]
        best = min(names, key=lambda r: rows[r]["median_ms"])
        second = best.replace(")", ", second session)")
        expected.append(rows[second]["median_ms"] / rows[best]["median_ms"])
        faster.append(names[best])
    assert control["per_run"] == pytest.approx(expected, rel=1e-12)
    assert control["backends"] == faster and control["worst"] == max(expected)
    int8 = reruns["ratios"][model]["int8 OpenVINO"]
    assert len(int8["per_run"]) == 2 and int8["worst"] == max(int8["per_run"])
    text = (tmp_path / "inf.md").read_text()
    assert "## Over 2 reruns, each in a fresh process" in text
    assert "| mobilenet_v1 | sepconv compile_for_inference | best fp32 runtime |" in text
    assert "| mobilenet_v1 | self-control | best fp32 runtime |" in text
    assert not (tmp_path / "inf_runs").exists()  # every run's data is in inf.json


def test_inference_report_reads_results_written_with_twins(tmp_path: Path) -> None:
    """Runs written before the second sessions were renamed ("twin") are reported under
    today's names, and their JSON is left as it was."""
    committed = ROOT / "results" / "benchmarks" / "inference_twins_balanced_avx2.json"
    copy = shutil.copy(committed, tmp_path / "old.json")
    before = Path(copy).read_bytes()
    command = [sys.executable, str(BENCHMARKS / "inference.py"), "--report-only"]
    result = subprocess.run(
        [*command, "--results-dir", str(tmp_path), "--out", "old"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "old.md").read_text()
    assert "| mobilenet_v1 | self-control | best fp32 runtime | 0.99 |" in text
    assert "| mobilenet_v1 | ONNX Runtime (plain, second session) | fp32 |" in text
    assert "twin control" not in text and ", twin)" not in text  # the command keeps --twins
    assert Path(copy).read_bytes() == before


@pytest.mark.slow
def test_choice_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("choice.py", tmp_path, "ch")
    assert data["input_shape"] == [1, 3, 64, 64] and data["builds"] == 1
    for model in data["models"]:
        reference = model["reference_ms"]
        assert model["fastest"] == min(reference, key=reference.__getitem__)
        assert set(model["lengths"]) == {"5 rounds", "20 rounds"}
        for length, stats in model["lengths"].items():
            races = [r for r in model["races"] if r["length"] == length]
            assert stats["races"] == len(races) == 1
            assert sum(stats["chosen"].values()) == 1
            # Every race's winner is the candidate with the lowest median it measured.
            for race in races:
                assert race["chosen"] == min(race["medians_ms"], key=race["medians_ms"].get)
            assert 0 <= stats["within_tolerance"] <= 1


@pytest.mark.slow
def test_runtime_config_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("runtime_config.py", tmp_path, "rc")
    assert data["input_shape"] == [1, 3, 64, 64]
    assert [m["model"] for m in data["models"]] == ["mobilenet_v1_025"]
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
    # One batch size: each is a whole set of builds (without --batch-sizes: the batch the model
    # was trained at, and 1).
    data = run_cpu_smoke("precision_auto.py", tmp_path, "pa", "--batch-sizes", "1")
    assert [r["batch_size"] for r in data["results"]] == [1]
    for r in data["results"]:
        rows = r["rows"]
        best = min(rows[p]["median_ms"] for p in ("ONNX Runtime (plain)", "OpenVINO (plain, f32)"))
        for row in rows.values():
            assert row["speedup_vs_best_plain_fp32"] == pytest.approx(best / row["median_ms"])
            assert row["test"]["samples"] == r["test_images"] == 64
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
    assert "## sepconv auto's candidates" in text and "sepconv auto chose" in text
    assert "target" not in text  # targets are stated in results/benchmarks/README.md


@pytest.mark.slow
def test_int8_recipes_smoke(tmp_path: Path) -> None:
    data = run_cpu_smoke("int8_recipes.py", tmp_path, "ir")
    (model,) = data["results"]
    rows = model["rows"]
    assert {"sepconv (ONNX Runtime)", "NNCF (OpenVINO)", "entropy", "classifier fp32"} <= set(rows)
    assert data["entropy_bins"] == 512
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


@pytest.mark.slow
def test_openvino_reader_smoke_compares_both_readers_on_both_files(tmp_path: Path) -> None:
    data = run_cpu_smoke("openvino_reader.py", tmp_path, "or")
    (model,) = data["results"]
    rows = {(row["file"], row["reader"]): row for row in model["rows"]}
    assert set(rows) == {(f, r) for f in ("fp32", "int8") for r in ("read_model", "convert_model")}
    # fp32: the same graph either way, so the same outputs bit for bit.
    assert rows["fp32", "read_model"]["max_abs_diff_between_readers"] == 0.0
    assert rows["fp32", "read_model"]["test_agreement"] == 1.0
    for row in rows.values():
        assert 0.0 <= row["test_agreement"] <= 1.0 and row["median_ms"] > 0
    assert all(
        row["child_cpu_s"] == 0.0 for (_, reader), row in rows.items() if reader == "read_model"
    )


@pytest.mark.slow
def test_int8_layers_smoke_quantizes_every_conv_once_window_by_window(tmp_path: Path) -> None:
    data = run_cpu_smoke("int8_layers.py", tmp_path, "il", "--window", "14")
    (model,) = data["results"]
    whole, *rest = model["rows"]
    assert whole["whole_model"] and whole["convs"] == [0, model["convs"]]
    # Last, every conv with no other op, then with each other kind MobileNetV1 has in int8.
    kinds = [row["op_type"] for row in rest if row["mode"] == "convs and"]
    assert kinds == ["", "Gemm", "ReduceMean"]  # its classifier and global pool
    rest = [row for row in rest if row["mode"] != "convs and"]
    # Each window twice: its convs alone in int8, then everything but them.
    windows = rest[0::2]
    assert [w["mode"] for w in rest] == ["only", "all but"] * len(windows)
    assert [w["convs"] for w in rest[1::2]] == [w["convs"] for w in windows]
    assert whole["median_logit_error"] >= 0 and model["median_top1_margin"] >= 0
    # The windows cut the convolutions, in graph order, into runs of at most 14, each once.
    assert [w["convs"][0] for w in windows] == list(range(0, model["convs"], 14))
    assert all(0 < b - a <= 14 and len(w["layers"]) == b - a for w in windows
               for a, b in [w["convs"]])  # fmt: skip
    layers = [name for w in windows for name in w["layers"]]
    assert layers == whole["layers"] and len(set(layers)) == model["convs"]
    # Named by the module each conv came from: the stem first, a classifier head never.
    assert layers[0] == "stem.conv" and all(name.endswith(".conv") for name in layers)
    for row in model["rows"]:
        assert row["test"]["samples"] == data["test_images"] == 25
        assert 0.0 <= row["test"]["agreement"] <= 1.0
    assert "| mobilenet_v1 | every op | 0-" in (tmp_path / "il.md").read_text()


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


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "name", "extra"),
    [
        ("settle.py", "settle_smoke", ONE_THREAD),
        ("analyze_speed.py", "analyze_speed_smoke", ONE_THREAD),
        ("model_latency.py", "model_latency_smoke", ()),
        ("separable_vs_standard.py", "separable_vs_standard_smoke", ()),
        ("data_device.py", "data_device_cpu_smoke", ("--device", "cpu")),
        ("sweep_jobs.py", "sweep_jobs_smoke", ONE_THREAD),
    ],
)
def test_smoke_writes_its_results(
    tmp_path: Path, script: str, name: str, extra: tuple[str, ...]
) -> None:
    """Without ``--out``, a smoke run writes NAME_smoke.{json,md} into ``--results-dir``,
    headed by the command that repeats it and the machine."""
    command = [sys.executable, str(BENCHMARKS / script), "--smoke", *extra]
    result = subprocess.run(
        [*command, "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["command"].startswith(f"python benchmarks/{script} --smoke")
    assert data["environment"]["cpu"] and data["elapsed_s"] > 0
    assert f"Command: `{data['command']}`" in (tmp_path / f"{name}.md").read_text()


@pytest.mark.slow
def test_convert_smoke(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "convert_fashion_mnist.py"), "--smoke"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    names = [row["model"] for row in data["rows"]]
    assert names == ["original (standard 3x3)", "decoupled rank 1", "separable twin (from scratch)"]
    assert data["rows"][1]["macs_reduction"] > 1
    assert "| decoupled rank 1 |" in (tmp_path / "results.md").read_text()


def _sepconv_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every import of sepconv in ``path`` (name None: ``import m``)."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sepconv":
            found += [(node.lineno, node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name, None)
                for alias in node.names
                if alias.name.split(".")[0] == "sepconv"
            ]
    return found


def _not_public(module: str, name: str | None) -> str | None:
    """Why ``from module import name`` reaches past sepconv's public names, or None."""
    parts = module.split(".")
    if any(part.startswith("_") for part in parts) or (name or "").startswith("_"):
        return "a private module or name"
    if name is None:
        return None
    imported = importlib.import_module(module)
    if hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}"):
        return None  # a submodule
    exported = getattr(imported, "__all__", None)
    if exported is not None and name not in exported:
        return f"not in {module}.__all__"
    # What a package exports is imported from it, not from the module behind it (the
    # `sepconv` facade aside: a name is imported from the package that defines it).
    package = importlib.import_module(module.rpartition(".")[0]) if len(parts) > 2 else None
    if package is not None and name in getattr(package, "__all__", ()):
        return f"exported by {package.__name__}: import it from there"
    return None


def test_scripts_use_only_public_names() -> None:
    """Like timm's root benchmark.py, the scripts stand behind the library: they import what a
    package exports (its ``__all__``), never a private module or name."""
    offenders = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        for line, module, name in _sepconv_imports(path):
            why = _not_public(module, name)
            if why:
                offenders.append(f"benchmarks/{path.name}:{line} {module}.{name}: {why}")
    assert not offenders, "\n".join(offenders)


def test_scripts_are_short() -> None:
    """A script past ~300 lines is doing several jobs: split it by concept."""
    long = {
        path.name: n
        for path in BENCHMARKS.glob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 320
    }
    assert not long, f"benchmark scripts over 320 lines: {long}"


def test_a_results_header_marks_noisy_timings_busy_machines_and_busy_races(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from harness import header

    from sepconv.bench import environment

    def record(iqr_ms: float, busy: str | None = None, race: float | None = 0.02) -> dict:
        rows = {"ONNX Runtime": {"median_ms": 4.0, "iqr_ms": 0.2}, "eager": {"median_ms": 10.0}}
        rows["eager"]["iqr_ms"] = iqr_ms
        return {
            "command": "python benchmarks/x.py",
            "environment": environment(2),
            "busy": busy,
            "models": [{"model": "mobilenet_v2", "rows": rows, "auto": {"race_busy_share": race}}],
        }

    quiet = header("T", record(iqr_ms=2.5))  # 25%: not more than the limit
    assert "Noisy timings" not in quiet and "Not a result" not in quiet
    noisy = header("T", record(iqr_ms=2.6))
    assert "**Noisy timings: 1 timing(s)" in noisy and "mobilenet_v2 / rows / eager" in noisy
    assert "ONNX Runtime" not in noisy.split("Noisy timings")[1]
    busy = header("T", record(iqr_ms=0.1, busy="the machine was busy"))
    assert "**Not a result: the machine was busy.**" in busy
    assert "Chosen on a busy machine" not in quiet + busy
    raced = header("T", record(iqr_ms=0.1, race=0.4))
    assert "**Chosen on a busy machine: mobilenet_v2 / auto (40%).**" in raced
    assert "Chosen on a busy machine" not in header("T", record(iqr_ms=0.1, race=None))
    # The machine line names the instruction sets reduced precision depends on.
    features = environment(2)["cpu_features"]
    if features is not None:
        assert set(features) <= {"AVX2", "AVX-512", "VNNI", "bf16", "AMX"}
        assert "has: " in quiet


def test_harness_names_and_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import argparse

    from harness import RESULTS, Run, add_output_flags, add_smoke_flag, without_options

    parser = argparse.ArgumentParser()
    add_smoke_flag(parser, "tiny")
    add_output_flags(parser)
    run = Run.start("/x/benchmarks/settle.py", parser.parse_args([]))
    assert (run.folder, run.name) == (RESULTS, "settle")
    smoke = Run.start("/x/benchmarks/settle.py", parser.parse_args(["--smoke"]))
    assert smoke.json_path == RESULTS / "settle_smoke.json"
    named = Run.start("/x/settle.py", parser.parse_args(["--smoke", "--out", "a"]), name="s")
    assert named.md_path == RESULTS / "a.md"
    argv = ["--reruns=3", "--out", "x", "--smoke", "--results-dir", "/tmp", "--rounds", "2"]
    assert without_options(argv, ("--reruns", "--out", "--results-dir")) == [
        "--smoke",
        "--rounds",
        "2",
    ]


@pytest.mark.slow
def test_fused_kernels_models_smoke_on_the_cpu_interpreter(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "fused_kernels.py"), "--part", "models"]
    result = subprocess.run(
        [*command, "--smoke", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "fused_kernels_models_smoke.json").read_text())
    rows = {row["contender"]: row for row in data["rows"]}
    assert set(rows) == {"eager", "sepconv fused"}
    # fp32 on the interpreter: the fused blocks compute what the folded model computes.
    assert rows["sepconv fused"]["rel_error_vs_fp32"] < 1e-4
    assert all(row["runs"] >= 1 and row["median_ms"] > 0 for row in rows.values())


@pytest.mark.slow
def test_host_spells_smoke_times_the_model_and_every_probe(tmp_path: Path) -> None:
    data = run_cpu_smoke("host_spells.py", tmp_path, "hs")
    steps, probes = data["steps"], data["probes"]
    assert len(steps) >= 3 and all(s["model_ms"] > 0 for s in steps)
    # One thread (the smoke's): the matmul probe runs on it; a SHA-256 probe per usable CPU.
    assert "copy 16 MiB" in probes and "1-thread matmul" in probes
    assert sum(p.startswith("SHA-256 on CPU") for p in probes) == len(os.sched_getaffinity(0))
    model_ms = np.array([s["model_ms"] for s in steps])
    spell = model_ms > 1.25 * np.percentile(model_ms, 10)
    assert data["steps_in_spells"] == int(spell.sum())
    text = (tmp_path / "hs.md").read_text()
    for probe, summary in probes.items():
        values = np.array([s[probe] for s in steps])
        assert (values > 0).all() and -1.0 <= summary["correlation"] <= 1.0
        if (~spell).any():  # the medians come from the steps the spell rule puts outside
            assert summary["median_outside_ms"] == pytest.approx(float(np.median(values[~spell])))
        assert f"| {probe} |" in text


@pytest.mark.slow
def test_alone_smoke_pairs_each_runtime_alone_with_it_shared(tmp_path: Path) -> None:
    data = run_cpu_smoke("alone.py", tmp_path, "al")
    rows = data["rows"]
    assert list(rows) == ["ONNX Runtime (plain)", "eager"] and data["processes"] == 1
    for row in rows.values():
        # One round: one turn each way, of 3 blocks, every block's time kept.
        (alone_blocks,), (shared_blocks,) = row["blocks_ms"]["alone"], row["blocks_ms"]["shared"]
        assert len(alone_blocks) == len(shared_blocks) == 3
        assert row["first"] == ["alone"] and row["repetition"] == [0]
        assert row["alone_turn_ms"] == [pytest.approx(float(np.median(alone_blocks)))]
        assert row["shared_turn_ms"] == [pytest.approx(float(np.median(shared_blocks)))]
        ratio = row["shared_ms"] / row["alone_ms"]
        assert row["ratios"] == [pytest.approx(ratio)] and row["interval"] == [ratio, ratio]
        assert row["verdict"] == "too few turns"  # one pair is no interval
    text = (tmp_path / "al.md").read_text()
    assert "| ONNX Runtime (plain) |" in text and "Fewer than 8 paired turns" in text
    assert "allocator: glibc malloc, freed memory kept" in text or "allocator: not glibc" in text


def test_alone_verdict_follows_the_interval_of_the_paired_ratios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from alone import summarise

    rng = np.random.default_rng(1)
    pairs = 60
    # The host's slow spells scale both turns of a pair: alone turns move 1.7x, and the
    # pairing still measures the 2% between the methods.
    host = rng.uniform(1.0, 1.7, size=pairs)
    labels = {
        "first": ["alone", "shared"] * (pairs // 2),
        "repetition": [i // 12 for i in range(pairs)],
    }

    def row(factor: np.ndarray | float) -> dict:
        factors = np.broadcast_to(factor, pairs)
        alone = [[4.0 * h] * 3 for h in host]
        shared = [[4.0 * h * f] * 3 for h, f in zip(host, factors, strict=True)]
        return {"blocks_ms": {"alone": alone, "shared": shared}, **labels}

    close = summarise(row(1.02))
    assert close["median_ratio"] == pytest.approx(1.02) and close["verdict"] == "agree"
    assert close["alone_spread"] > 0.2  # the noise an unpaired comparison would face
    slower = summarise(row(1.15))
    assert slower["verdict"] == "differ" and slower["interval"][0] > 1.05
    # Noisy pairs around 1.02: the interval holds their median and is much narrower than
    # their range; each order's median is reported.
    noisy = rng.lognormal(np.log(1.02), 0.08, size=pairs)
    result = summarise(row(noisy))
    low, high = result["interval"]
    assert low <= float(np.median(noisy)) <= high
    assert high - low < 0.5 * (noisy.max() - noisy.min())
    assert set(result["median_ratio_by_first"]) == {"alone", "shared"}
    # Pairs that agree within each repetition while the repetitions disagree: resampling the
    # repetitions widens the interval to cover them.
    wide = summarise(row(np.repeat([0.97, 1.0, 1.03, 1.06, 1.09], 12)))
    assert wide["interval"][0] <= 1.0 and wide["interval"][1] >= 1.06
    assert wide["verdict"] == "cannot tell"
    # Fewer than 3 repetitions: no verdict, however many pairs.
    two = summarise({**row(1.02), "repetition": [i // 30 for i in range(pairs)]})
    assert two["verdict"] == "too few turns"


@pytest.mark.slow
def test_a_worker_that_fails_to_build_stops_the_run_and_every_worker_is_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import multiprocessing

    from alone import ROWS, repetition

    settings = {"model": "no_such_model", "size": 32, "threads": 1, "repeats": 3}
    with pytest.raises(SystemExit, match=r"worker failed:[\s\S]*no_such_model"):
        repetition([ROWS[3]], settings, rounds=1)
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_predict_drift_smoke_measures_the_same_models_in_every_pass(tmp_path: Path) -> None:
    # A profile of test_predict.py's synthetic machine (recorded as this one, ONNX Runtime):
    # a real calibration cannot sample enough while the suite's other process runs.
    from test_predict import fake_calibration

    profile = tmp_path / "profile.json"
    fake_calibration(max_kernels=900, seed=7).save(profile)
    data = run_cpu_smoke("predict_drift.py", tmp_path, "pd", "--profile", str(profile))
    models, passes = data["models"], data["passes"]
    assert len(models) >= 1 and len(passes) == 2
    predicted = np.array([m["predicted_ms"] for m in models])
    first = np.array(passes[0]["measured_ms"])
    for p in passes:
        measured = np.array(p["measured_ms"])
        assert measured.shape == predicted.shape and (measured > 0).all()
        errors = predicted / measured - 1
        assert p["error"]["mean_error"] == pytest.approx(float(np.mean(errors)))
        assert p["speed_against_first"] == pytest.approx(float(np.median(first / measured)))
    assert passes[0]["speed_against_first"] == 1.0
    assert passes[1]["minutes_after_calibration"] >= passes[0]["minutes_after_calibration"] >= 0


@pytest.mark.parametrize("spread", [True, False])
def test_time_groups_spreads_each_models_rounds_over_the_run_or_keeps_a_groups_together(
    monkeypatch: pytest.MonkeyPatch, spread: bool
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import predict_validation
    from predict_validation import time_groups

    from sepconv.predict.quiet import QuietTiming

    # Each runner returns its (group, index); the timer records the order of the timings and
    # gives runner (g, i) in its k-th round g + i / 10 + k / 100 ms, so medians are known.
    order: list[tuple[int, int]] = []

    def timed(fn: Callable[[], tuple[int, int]], **_: object) -> QuietTiming:
        key = fn()
        rounds_so_far = order.count(key)
        order.append(key)
        ms = key[0] + key[1] / 10 + rounds_so_far / 100
        return QuietTiming(median_s=ms / 1e3, kept=5, disturbed=0, calls_per_block=1, busy=False)

    monkeypatch.setattr(predict_validation, "quiet_measure", timed)
    monkeypatch.setattr(predict_validation, "RUNTIME_SETTLE_S", 0.0)

    def runner(g: int, i: int) -> Callable[[object], tuple[int, int]]:
        return lambda _: (g, i)

    groups = [([runner(g, i) for i in range(3)], [None] * 3) for g in range(2)]
    readings = iter(range(100))
    tally = {"kept": 0, "disturbed": 0, "busy": 0}
    timed_groups = time_groups(groups, 3, tally, probe=lambda: float(next(readings)), spread=spread)
    # Round r of every group before round r + 1 of any, or each group's rounds together; the
    # runners of a group in another order each round (interleaved_order).
    r0, r1, r2 = ([0, 1, 2], [1, 2, 0], [2, 0, 1])
    g0 = [[(0, i) for i in r] for r in (r0, r1, r2)]
    g1 = [[(1, i) for i in r] for r in (r0, r1, r2)]
    by_round = g0[0] + g1[0] + g0[1] + g1[1] + g0[2] + g1[2]
    by_group = g0[0] + g0[1] + g0[2] + g1[0] + g1[1] + g1[2]
    assert order == (by_round if spread else by_group)
    # Each runner's median over its three rounds (its second round's time); the probe read
    # after each of a group's rounds, in the order the rounds ran.
    for g, (ms, probed) in enumerate(timed_groups):
        assert ms == pytest.approx([g + i / 10 + 0.01 for i in range(3)])
        assert probed == ([g, g + 2, g + 4] if spread else [3 * g, 3 * g + 1, 3 * g + 2])
    assert tally["kept"] == 5 * len(order)


@pytest.mark.slow
def test_predict_accuracy_smoke_reports_the_prediction_with_and_without_the_scale(
    tmp_path: Path,
) -> None:
    # A profile of test_predict.py's synthetic machine (recorded as this one, ONNX Runtime),
    # its kernel scale set to 2 so that the two predictions differ by a known factor.
    import dataclasses

    from test_predict import CALL_S, fake_calibration

    profile = tmp_path / "profile.json"
    calibrated = fake_calibration(max_kernels=900, seed=7)
    dataclasses.replace(calibrated, kernel_scale={"native": 2.0}).save(profile)
    # A second profile judged on the same measurements: the same one at its own scale of 1,
    # whose reference network was timed at half the time (a calibration at twice the speed).
    other = tmp_path / "other.json"
    speed = {**calibrated.validation["speed"], "typical_s": calibrated.reference_s / 2}
    halved = {**calibrated.validation, "speed": speed}
    dataclasses.replace(calibrated, kernel_scale={"native": 1.0}, validation=halved).save(other)
    data = run_cpu_smoke(
        "predict_accuracy.py", tmp_path, "pa", "--profiles", str(profile), "--compare", str(other)
    )
    (backend,) = data["backends"]
    rows = backend["models"]
    assert rows and all(r["measured_ms"] > 0 for r in rows)
    call_ms = 1e3 * CALL_S  # a graph runtime: one call, no module calls
    for r in rows:
        assert r["predicted_ms"] - call_ms == pytest.approx(2 * (r["kernels_alone_ms"] - call_ms))
    names = ("predicted", "rechecked", "kernels_alone", "macs_only", "roofline_only", "noise_floor")
    for name in names:
        assert 0.0 <= backend[name]["within_10pct"] <= 1.0 and backend[name]["rmspe"] >= 0
    # The profile's reference network, timed after every round of a group (here on the real
    # ONNX Runtime, against the synthetic machine's time for it): its median over the
    # calibration's is the group's speed factor, by which its predictions are scaled.
    (factor,) = backend["speed_factors"]  # one group
    assert factor > 0
    for r in rows:
        assert r["speed_factor"] == factor
        assert r["rechecked_ms"] == pytest.approx(r["predicted_ms"] * factor, rel=1e-12)
        assert r["compared0_ms"] == pytest.approx(r["kernels_alone_ms"], rel=1e-12)
    (compared,) = backend["compared"]
    errors = [r["compared0_ms"] / r["measured_ms"] - 1 for r in rows]
    assert compared["rmspe"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))))
    # Rechecked at its own speed: the group's factor times its reference time's ratio, 2.
    again = [2 * factor * r["compared0_ms"] / r["measured_ms"] - 1 for r in rows]
    assert compared["rechecked"]["mean_error"] == pytest.approx(float(np.mean(again)))
    text = (tmp_path / "pa.md").read_text()
    assert "speed rechecked" in text and "sepconv, profile 2 (outside timing)" in text


@pytest.mark.slow
def test_pick_budgets_smoke_measures_every_choice_against_its_budget(tmp_path: Path) -> None:
    # A profile of test_predict.py's synthetic machine (recorded as this one, ONNX Runtime):
    # the picks are the synthetic machine's, the measurements this machine's ONNX Runtime.
    from test_predict import fake_calibration

    profile = tmp_path / "profile.json"
    fake_calibration(max_kernels=900, seed=7).save(profile)
    data = run_cpu_smoke("pick_budgets.py", tmp_path, "pb", "--profile", str(profile))
    rows = data["rows"]
    assert len(data["budgets_ms"]) == len(rows) == 2
    for r in rows:
        assert r["choice"] is not None and r["predicted_ms"] <= r["budget_ms"]
        assert r["measured_ms"] > 0 and r["meets_budget"] == (r["measured_ms"] <= r["budget_ms"])
    assert len(data["reference_readings_s"]) == 2  # one after each round
    text = (tmp_path / "pb.md").read_text()
    assert "The choice met its budget under" in text


@pytest.mark.slow
def test_predict_in_network_smoke_pairs_every_conv_kernel_with_its_node(tmp_path: Path) -> None:
    data = run_cpu_smoke("predict_in_network.py", tmp_path, "pin")
    rows = data["kernels"]["mobilenet_v2"]
    # MobileNetV2 (Sandler et al. 2018, table 2): a 3x3 stem, 17 inverted residual blocks
    # (the first without an expansion), and a 1x1 conv to 1280 channels.
    kinds = [r["kind"] for r in rows]
    assert len(rows) == 52 and kinds[0] == "other"
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert counts == {"other": 1, "depthwise": 17, "1x1, expanding": 17, "1x1, projecting": 17}
    for row in rows:
        assert len(row["network"]) == len(row["own nodes"]) == len(row["less sandwich"]) == 2
        assert min(row["network"]) > 0
    assert sum(np.median(r["own nodes"]) for r in rows) > 0
    report = (tmp_path / "pin.md").read_text()
    assert report.count("| mobilenet_v2 |") == 5  # four kinds and all


def test_predict_offline_smoke_rebuilds_a_recorded_run_and_its_calibration(tmp_path: Path) -> None:
    # The committed quiet-hour run and its profile: the models are built again from the run's
    # seed and the whole networks from the calibration's.
    command = [sys.executable, str(BENCHMARKS / "predict_offline.py"), "--smoke",
               "--results-dir", str(tmp_path), "--out", "po"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "po.json").read_text())
    run = json.loads((RESULTS / "predict_accuracy_quiet_hour.json").read_text())
    recorded = [m["predicted_ms"] for m in run["backends"][0]["models"][:10]]
    as_run, mean_all, faster = data["results"]
    # The run's own predictions, made by the live code then, reproduced from the rebuild.
    assert as_run["predicted_ms"] == pytest.approx(recorded, rel=1e-9)
    # Fitted again with the calibration's rule (the mean of all ten), the kernel scale is the
    # one the calibration fitted and stored in the profile.
    profile = json.loads(gzip.decompress((RESULTS / "profiles/ort_2026-12-08_0124.json.gz")
                                         .read_bytes()))  # fmt: skip
    assert mean_all["kernel_scale"] == pytest.approx(profile["kernel_scale"]["native"], rel=1e-9)
    assert mean_all["predicted_ms"] == pytest.approx(recorded, rel=1e-9)
    # The faster half is another prediction, its scale fitted on the same networks.
    assert faster["faster_share"] == 0.5 and faster["predicted_ms"] != mean_all["predicted_ms"]
    assert 0.1 < faster["kernels_cv"]["median_abs_error"] < 0.5
    # A seed that drew other models is refused before anything is predicted.
    command[command.index("--smoke")] = "--seed=1"
    refused = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert refused.returncode != 0
    assert "--seed 1: the models drawn are not the run's" in refused.stderr
