"""Measured DRAM traffic of one inference forward on a GPU, next to the byte estimates of
``gpu_inference_report.py``.

Nsight Compute (``ncu``) profiles one warm forward (between ``cudaProfilerStart`` and
``cudaProfilerStop``; warm-up and cuDNN's algorithm search stay outside), replays each of its
kernels and reads the counters ``dram__bytes_read.sum`` and ``dram__bytes_write.sum``: their sum
over the kernels is what reached device memory (L2 hits excluded). Two paths, bf16 and
channels_last, ``cudnn.benchmark`` on:

- ``sepconv eager``: ``sepconv.fuse(model)`` (BatchNorm folded), what ``compile_for_inference``'s
  eager and CUDA-graph candidates run;
- ``timm eager``: timm's model of the same architecture (BatchNorm and activation as kernels of
  their own).

Run:
    python3 benchmarks/gpu_inference_dram.py --model mobilenet_v2 --batch 256

Writes ``--results-dir``/OUT.{json,md} (OUT: ``gpu_inference_dram``). Without CUDA or ``ncu``
(looked up on PATH, then under /usr/local/cuda/bin; ``NCU`` names another), the file holds the
estimates and says why nothing was measured.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from gpu_inference_models import PEERS
from gpu_inference_report import traffic
from harness import Run, add_output_flags, add_smoke_flag, positive_int

import sepconv
from sepconv.bench.output import markdown_environment, markdown_table
from sepconv.utils.devices import check_device

PATHS = ("sepconv eager", "timm eager")
METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")
UNITS = {"byte": 1, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "kibyte": 2**10, "mibyte": 2**20}


def forward_once(path: str, model_name: str, batch: int, size: int) -> None:
    """Under ncu: warm up ``path``, then one forward between profiler start and stop."""
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    if path == "sepconv eager":
        net = sepconv.fuse(sepconv.create_model(model_name).eval())
    else:
        import timm

        net = timm.create_model(PEERS[model_name], pretrained=False).eval()
    net = net.to("cuda", torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()  # cudaProfilerStart: ncu profiles from here
        net(x)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def parse_ncu_csv(text: str) -> dict[str, float]:
    """Total DRAM bytes read and written, and the number of kernels, from ``ncu --csv``."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    totals = {"read": 0.0, "write": 0.0}
    kernels: set[str] = set()
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        metric = row.get("Metric Name", "")
        if metric not in METRICS:
            continue
        unit = UNITS.get(row.get("Metric Unit", "byte").strip().lower())
        if unit is None:
            raise ValueError(f"ncu reported {metric} in an unknown unit {row['Metric Unit']!r}")
        value = float(row["Metric Value"].replace(",", "")) * unit
        totals["read" if metric == METRICS[0] else "write"] += value
        kernels.add(row.get("ID", ""))
    return {**totals, "total": totals["read"] + totals["write"], "kernels": len(kernels)}


def find_ncu() -> str | None:
    for candidate in (os.environ.get("NCU"), shutil.which("ncu"), "/usr/local/cuda/bin/ncu"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def profile(ncu: str, path: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`forward_once` under ``ncu`` in a fresh process; its parsed counters."""
    with tempfile.TemporaryDirectory(prefix="sepconv-ncu-") as tmp:
        log = Path(tmp) / "ncu.csv"
        command = [
            ncu, "--profile-from-start", "off", "--clock-control", "none", "--metrics",
            ",".join(METRICS), "--csv", "--print-units", "base", "--log-file", str(log),
            sys.executable, __file__, "--forward", path, "--model", args.model,
            "--batch", str(args.batch), "--size", str(args.size),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout_s)
        text = log.read_text(encoding="utf-8") if log.is_file() else ""
    if done.returncode != 0 or not text:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"ncu exited with {done.returncode}: {' | '.join(tail)}")
    return parse_ncu_csv(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--model", default="mobilenet_v2", choices=list(PEERS))
    parser.add_argument("--batch", type=positive_int, default=256)
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--timeout-s", type=float, default=150, help="per ncu run")
    parser.add_argument("--forward", choices=PATHS, help=argparse.SUPPRESS)
    add_smoke_flag(parser, "batch 8 (2 at 32x32 on a CPU)")
    add_output_flags(parser)
    args = parser.parse_args()
    if args.forward:
        forward_once(args.forward, args.model, args.batch, args.size)
        return 0
    device = check_device(args.device, "--device")
    if args.smoke:
        args.batch, args.size = (8, 224) if device.type == "cuda" else (2, 32)
    run = Run.start(__file__, args)
    estimate = traffic(sepconv.create_model(args.model), args.batch, args.size)
    payload: dict[str, Any] = {
        **run.record(), "model": args.model, "batch": args.batch, "size": args.size,
        "estimate_bytes": estimate, "measured": {}, "skipped": [],
    }  # fmt: skip
    ncu = find_ncu()
    for path in PATHS:
        if device.type != "cuda" or ncu is None:
            payload["skipped"].append(f"{path}: needs a CUDA GPU and Nsight Compute (ncu)")
            continue
        try:
            payload["measured"][path] = profile(ncu, path, args)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as err:
            payload["skipped"].append(f"{path}: {type(err).__name__}: {err}")
    run.write({**payload, **run.clock()}, markdown(payload))
    return 0


def markdown(payload: dict[str, Any]) -> str:
    est = payload["estimate_bytes"]
    rows = [
        [f"estimate: {k}", f"{est[k] / 1e9:.3f}", "-"] for k in ("minimum", "folded", "unfolded")
    ]
    rows += [
        [f"measured: {path}", f"{m['total'] / 1e9:.3f}", str(m["kernels"])]
        for path, m in payload["measured"].items()
    ]
    text = markdown_environment(payload["environment"], payload["command"])
    text += (
        f"\n\nDRAM traffic of one forward of {payload['model']}, batch {payload['batch']}, "
        f"{payload['size']}x{payload['size']}, bf16 channels_last (GB = 1e9 bytes).\n\n"
    )
    text += markdown_table(["bytes", "GB", "kernels"], rows) + "\n"
    if payload["skipped"]:
        text += "\nNot measured:\n\n" + "".join(f"- {s}\n" for s in payload["skipped"])
    return text


if __name__ == "__main__":
    raise SystemExit(main())
