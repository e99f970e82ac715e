"""Whole-model latency of the sepconv model family at batch 1 and 32, next to counted MACs.

MobileNetV1, MobileNetV2 and EfficientNet-B0 (separable) against ResNet-50 and VGG-16 (standard
convs), all from the sepconv registry, randomly initialised, fp32, NCHW, 224x224. Then the
separable-vs-standard story at model scale: MobileNetV1 and MobileNetV2 against their
standard-conv twins (each depthwise+pointwise pair made one 3x3 conv), batch 1.

Run:
    .venv/bin/python benchmarks/model_latency.py [--threads 1]

Writes results/benchmarks/model_latency.{json,md} and results/benchmarks/model_latency.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

import sepconv
from sepconv.bench import compare_twin, environment, measure_latency
from sepconv.bench.output import markdown_environment, markdown_table
from sepconv.bench.plots import plot_latency_vs_macs
from sepconv.utils.files import write_json, write_text

MODELS = ("mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "resnet50", "vgg16")
TWINS = ("mobilenet_v1", "mobilenet_v2")
BATCHES = (1, 32)
SIZE = 224
RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--max-time", type=float, default=30.0, help="time budget per point, seconds"
    )
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/model_latency.py", *sys.argv[1:]])
    torch.manual_seed(0)

    macs = {}
    points = []
    for name in tqdm(MODELS, desc="models"):
        model = sepconv.create_model(name).eval()
        macs[name] = sepconv.analyze(model, (1, 3, SIZE, SIZE)).macs
        for batch in BATCHES:
            point = measure_latency(
                model,
                batch=batch,
                input_size=SIZE,
                threads=args.threads,
                warmup=1 if batch > 1 else 3,
                repeats=args.repeats,
                max_time_s=args.max_time,
            )
            points.append((name, point))
    twins = [
        compare_twin(
            sepconv.create_model(name),
            torch.randn(1, 3, SIZE, SIZE),
            label=name,
            threads=args.threads,
            repeats=args.repeats,
        )
        for name in tqdm(TWINS, desc="twins")
    ]

    env = environment(points[0][1].timing.threads)
    latency_headers = [
        "model",
        "GMACs/image",
        "batch",
        "median ms (± IQR)",
        "samples",
        "images/s",
        "GMAC/s",
    ]
    latency = [
        [
            name,
            f"{macs[name] / 1e9:.3f}",
            p.batch,
            f"{p.timing.median_ms:.1f} ± {p.timing.iqr_ms:.1f}",
            len(p.timing.samples_s),
            f"{p.images_per_s:.1f}",
            f"{macs[name] * p.images_per_s / 1e9:.1f}",
        ]
        for name, p in points
    ]
    twin_headers = [
        "model",
        "pairs",
        "GMACs",
        "twin GMACs",
        "MAC ratio",
        "ms",
        "twin ms",
        "measured speed-up",
    ]
    twin_rows = [
        [
            c.label,
            c.pairs,
            f"{c.separable_macs / 1e9:.3f}",
            f"{c.standard_macs / 1e9:.3f}",
            f"{c.mac_ratio:.2f}x",
            f"{c.separable.median_ms:.1f} ± {c.separable.iqr_ms:.1f}",
            f"{c.standard.median_ms:.1f} ± {c.standard.iqr_ms:.1f}",
            f"{c.latency_ratio:.2f}x",
        ]
        for c in twins
    ]
    console = Console(width=160)
    for title, headers, rows in (
        ("model latency", latency_headers, latency),
        ("standard twins, batch 1", twin_headers, twin_rows),
    ):
        table = Table(title=title)
        for h in headers:
            table.add_column(h)
        for r in rows:
            table.add_row(*map(str, r))
        console.print(table)

    png = plot_latency_vs_macs(
        [(name, macs[name], p.timing.median_ms) for name, p in points if p.batch == 1],
        RESULTS / "model_latency.png",
        title=f"batch 1, {SIZE}x{SIZE}, fp32, {env['threads']} thread(s)",
    )
    write_json(
        RESULTS / "model_latency.json",
        {
            "command": command,
            "environment": env,
            "input_size": SIZE,
            "macs_per_image": macs,
            "points": [{"model": name, **p.to_dict()} for name, p in points],
            "twins": [c.to_dict() for c in twins],
        },
    )
    write_text(
        RESULTS / "model_latency.md",
        "# Model latency\n\n"
        f"{markdown_environment(env, command)}\n\n"
        f"sepconv registry models, randomly initialised, eval mode, fp32, NCHW, {SIZE}x{SIZE}. "
        "Headline MACs per image counted by `sepconv.analyze` (1 MAC = one multiply-add). "
        "Times are medians ± interquartile range of repeated calls; slow points stop after a "
        f"{args.max_time:g} s budget with at least 3 samples (column `samples`). The machine "
        "was shared with other jobs during the run, so absolute times are noisy; compare within "
        "the table.\n\n"
        f"{markdown_table(latency_headers, latency)}\n\n"
        "## Separable models against their standard-conv twins (batch 1)\n\n"
        "Each depthwise+pointwise pair replaced by one standard 3x3 conv with the same "
        "channels, stride and dilation (`sepconv.convert.standard_twin`).\n\n"
        f"{markdown_table(twin_headers, twin_rows)}\n\n"
        f"![latency vs MACs]({png.name})\n",
    )


if __name__ == "__main__":
    main()
