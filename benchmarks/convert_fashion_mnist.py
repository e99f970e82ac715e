"""Convert a trained standard-conv network on Fashion-MNIST into a depthwise separable one.

Trains a standard-conv network with :class:`sepconv.train.Trainer`, decouples its
3x3 convolutions at rank 1, 2 and 4 (Guo et al., "Network Decoupling: From Regular to Depthwise
Separable Convolutions", BMVC 2018), measures test accuracy right after conversion and after a
short knowledge-distillation fine-tune from the original (the same Trainer with
``teacher=original``), and puts params, MACs and CPU latency next to the original and to a
separable twin trained from scratch with the original's recipe. Two originals (``--arch``):

- ``cnn``: a small VGG-style CNN (``--width`` 16: 16-32-32-64-64 channels, 70k params); its twin
  makes every 3x3 layer but the stem a depthwise separable block.
- ``mobilenet_v1``: the standard-conv twin of MobileNetV1 (``--width-mult`` 0.25, small-input
  stem): every depthwise + pointwise pair made one standard 3x3 conv ("Conv MobileNet", Howard
  et al. 2017, Table 4), built as ``sepconv reproduce`` builds it; its separable twin is
  MobileNetV1 itself.

    .venv/bin/python benchmarks/convert_fashion_mnist.py [--epochs 12] [--threads 1]
    .venv/bin/python benchmarks/convert_fashion_mnist.py --arch mobilenet_v1 --epochs 8 \
        --threads 2 --channels-last --out results/convert/convert_fashion_mnist_mobilenet_v1

    .venv/bin/python benchmarks/convert_fashion_mnist.py --smoke --out /tmp/convert_smoke

Every training run is a Trainer output folder under ``--runs`` (default
``runs/convert_fashion_mnist``, git-ignored): a finished run is loaded from its
``model.safetensors``, an interrupted one resumes from ``last.safetensors``, so a rerun after an
interruption repeats no finished training. Writes ``results.json`` and ``results.md`` into
``--out`` (default ``results/convert/convert_fashion_mnist``; with ``--smoke``, where the runs
go: a width-4 CNN on 512 images, one epoch, rank 1, in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from convert_fashion_mnist_report import DESCRIPTIONS, headers, markdown, table_rows
from harness import ROOT, Run, add_smoke_flag, command_line, positive_int
from rich.console import Console
from torch import nn

from sepconv.analysis import analyze
from sepconv.bench import measure
from sepconv.bench.output import terminal_table
from sepconv.convert import separabilize
from sepconv.data import ImageDataset, channel_stats, default_augment, load_dataset
from sepconv.layers import ConvNormAct, DepthwiseSeparableConv2d
from sepconv.reproduce import RowConfig, build_row_model
from sepconv.train import TrainConfig, Trainer, evaluate, load_tensors

INPUT_SIZE = (1, 1, 28, 28)
DATA = "fashion-mnist"
DEFAULT = "convert_fashion_mnist"  # results/convert/DEFAULT
# The 1-channel stem conv of each original, kept standard (as in its separable twin).
STEMS = {"cnn": "0.conv", "mobilenet_v1": "stem.conv"}


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


def build_mobilenet_v1(width_mult: float, seed: int, separable: bool) -> nn.Module:
    """MobileNetV1 (``separable=True``) or its standard twin, as ``sepconv reproduce`` builds
    the rows ``mobilenet_v1`` and ``twin = "standard"`` (same initialisation rule)."""
    row = RowConfig(
        name="mobilenet_v1" if separable else "conv_mobilenet_v1",
        model="mobilenet_v1",
        model_kwargs={"width_mult": width_mult},
        twin=None if separable else "standard",
        seeds=1,
        train_images=None,
        recipe=TrainConfig(),
        overrides={},
    )
    return build_row_model(row, seed, num_classes=10, in_chans=1, image_size=28)


def run_trainer(
    model: nn.Module,
    config: TrainConfig,
    train: ImageDataset,
    test: ImageDataset,
    out_dir: Path,
    *,
    teacher: nn.Module | None = None,
    metadata: dict[str, Any],
) -> list[dict[str, Any]]:
    """Train ``model`` in place in ``out_dir``, or load it when that run already finished.

    Returns the per-epoch records (``log.jsonl``). An unfinished run resumes from its checkpoint;
    a finished one (``model.safetensors`` present) is loaded without training.
    """
    weights = out_dir / "model.safetensors"
    if weights.is_file():
        tensors, meta = load_tensors(weights)
        if meta["config"] != config.to_dict():
            raise ValueError(
                f"{weights} was trained with another config ({meta['config']}); delete "
                f"{out_dir} to retrain with {config.to_dict()}."
            )
        model.load_state_dict(tensors)
        print(f"loaded finished run {out_dir}", flush=True)
        return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    checkpoint = out_dir / "last.safetensors"
    trainer = Trainer(
        model,
        config,
        train,
        test,
        out_dir=out_dir,
        augment=default_augment(DATA, 28),
        teacher=teacher,
        metadata=metadata,
    )
    if checkpoint.is_file():
        print(f"resuming {checkpoint}", flush=True)
    return trainer.fit(resume=checkpoint if checkpoint.is_file() else None)


def latency(model: nn.Module, batch: int, threads: int, repeats: int) -> dict[str, float]:
    """Median and IQR of one eager forward pass on NCHW float32 input, in milliseconds."""
    model = model.to(memory_format=torch.contiguous_format).eval()
    x = torch.randn(batch, *INPUT_SIZE[1:])
    timing = measure(lambda: model(x), warmup=5, repeats=repeats, max_time_s=6.0, threads=threads)
    return {"median_ms": timing.median_ms, "iqr_ms": timing.iqr_ms}


def first(data: ImageDataset, count: int | None) -> ImageDataset:
    """The first ``count`` images of ``data`` (all of them for ``None``)."""
    if count is None:
        return data
    return ImageDataset(data.images[:count], data.labels[:count], data.classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", choices=sorted(STEMS), default="cnn", help="the original")
    parser.add_argument("--width", type=positive_int, default=16, help="stem width of the CNN")
    parser.add_argument("--width-mult", type=float, default=0.25, help="MobileNetV1 width")
    parser.add_argument(
        "--channels-last", action="store_true", help="train in channels_last (faster on CPU)"
    )
    parser.add_argument("--epochs", type=positive_int, default=12, help="original and twin")
    parser.add_argument("--finetune-epochs", type=positive_int, default=2)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--ranks", type=positive_int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=positive_int, default=1, help="all phases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "convert_fashion_mnist")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.{json,md}")
    add_smoke_flag(parser, "a width-4 CNN on 512 images, 1 epoch, rank 1")
    args = parser.parse_args()
    images, repeats = None, 30
    if args.smoke:
        args.arch, args.width, args.epochs, args.finetune_epochs, args.ranks = "cnn", 4, 1, 1, [1]
        images, repeats = 512, 3
    with tempfile.TemporaryDirectory(prefix="sepconv-convert-smoke-") as tmp:
        if args.smoke:
            args.runs = Path(tmp)
        out = args.out or (args.runs if args.smoke else ROOT / "results" / "convert" / DEFAULT)
        convert(args, Run(command_line(__file__), out, "results"), images, repeats)


def convert(args: argparse.Namespace, run: Run, images: int | None, repeats: int) -> None:
    """Train, convert, fine-tune and time as ``args`` say; write the run's results."""
    torch.set_num_threads(args.threads)
    train = first(load_dataset(DATA, "train"), images)
    test = first(load_dataset(DATA, "test"), images)
    mean, std = channel_stats(train.images)
    # The trainer's defaults otherwise.
    recipe = TrainConfig(epochs=args.epochs, seed=args.seed, channels_last=args.channels_last)
    finetune = TrainConfig(
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        warmup_epochs=0.0,
        seed=args.seed,
        channels_last=args.channels_last,
    )
    stem = STEMS[args.arch]

    # Run folders named by what decides them, so that other settings never reuse a run.
    if args.arch == "cnn":
        trained_name = f"w{args.width}_e{args.epochs}_s{args.seed}"
        size = {"width": args.width}
    else:
        trained_name = f"mnv1x{args.width_mult:g}_e{args.epochs}_s{args.seed}"
        size = {"width_mult": args.width_mult}
    if args.channels_last:
        trained_name += "_cl"
    tuned_name = f"ft{args.finetune_epochs}_lr{args.finetune_lr:g}"

    def accuracy(model: nn.Module) -> float:
        return evaluate(model, test, mean=mean, std=std).accuracy

    runs: dict[str, list[dict[str, Any]]] = {}

    def make(separable: bool) -> nn.Module:
        if args.arch == "mobilenet_v1":
            return build_mobilenet_v1(args.width_mult, args.seed, separable)
        torch.manual_seed(args.seed)
        return build(args.width, separable)

    original = make(separable=False)
    runs["original"] = run_trainer(
        original, recipe, train, test, args.runs / f"original_{trained_name}",
        metadata={"role": "standard", "arch": args.arch, **size},
    )  # fmt: skip
    twin = make(separable=True)
    runs["twin"] = run_trainer(
        twin, recipe, train, test, args.runs / f"twin_{trained_name}",
        metadata={"role": "separable twin", "arch": args.arch, **size},
    )  # fmt: skip

    base_macs = analyze(original, INPUT_SIZE).macs
    rows: list[dict[str, Any]] = []

    def row(name: str, model: nn.Module, **accuracies: float | None) -> None:
        macs = analyze(model, INPUT_SIZE).macs
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "macs": macs,
                "macs_reduction": base_macs / macs,
                "accuracy_at_conversion": accuracies.get("at_conversion"),
                "accuracy_after_1_epoch": accuracies.get("after_1_epoch"),
                "accuracy": accuracies["final"],
            }
        )

    row("original (standard 3x3)", original, final=accuracy(original))
    conversions: dict[str, Any] = {}
    students: dict[str, nn.Module] = {}
    for rank in args.ranks:
        student, report = separabilize(original, rank=rank, skip=[stem], input_size=INPUT_SIZE)
        all_convs, _ = separabilize(original, rank=rank)
        at_conversion = accuracy(student)
        name = f"decoupled rank {rank}"
        runs[name] = run_trainer(
            student, finetune, train, test, args.runs / f"{trained_name}_rank{rank}_{tuned_name}",
            teacher=original, metadata={"role": name, "arch": args.arch, **size},
        )  # fmt: skip
        row(
            name,
            student,
            at_conversion=at_conversion,
            after_1_epoch=runs[name][0]["test_acc"],
            final=accuracy(student),
        )
        conversions[name] = {
            "report": report.to_dict(),
            "accuracy_at_conversion_stem_converted_too": accuracy(all_convs),
        }
        students[name] = student
    row("separable twin (from scratch)", twin, final=accuracy(twin))
    seconds_training = time.perf_counter() - run.started

    # Latency last, all models in one stretch, so that they share the machine's conditions.
    models = {rows[0]["model"]: original, **students, rows[-1]["model"]: twin}
    for r in rows:
        for batch in (1, 32):
            r[f"latency_b{batch}"] = latency(models[r["model"]], batch, args.threads, repeats)

    meta = {
        **run.record(args.threads),
        "seconds_training": round(seconds_training, 1),
        "latency_repeats": repeats,
        "arch": args.arch,
        "architecture": DESCRIPTIONS[args.arch].format(**size),
        "stem": stem,
        **size,
        "recipe": recipe.to_dict(),
        "finetune_recipe": finetune.to_dict(),
        "skipped": {"module": stem, "why": "the 1-channel stem, kept standard as in the twin"},
    }
    title = "Fashion-MNIST: decoupled conversion vs original and separable twin"
    Console(width=200).print(terminal_table(title, headers(args.finetune_epochs), table_rows(rows)))
    data = {"meta": meta, "rows": rows, "conversions": conversions, "log": runs}
    run.write(data, markdown(meta, rows, conversions, runs))


if __name__ == "__main__":
    main()
