"""Data path throughput: batches from a host dataset vs batches made on the device.

Both contenders produce the same training batches of Fashion-MNIST (all 60,000 images, the
default augmentation: 2 px crop + flip, plus random erasing with ``--erasing`` > 0), ready for
the model: normalised float32, channels_last, on ``--device``, labels too.

- host: the dataset stays in host memory; every step gathers and augments ``uint8`` images on
  the CPU, then copies the batch to the device and normalises it there (``to_model_input``).
- device: the dataset is copied to the device once (``ImageDataset.to``); every step gathers,
  augments and normalises there (``BatchLoader(..., normalize=Normalize(...))``), and only the
  batch's random choices, drawn on the CPU, cross to the device.

No model runs: this is the data path alone, timed over ``--steps`` steps (default: one epoch)
after one warm-up pass, the device synchronised before the clock stops. Reported: median
batches/s and images/s over ``--repeats`` alternating rounds. On ``--device cpu`` the two
differ only in where normalisation happens, so expect them to be close.

Run:
    .venv/bin/python benchmarks/data_device.py [--device cuda] [--batch-size 256] [--repeats 3]
    .venv/bin/python benchmarks/data_device.py --device cpu --smoke   # 5 steps, 1 round

Writes results/benchmarks/data_device_<device type>.{json,md} (``--results-dir``/``--out``
move them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console

from sepconv.bench.output import markdown_table, terminal_table
from sepconv.data import (
    BatchLoader,
    ImageDataset,
    Normalize,
    channel_stats,
    default_augment,
    load_fashion_mnist,
    to_model_input,
)
from sepconv.utils.devices import check_device

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def host_path(data: ImageDataset, args: argparse.Namespace, device: torch.device) -> Batches:
    """Batches made on the host, then copied to ``device`` and normalised there."""
    mean, std = channel_stats(data.images)
    loader = BatchLoader(
        data, args.batch_size, seed=0, augment=default_augment("fashion-mnist", 28, args.erasing)
    )

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in loader:
            x = to_model_input(images, mean, std, device=device, channels_last=True)
            yield x, labels.to(device, non_blocking=True)

    return batches


def device_path(data: ImageDataset, args: argparse.Namespace, device: torch.device) -> Batches:
    """Batches made where the dataset is: on ``device``."""
    on_device = data.to(device)
    mean, std = channel_stats(on_device.images)
    loader = BatchLoader(
        on_device,
        args.batch_size,
        seed=0,
        augment=default_augment("fashion-mnist", 28, args.erasing),
        normalize=Normalize(mean, std, channels_last=True),
    )
    return loader.batches


def time_pass(batches: Batches, steps: int, device: torch.device) -> float:
    """Seconds to draw ``steps`` batches, with the device's queued work finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    done = 0
    while done < steps:
        for _ in batches():
            done += 1
            if done == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--steps", type=positive_int, default=None, help="default: one epoch")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--erasing", type=float, default=0.5, help="0 switches erasing off")
    parser.add_argument("--threads", type=positive_int, default=None, help="default: PyTorch's")
    add_smoke_flag(parser, "5 steps, 1 round")
    add_output_flags(parser)
    args = parser.parse_args()
    device = check_device(args.device, "--device")
    run = Run.start(__file__, args, name=f"data_device_{device.type}")
    if args.smoke:
        args.steps, args.repeats = 5, 1
    if not 0.0 <= args.erasing <= 1.0:
        parser.error(f"--erasing must lie in [0, 1], received {args.erasing}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_fashion_mnist("train")
    steps = args.steps or len(data) // args.batch_size
    contenders = {
        "host: gather + augment on CPU, copy": host_path(data, args, device),
        f"device: gather + augment on {device.type}": device_path(data, args, device),
    }
    for batches in contenders.values():  # warm-up: allocator, kernels, pinned buffers
        time_pass(batches, min(steps, 10), device)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, batches in contenders.items():
            seconds[name].append(time_pass(batches, steps, device))
    host_rate = steps / statistics.median(seconds[next(iter(seconds))])
    rows = []
    for name, values in seconds.items():
        rate = steps / statistics.median(values)
        rows.append(
            {
                "contender": name,
                "batches_per_s": rate,
                "images_per_s": rate * args.batch_size,
                "runs_s": values,
                "ratio_to_host": rate / host_rate,
            }
        )
    headers = ["contender", "batches/s", "images/s", "x host"]
    table_rows = [
        [
            row["contender"],
            f"{row['batches_per_s']:.1f}",
            f"{row['images_per_s']:.0f}",
            f"{row['ratio_to_host']:.2f}",
        ]
        for row in rows
    ]
    title = (
        f"Data path to {device}, Fashion-MNIST, batch {args.batch_size}, {steps} steps, "
        f"erasing {args.erasing}"
    )
    Console().print(terminal_table(title, headers, table_rows))
    settings = {**vars(args), "results_dir": str(args.results_dir), "steps": steps}
    record = {**run.record(), "args": settings, "results": rows}
    run.write(
        record,
        header("Data path throughput: host against device", record)
        + f"\n\n{title}; median of {args.repeats} alternating rounds.\n\n"
        + markdown_table(headers, table_rows)
        + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
