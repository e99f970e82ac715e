"""Training throughput: sepconv's Trainer against hand-written loops, at the same precision and
memory layout, in one process.

Rows (``train_contenders.py``; the loops: ``plain_loop.py``): a tutorial's plain loop in NCHW
and in channels_last, a loop shaped like timm's ``train.py`` step (channels_last, workers and
pinned memory, normalisation on the device; with ``--compile`` also compiled), and the Trainer
in NCHW and channels_last (with ``--compile`` also ``TrainConfig(compile=True)``). Each row is built
once, runs one untimed warm-up epoch (cuDNN's algorithm search, torch.compile), then the rows
take turns for ``--repeats`` epochs; images/s is an epoch's images over its wall time,
synchronised with the device at both ends. Reported: the median, the interquartile range, each
epoch's figure and the ratio to the plain loop in channels_last, the fair baseline.

Precisions (``--precisions``): ``bf16`` (autocast; what the Trainer uses on a bf16 GPU),
``fp16`` (autocast with a gradient scaler; the hand-written loops only, as ``TrainConfig.amp``
has no fp16), ``fp32``. Same model, data, optimizer settings (``build_optimizer``) and
augmentation for every row of a workload, and ``cudnn.benchmark`` on for all of them on CUDA:

- on a CPU: ``mobilenet_v1_025`` (small-input stem, 1 channel, 10 classes) on the first
  ``--images`` Fashion-MNIST training images, random crop (2 px padding) and flip, batch 128;
- ``--device cuda`` (and ``--smoke``): ``synthetic``: ``mobilenet_v2`` at 224x224 on seeded
  random uint8 images (1000 classes, no augmentation), batch 128; ``fashion``: ``mobilenet_v2``
  (small-input stem) on Fashion-MNIST at 28x28 with the crop and flip, batch 256.

Under ``torchrun`` the script joins the process group itself (NCCL on CUDA, gloo on a CPU),
also for one process: the hand-written loops train through ``DistributedDataParallel``, the
Trainer with the job's rank and world size, and rank 0 writes the results.

Run:
    .venv/bin/python benchmarks/train_throughput.py [--images 3840] [--repeats 3] [--threads 2]
    python3 benchmarks/train_throughput.py --device cuda --precisions bf16,fp16
    python3 -m torch.distributed.run --standalone --nproc_per_node=1 \\
        benchmarks/train_throughput.py --device cuda --smoke

Writes ``--results-dir``/OUT.{json,md} (OUT: ``train_throughput`` on a CPU,
``train_throughput_cuda`` with ``--device cuda``; ``_smoke`` added with ``--smoke``).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from harness import Run, add_output_flags, add_smoke_flag, positive_int
from rich.console import Console
from train_contenders import BASELINE, ROWS, Workload, build, not_runnable, workloads

from sepconv.bench.output import markdown_environment, markdown_table, terminal_table
from sepconv.utils.devices import check_device


def measure(loops: dict[str, Any], args: argparse.Namespace) -> dict[str, list[float]]:
    """One untimed epoch each, then ``--repeats`` rounds of one epoch each, in turn."""
    cuda = args.device.type == "cuda"

    def timed(loop: Any) -> float:
        if cuda:
            torch.cuda.synchronize(args.device)
        start = time.perf_counter()
        images = loop.epoch()
        if cuda:
            torch.cuda.synchronize(args.device)
        return images * args.world_size / (time.perf_counter() - start)

    for loop in loops.values():
        timed(loop)
    runs: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            runs[name].append(timed(loop))
    return runs


def measure_workload(work: Workload, precision: str, args: argparse.Namespace, payload: dict):
    try:
        data = work.load()
    except FileNotFoundError as err:
        payload["skipped"].append(f"{work.label}: {err}")
        return
    loops, built = {}, {}
    for row in ROWS:
        reason = not_runnable(row, precision, args)
        if reason:
            payload["skipped"].append(f"{work.label}, {precision}: {row.name} ({reason})")
            continue
        started = time.perf_counter()
        loops[row.name] = build(row, work, data, precision, args)
        built[row.name] = time.perf_counter() - started
    runs = measure(loops, args)
    baseline = float(np.median(runs[BASELINE])) if BASELINE in runs else None
    for name, values in runs.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        payload["results"].append({
            "workload": work.label, "precision": precision, "contender": name,
            "median_images_per_s": float(median), "iqr_images_per_s": float(q3 - q1),
            "runs_images_per_s": values, "build_s": built[name],
            "ratio_to_plain_channels_last": float(median) / baseline if baseline else None,
        })  # fmt: skip


def table(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["workload"], r["precision"], r["contender"], f"{r['median_images_per_s']:.0f}",
            f"{r['iqr_images_per_s']:.0f}", " / ".join(f"{v:.0f}" for v in r["runs_images_per_s"]),
            "-" if r["ratio_to_plain_channels_last"] is None
            else f"{r['ratio_to_plain_channels_last']:.2f}",
        ]
        for r in rows
    ]  # fmt: skip


HEADERS = ["workload", "precision", "contender", "median img/s", "IQR", "runs", "x plain CL"]


def join_process_group(device: torch.device) -> tuple[int, int, torch.device, str | None]:
    """Under torchrun: join its process group (NCCL on CUDA, gloo otherwise)."""
    if "LOCAL_RANK" not in os.environ:
        return 0, 1, device, None
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, dist.get_backend()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--images", type=positive_int, default=3840)
    parser.add_argument("--batch-size", type=positive_int, default=128, help="CPU workload")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed epochs a row")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--precisions", default=None, help="bf16, fp16, fp32 (comma-separated)")
    parser.add_argument("--workloads", default="synthetic,fashion", help="device workloads")
    parser.add_argument("--workers", type=int, default=None, help="timm-style loader workers")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile rows")
    add_smoke_flag(parser, "tiny data, one timed epoch")
    add_output_flags(parser)
    args = parser.parse_args()
    args.device = check_device(args.device, "--device")
    cuda = args.device.type == "cuda"

    def listed(flag: str, text: str, allowed: tuple[str, ...]) -> list[str]:
        for value in text.split(","):
            if value not in allowed:
                parser.error(f"argument {flag}: expected one of {allowed}, received {value!r}")
        return text.split(",")

    default = "bf16" if cuda else "fp32"
    args.precisions = listed("--precisions", args.precisions or default, ("bf16", "fp16", "fp32"))
    args.workloads = listed("--workloads", args.workloads, ("synthetic", "fashion"))
    args.workers = args.workers if args.workers is not None else (4 if cuda else 0)
    args.repeats = 1 if args.smoke else args.repeats
    return args


def main() -> int:
    args = parse_args()
    device = args.device
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # for every row, as timm's train.py sets it
    torch.set_num_threads(args.threads)
    args.rank, args.world_size, args.device, backend = join_process_group(device)
    name = "train_throughput" + (
        "" if device.type == "cpu" and not args.smoke else "_" + device.type
    )
    run = Run.start(__file__, args, name=name)
    payload: dict[str, Any] = {**run.record(), "results": [], "skipped": []}
    payload["args"] = {k: str(v) for k, v in vars(args).items()}
    payload["distributed"] = backend and {"backend": backend, "world_size": args.world_size}
    if backend:  # the command that repeats the run starts torchrun
        launch = f"python -m torch.distributed.run --standalone --nproc_per_node={args.world_size}"
        payload["command"] = payload["command"].replace("python", launch, 1)
    for work in workloads(args, cuda):
        for precision in args.precisions:
            measure_workload(work, precision, args, payload)
    if args.rank == 0:
        Console().print(terminal_table("Training throughput", HEADERS, table(payload["results"])))
        text = markdown_environment(payload["environment"], payload["command"]) + "\n\n"
        if backend:
            text += f"Under torchrun: {backend}, {args.world_size} process(es).\n\n"
        text += markdown_table(HEADERS, table(payload["results"])) + "\n"
        text += "".join(f"\nNot measured: {s}" for s in payload["skipped"])
        run.write({**payload, **run.clock()}, text + "\n")
    if backend:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
