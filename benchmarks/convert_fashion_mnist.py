"""Convert a trained standard-conv network on Fashion-MNIST into a depthwise separable one.

Trains a small standard-conv CNN, decouples every 3x3 conv at rank 1, 2 and 4 (Guo et al.,
"Network Decoupling", BMVC 2018), measures test accuracy before and after a short distillation
fine-tune from the original, and puts params, MACs and CPU latency next to the original and to a
MobileNet-style separable twin trained from scratch with the original's recipe.

    .venv/bin/python benchmarks/convert_fashion_mnist.py

Writes ``results/convert_fashion_mnist/results.json`` and ``results.md``. The defaults are sized
for a shared 2-core CPU (well under one epoch of training); raise ``--train-steps`` and
``--finetune-steps`` on a larger machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils import benchmark as tbench
from tqdm import tqdm

from sepconv.analysis import analyze
from sepconv.convert import separabilize
from sepconv.convert.distill import NormalizedBatches, distill
from sepconv.data.dataset import BatchLoader, ImageDataset, channel_stats
from sepconv.data.idx import load_fashion_mnist
from sepconv.layers import ConvNormAct, DepthwiseSeparableConv2d

INPUT_SIZE = (1, 1, 28, 28)


def build(width: int, separable: bool) -> nn.Sequential:
    """The CNN: 3x3 stem, then two stages of two 3x3 layers (x2 and x4 width), GAP, linear.

    ``separable=False`` uses standard ConvNormAct layers (the network to convert);
    ``separable=True`` is its MobileNet-style twin: the same stem, every other layer a
    depthwise separable block with BN + ReLU after both convs.
    """

    def layer(cin: int, cout: int) -> nn.Module:
        if separable:
            return DepthwiseSeparableConv2d(cin, cout, norm=nn.BatchNorm2d, act=nn.ReLU)
        return ConvNormAct(cin, cout, 3)

    w = width
    return nn.Sequential(
        ConvNormAct(1, w, 3),
        nn.MaxPool2d(2),  # 14x14
        layer(w, 2 * w),
        layer(2 * w, 2 * w),
        nn.MaxPool2d(2),  # 7x7
        layer(2 * w, 4 * w),
        layer(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, 10),
    )


def train(model: nn.Module, batches: NormalizedBatches, lr: float, desc: str) -> None:
    """Plain cross-entropy training: SGD (Nesterov momentum 0.9, wd 5e-4), per-step cosine LR."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(batches))
    model.train()
    for images, labels in tqdm(batches, desc=desc):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()


@torch.no_grad()
def accuracy(model: nn.Module, test: ImageDataset, mean: float, std: float) -> float:
    """Top-1 accuracy in percent on ``test``."""
    model.eval()
    correct = 0
    for images, labels in BatchLoader(test, 500, shuffle=False, drop_last=False):
        logits = model((images.float() / 255 - mean) / std)
        correct += int((logits.argmax(1) == labels).sum())
    return 100.0 * correct / len(test)


def latency_ms(model: nn.Module, batch: int, threads: int) -> float:
    """Median eager CPU latency of one forward pass, in milliseconds."""
    model.eval()
    timer = tbench.Timer(
        "with torch.no_grad(): model(x)",
        globals={"model": model, "x": torch.randn(batch, *INPUT_SIZE[1:]), "torch": torch},
        num_threads=threads,
    )
    return timer.blocked_autorange(min_run_time=2.0).median * 1e3


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    header = "| model | params | MACs | MACs ratio | acc. at conversion | final acc. |"
    header += " latency b1 (ms) | latency b32 (ms) |\n|---|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['model']} | {r['params']:,} | {r['macs']:,} | {r['macs_reduction']:.2f}x | "
        f"{_pct(r['accuracy_before'])} | {_pct(r['accuracy_after'])} | "
        f"{r['latency_ms_b1']:.3f} | {r['latency_ms_b32']:.2f} |\n"
        for r in rows
    )
    return (
        "# Conversion on Fashion-MNIST\n\n"
        f"Command: `{meta['command']}`  \nMachine: {meta['machine']}  \n"
        f"Recipe: {meta['recipe']}\n\n"
        "MACs: one multiply-add, conv + linear, one 28x28 image (sepconv.analyze). Latency: "
        "eager PyTorch, median of torch.utils.benchmark blocked_autorange, "
        f"{meta['threads']} thread(s), all models measured in the same run.\n\n" + header + body
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--finetune-steps", type=int, default=400)
    parser.add_argument("--finetune-lr", type=float, default=0.02)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=2, help="threads for training")
    parser.add_argument("--latency-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/convert_fashion_mnist"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    train_set, test_set = load_fashion_mnist("train"), load_fashion_mnist("test")
    (mean,), (std,) = channel_stats(train_set.images)

    def steps(count: int, seed: int) -> NormalizedBatches:
        loader = BatchLoader(train_set, args.batch_size, seed=seed)
        return NormalizedBatches(loader, (mean,), (std,), steps=count)

    torch.manual_seed(args.seed)
    original = build(args.width, separable=False)
    train(original, steps(args.train_steps, args.seed), lr=0.05, desc="original")
    torch.manual_seed(args.seed)
    twin = build(args.width, separable=True)
    train(twin, steps(args.train_steps, args.seed), lr=0.05, desc="separable twin")

    base_macs = analyze(original, INPUT_SIZE).macs
    rows: list[dict[str, Any]] = []

    def row(name: str, model: nn.Module, before: float | None, after: float | None) -> None:
        macs = analyze(model, INPUT_SIZE).macs
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "macs": macs,
                "macs_reduction": base_macs / macs,
                "accuracy_before": before,
                "accuracy_after": after,
                "latency_ms_b1": latency_ms(model, 1, args.latency_threads),
                "latency_ms_b32": latency_ms(model, 32, args.latency_threads),
            }
        )

    row("original (standard 3x3)", original, None, accuracy(original, test_set, mean, std))
    conversions = {}
    for rank in args.ranks:
        student, report = separabilize(original, rank=rank, input_size=INPUT_SIZE)
        before = accuracy(student, test_set, mean, std)
        distill(
            student,
            original,
            lambda epoch, rank=rank: steps(args.finetune_steps, args.seed + rank),
            epochs=1,
            lr=args.finetune_lr,
            temperature=4.0,
            alpha=0.9,
            weight_decay=5e-4,
            progress=True,
        )
        row(f"decoupled rank {rank}", student, before, accuracy(student, test_set, mean, std))
        conversions[rank] = report.to_dict()
    row("separable twin (from scratch)", twin, None, accuracy(twin, test_set, mean, std))

    meta = {
        "command": "python benchmarks/convert_fashion_mnist.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), "
        f"torch {torch.__version__}",
        "recipe": (
            f"original and twin: {args.train_steps} SGD steps of batch {args.batch_size} "
            f"({args.train_steps * args.batch_size / len(train_set):.2f} epochs), lr 0.05 "
            "Nesterov momentum 0.9, wd 5e-4, per-step cosine, no augmentation; conversion: "
            f"separabilize(rank=R) of every 3x3 conv (stem included), then {args.finetune_steps}"
            " steps of distillation from the original (T=4, alpha=0.9, "
            f"lr {args.finetune_lr}, cosine); "
            "accuracy on the full 10,000-image test split"
        ),
        "threads": args.latency_threads,
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = Table(title="Fashion-MNIST: decoupled conversion vs original and separable twin")
    for column in ("model", "params", "MACs", "MACs ratio", "acc converted", "acc final", "b1 ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['params']:,}",
            f"{r['macs']:,}",
            f"{r['macs_reduction']:.2f}x",
            _pct(r["accuracy_before"]),
            _pct(r["accuracy_after"]),
            f"{r['latency_ms_b1']:.3f}",
        )
    Console().print(table)
    payload = {"meta": meta, "rows": rows, "conversions": conversions}
    write_atomic(args.out / "results.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.out / "results.md", markdown(rows, meta))
    print(f"wrote {args.out}/results.json and results.md in {meta['seconds']} s")


if __name__ == "__main__":
    main()
