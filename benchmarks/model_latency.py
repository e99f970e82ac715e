"""Whole-model latency of the sepconv model family at batch 1 and 32, next to counted MACs.

MobileNetV1, MobileNetV2 and EfficientNet-B0 (separable) against ResNet-50 and VGG-16 (standard
convs), all from the sepconv registry, randomly initialised, fp32, NCHW, 224x224. Then the
separable-vs-standard story at model scale: MobileNetV1 and MobileNetV2 against their
standard-conv twins (each depthwise+pointwise pair made one 3x3 conv), batch 1.

Run:
    .venv/bin/python benchmarks/model_latency.py [--threads 1]
    .venv/bin/python benchmarks/model_latency.py --smoke   # 2 small models at 64x64

Writes results/benchmarks/model_latency.{json,md,png} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse

import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console
from tqdm import tqdm

import sepconv
from sepconv.bench import compare_twin, measure_latency
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.plots import plot_latency_vs_macs

MODELS = ("mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "resnet50", "vgg16")
TWINS = ("mobilenet_v1", "mobilenet_v2")
BATCHES = (1, 32)
SIZE = 224
# --smoke: (models, twins, batches, input side)
SMOKE = (("mobilenet_v1_025", "mobilenet_v2_050"), ("mobilenet_v1_025",), (1, 2), 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument(
        "--max-time", type=float, default=30.0, help="time budget per point, seconds"
    )
    add_smoke_flag(parser, "2 small models at 64x64, batch 1 and 2, 3 repeats")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    models, twin_models, batches, side = SMOKE if args.smoke else (MODELS, TWINS, BATCHES, SIZE)
    if args.smoke:
        args.repeats, args.max_time = 3, 1.0
    torch.manual_seed(0)

    macs = {}
    points = []
    for name in tqdm(models, desc="models"):
        model = sepconv.create_model(name).eval()
        macs[name] = sepconv.analyze(model, (1, 3, side, side)).macs
        for batch in batches:
            point = measure_latency(
                model,
                batch=batch,
                input_size=side,
                threads=args.threads,
                warmup=1 if batch > 1 else 3,
                repeats=args.repeats,
                max_time_s=args.max_time,
            )
            points.append((name, point))
    twins = [
        compare_twin(
            sepconv.create_model(name),
            torch.randn(1, 3, side, side),
            label=name,
            threads=args.threads,
            repeats=args.repeats,
        )
        for name in tqdm(twin_models, desc="twins")
    ]

    threads = points[0][1].timing.threads
    latency_headers = [
        "model", "GMACs/image", "batch", "median ms (± IQR)", "samples", "images/s", "GMAC/s",
    ]  # fmt: skip
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
        "model", "pairs", "GMACs", "twin GMACs", "MAC ratio", "ms", "twin ms", "measured speed-up",
    ]  # fmt: skip
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
    console.print(terminal_table("model latency", latency_headers, latency))
    console.print(terminal_table("standard twins, batch 1", twin_headers, twin_rows))

    run.folder.mkdir(parents=True, exist_ok=True)
    png = plot_latency_vs_macs(
        [(name, macs[name], p.timing.median_ms) for name, p in points if p.batch == 1],
        run.folder / f"{run.name}.png",
        title=f"batch 1, {side}x{side}, fp32, {threads} thread(s)",
    )
    data = {
        **run.record(threads),
        "input_size": side,
        "macs_per_image": macs,
        "points": [{"model": name, **p.to_dict()} for name, p in points],
        "twins": [c.to_dict() for c in twins],
    }
    run.write(
        data,
        header("Model latency", data) + "\n\n"
        f"sepconv registry models, randomly initialised, eval mode, fp32, NCHW, {side}x{side}. "
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
