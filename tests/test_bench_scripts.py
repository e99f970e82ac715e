"""The GPU benchmarks' smoke mode, run on the CPU: every step of their path, at tiny sizes.

``scripts/gpu-check`` runs these two scripts on a GPU; here they run with ``--device cpu
--smoke`` so that a broken script is found before a GPU is. Nothing about speed is asserted.
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
