"""Training throughput: sepconv's Trainer against a plain hand-written PyTorch loop.

Same model (``mobilenet_v1_025``, small-input stem, 1 channel, 10 classes), same data (the
first ``--images`` Fashion-MNIST training images), same optimizer settings and the same random
crop (2 px padding) + horizontal flip, in one process, alternating the contenders for
``--repeats`` rounds of one epoch each. The plain loop is what a tutorial writes: a
``TensorDataset``-style dataset with per-sample torchvision transforms, a ``DataLoader``
(``num_workers=0``: in-memory data), NCHW tensors, ``SGD``. The Trainer is run with and
without ``channels_last`` to separate the layout from the batch-wise data path. Reported:
median images/s of the training loop (set-up excluded) and the ratio to the plain loop.

With ``--device cuda`` the same comparison runs on the GPU, at one precision for both (bf16
autocast, what the Trainer uses on a bf16-capable GPU), for two workloads: ``mobilenet_v2`` at
224x224 on synthetic uint8 images (3 channels, 1000 classes, no augmentation) and
``mobilenet_v2`` (small-input stem) on Fashion-MNIST at 28x28 with the crop + flip above. The
plain loop moves each batch to the GPU, normalises it there and steps under autocast; its clock
stops after ``torch.cuda.synchronize()``. One untimed round warms up cuDNN first.

Run:
    .venv/bin/python benchmarks/train_throughput.py [--images 3840] [--repeats 3] [--threads 2]
    python3 benchmarks/train_throughput.py --device cuda [--smoke] [--out DIR]

Writes train_throughput.{json,md} (CPU) or train_throughput_cuda.{json,md} (``--device cuda``;
``train_throughput_<device>_smoke`` with ``--smoke``) into ``--out`` (default
results/benchmarks). ``--smoke``: a few hundred images, one round: checks the path, not speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import sepconv
from sepconv.bench import environment
from sepconv.bench.output import markdown_environment, markdown_table, terminal_table
from sepconv.data import ImageDataset, RandomCropFlip, channel_stats, load_fashion_mnist
from sepconv.train import TrainConfig, Trainer, build_optimizer
from sepconv.train.distributed import DistributedContext
from sepconv.utils.devices import check_device
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
MODEL = "mobilenet_v1_025"


def build_model(name: str = MODEL, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"num_classes": 10, "in_chans": 1, "small_input": True, **kwargs}
    return sepconv.create_model(name, **options)


class PerSampleDataset(Dataset):
    """The usual tutorial dataset: one image at a time through torchvision transforms."""

    def __init__(self, data: ImageDataset, mean: float, std: float) -> None:
        self.data = data
        self.transform = v2.Compose(
            [
                v2.RandomCrop(28, padding=2),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([mean], [std]),
            ]
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.data.images[i]), self.data.labels[i]


class UInt8Dataset(Dataset):
    """Images as stored (uint8), no transforms: normalisation happens on the device."""

    def __init__(self, data: ImageDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.images[i], self.data.labels[i]


def plain_loop(
    data: ImageDataset,
    config: TrainConfig,
    model: torch.nn.Module | None = None,
    device: torch.device | None = None,
    augment: bool = True,
) -> float:
    """One epoch of a hand-written loop; returns training images/s.

    On CUDA the batch goes to the GPU as uint8, is normalised there and the step runs under
    bf16 autocast (the Trainer's precision there); the clock stops after a synchronisation.
    """
    device = device or torch.device("cpu")
    model = (model or build_model()).to(device)
    optimizer = build_optimizer(model, config)
    mean, std = channel_stats(data.images)
    dataset = PerSampleDataset(data, mean[0], std[0]) if augment else UInt8Dataset(data)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True)
    cuda = device.type == "cuda"
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    model.train()
    seen = 0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = (x.float() / 255 - m) / s
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.shape[0]
    if cuda:
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def trainer_loop(
    data: ImageDataset,
    config: TrainConfig,
    model: torch.nn.Module | None = None,
    device: torch.device | None = None,
    augment: bool = True,
) -> float:
    """One epoch of :class:`sepconv.train.Trainer`; returns its logged training images/s."""
    context = DistributedContext(0, 1, device or torch.device("cpu"))
    trainer = Trainer(
        model or build_model(),
        config,
        data,
        augment=RandomCropFlip(padding=2, flip=True) if augment else None,
        context=context,
    )
    return float(trainer.fit()[-1]["images_per_s"])


def synthetic(n: int, size: int, classes: int) -> ImageDataset:
    """``n`` seeded random uint8 RGB images of side ``size`` with random labels."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return ImageDataset(images, labels, tuple(str(i) for i in range(classes)))


def contenders_for(
    data: ImageDataset,
    base: dict[str, object],
    device: torch.device,
    model_fn: Callable[[], torch.nn.Module],
    augment: bool,
) -> dict[str, Callable[[], float]]:
    """The plain loop and the Trainer (NCHW and channels_last) on one workload."""

    def trainer(channels_last: bool) -> Callable[[], float]:
        config = TrainConfig(**base, channels_last=channels_last)  # type: ignore[arg-type]
        return lambda: trainer_loop(data, config, model_fn(), device, augment)

    plain_config = TrainConfig(**base)  # type: ignore[arg-type]
    return {
        "plain PyTorch loop (NCHW)": lambda: plain_loop(
            data, plain_config, model_fn(), device, augment
        ),
        "sepconv Trainer, NCHW": trainer(False),
        "sepconv Trainer, channels_last": trainer(True),
    }


def measure_rounds(
    contenders: dict[str, Callable[[], float]], repeats: int, warmup: bool
) -> list[dict[str, object]]:
    """Alternate the contenders for ``repeats`` rounds; rows with medians and ratio to plain."""
    if warmup:
        for run in contenders.values():
            run()
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            runs[name].append(run())
    plain = statistics.median(runs[next(iter(runs))])
    return [
        {
            "contender": name,
            "median_images_per_s": statistics.median(values),
            "runs_images_per_s": values,
            "ratio_to_plain": statistics.median(values) / plain,
        }
        for name, values in runs.items()
    ]


def md_rows(rows: list[dict[str, object]], workload: str | None = None) -> list[list[str]]:
    out = []
    for row in rows:
        runs = row["runs_images_per_s"]
        cells = [
            str(row["contender"]),
            f"{row['median_images_per_s']:.0f}",
            " / ".join(f"{v:.0f}" for v in runs),  # type: ignore[attr-defined]
            f"{row['ratio_to_plain']:.2f}",
        ]
        out.append(([workload] if workload else []) + cells)
    return out


def cpu_workload(args: argparse.Namespace) -> tuple[str, list[str], list[list[str]], object]:
    full = load_fashion_mnist("train")
    data = ImageDataset(full.images[: args.images], full.labels[: args.images], full.classes)
    base = {"epochs": 1, "batch_size": args.batch_size, "warmup_epochs": 0.0}
    contenders = {
        "plain PyTorch loop (NCHW, per-sample transforms)": lambda: plain_loop(
            data, TrainConfig(**base)
        ),
        "sepconv Trainer, NCHW": lambda: trainer_loop(
            data, TrainConfig(**base, channels_last=False)
        ),
        "sepconv Trainer, channels_last": lambda: trainer_loop(data, TrainConfig(**base)),
    }
    rows = measure_rounds(contenders, args.repeats, warmup=False)
    title = f"Training throughput, {MODEL} on Fashion-MNIST ({args.images} images)"
    return title, ["contender", "median img/s", "runs", "x plain"], md_rows(rows), rows


def device_workloads(
    args: argparse.Namespace, device: torch.device
) -> tuple[str, list[str], list[list[str]], object]:
    """mobilenet_v2 at 224 on synthetic images, and on Fashion-MNIST at 28x28."""
    smoke = args.smoke
    size, n224, batch224 = (64, 32, 8) if smoke else (224, 2560, 128)
    n_fm, batch_fm = (128, 32) if smoke else (args.images * 4, 256)
    base = {"epochs": 1, "warmup_epochs": 0.0}
    results: dict[str, object] = {}
    table: list[list[str]] = []
    workloads: list[tuple[str, Callable[[], ImageDataset], dict[str, object], int, bool]] = [
        (
            f"mobilenet_v2 {size}x{size} synthetic, batch {batch224}",
            lambda: synthetic(n224, size, 1000),
            {"num_classes": 1000, "in_chans": 3, "small_input": False},
            batch224,
            False,
        ),
        (
            f"mobilenet_v2 28x28 Fashion-MNIST, batch {batch_fm}",
            lambda: _fashion(n_fm),
            {"num_classes": 10, "in_chans": 1, "small_input": True},
            batch_fm,
            True,
        ),
    ]
    for label, load, kwargs, batch, augment in workloads:
        try:
            data = load()
        except FileNotFoundError as err:
            results[label] = {"skipped": str(err)}
            print(f"skipped {label}: {err}")
            continue
        contenders = contenders_for(
            data,
            {**base, "batch_size": batch},
            device,
            lambda kwargs=kwargs: build_model("mobilenet_v2", **kwargs),  # type: ignore[misc]
            augment,
        )
        rows = measure_rounds(contenders, 1 if smoke else args.repeats, warmup=not smoke)
        results[label] = rows
        table += md_rows(rows, label)
    title = f"Training throughput on {device} (bf16 autocast on CUDA, fp32 on the CPU)"
    headers = ["workload", "contender", "median img/s", "runs", "x plain"]
    return title, headers, table, results


def _fashion(n: int) -> ImageDataset:
    full = load_fashion_mnist("train")
    return ImageDataset(full.images[:n], full.labels[:n], full.classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3840)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for JSON + MD")
    args = parser.parse_args()
    device = check_device(args.device, "--device")
    torch.set_num_threads(args.threads)
    if device.type == "cpu" and not args.smoke:
        title, headers, rows, results = cpu_workload(args)
        stem = "train_throughput"
    else:
        title, headers, rows, results = device_workloads(args, device)
        stem = f"train_throughput_{device.type}" + ("_smoke" if args.smoke else "")
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    Console().print(terminal_table(title, headers, rows))
    env = environment()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    payload = {"command": command, "environment": env, "args": settings, "results": results}
    write_json(args.out / f"{stem}.json", payload)
    write_text(
        args.out / f"{stem}.md",
        markdown_environment(env, command) + "\n" + markdown_table(headers, rows) + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
