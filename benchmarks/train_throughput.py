"""Training throughput: sepconv's Trainer against a plain hand-written PyTorch loop.

Same model (``mobilenet_v1_025``, small-input stem, 1 channel, 10 classes), same data (the
first ``--images`` Fashion-MNIST training images), same optimizer settings and the same random
crop (2 px padding) + horizontal flip, in one process, alternating the contenders for
``--repeats`` rounds of one epoch each. The plain loop is what a tutorial writes: a
``TensorDataset``-style dataset with per-sample torchvision transforms, a ``DataLoader``
(``num_workers=0``: in-memory data), NCHW tensors, ``SGD``. The Trainer is run with and
without ``channels_last`` to separate the layout from the batch-wise data path. Reported:
median images/s of the training loop (set-up excluded) and the ratio to the plain loop.

Run:
    .venv/bin/python benchmarks/train_throughput.py [--images 3840] [--repeats 3] [--threads 2]

Writes results/train_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results"
MODEL = "mobilenet_v1_025"


def build_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return sepconv.create_model(MODEL, num_classes=10, in_chans=1, small_input=True)


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


def plain_loop(data: ImageDataset, config: TrainConfig) -> float:
    """One epoch of a hand-written loop; returns training images/s."""
    model = build_model()
    optimizer = build_optimizer(model, config)
    mean, std = channel_stats(data.images)
    loader = DataLoader(
        PerSampleDataset(data, mean[0], std[0]),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
    )
    model.train()
    seen = 0
    start = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.shape[0]
    return seen / (time.perf_counter() - start)


def trainer_loop(data: ImageDataset, config: TrainConfig) -> float:
    """One epoch of :class:`sepconv.train.Trainer`; returns its logged training images/s."""
    trainer = Trainer(build_model(), config, data, augment=RandomCropFlip(padding=2, flip=True))
    return float(trainer.fit()[-1]["images_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3840)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            runs[name].append(run())
    plain = statistics.median(runs[next(iter(runs))])
    rows = [
        {
            "contender": name,
            "median_images_per_s": statistics.median(values),
            "runs_images_per_s": values,
            "ratio_to_plain": statistics.median(values) / plain,
        }
        for name, values in runs.items()
    ]
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])
    headers = ["contender", "median img/s", "runs", "x plain"]
    md_rows = [
        [
            row["contender"],
            f"{row['median_images_per_s']:.0f}",
            " / ".join(f"{v:.0f}" for v in row["runs_images_per_s"]),
            f"{row['ratio_to_plain']:.2f}",
        ]
        for row in rows
    ]
    title = f"Training throughput, {MODEL} on Fashion-MNIST ({args.images} images)"
    Console().print(terminal_table(title, headers, md_rows))
    env = environment()
    payload = {"command": command, "environment": env, "args": vars(args), "results": rows}
    write_json(RESULTS / "train_throughput.json", payload)
    write_text(
        RESULTS / "train_throughput.md",
        markdown_environment(env, command) + "\n" + markdown_table(headers, md_rows) + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
