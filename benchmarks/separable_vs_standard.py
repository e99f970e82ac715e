"""Depthwise separable vs standard 3x3 convolution: counted MAC ratio next to measured speed-up.

For each layer shape of the seed table, the bare separable layer (depthwise 3x3 + pointwise 1x1,
no norm/activation) is timed against its standard-conv twin in NCHW and channels_last. Then the
depthwise, pointwise and standard convs are timed one by one and placed on the roofline measured
in the same run.

Run:
    .venv/bin/python benchmarks/separable_vs_standard.py [--threads 1] [--repeats 15]
    .venv/bin/python benchmarks/separable_vs_standard.py --smoke   # one small layer

Writes results/benchmarks/separable_vs_standard.{json,md} and
results/benchmarks/separable_vs_standard_roofline.png (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse

import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console
from tqdm import tqdm

from sepconv.bench import LayerSpec, compare_twin, measure_ceilings, per_layer_latency
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.plots import plot_roofline
from sepconv.convert import standard_twin

# C_in -> C_out @ input side: the seed's layer shapes, stride 1, 3x3.
SPECS = (
    LayerSpec(32, 64, 112),
    LayerSpec(64, 128, 56),
    LayerSpec(128, 128, 56),
    LayerSpec(256, 256, 56),
    LayerSpec(256, 512, 28),
    LayerSpec(512, 512, 14),
)
SMOKE_SPECS = (LayerSpec(16, 32, 16),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=15)
    add_smoke_flag(parser, f"one layer, {SMOKE_SPECS[0]}, 3 repeats")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    specs = SMOKE_SPECS if args.smoke else SPECS
    if args.smoke:
        args.repeats = 3
    torch.manual_seed(0)

    ceilings = measure_ceilings(threads=args.threads)
    comparisons = [
        compare_twin(
            spec.separable(),
            spec.example(),
            label=str(spec),
            channels_last=channels_last,
            threads=args.threads,
            repeats=args.repeats,
        )
        for spec, channels_last in tqdm(
            [(s, cl) for s in specs for cl in (False, True)], desc="separable vs standard"
        )
    ]
    roofline_rows = []
    for spec in tqdm(specs, desc="roofline"):
        separable = spec.separable().eval()
        twin, _ = standard_twin(separable, spec.example())
        for model in (separable, twin):
            report = per_layer_latency(
                model, spec.example(), ceilings=ceilings, threads=args.threads, repeats=args.repeats
            )
            roofline_rows += [(str(spec), row) for row in report.rows if row.roofline is not None]

    threads = comparisons[0].separable.threads
    speed = [
        [
            c.label,
            "NHWC" if c.channels_last else "NCHW",
            f"{c.separable_macs / 1e6:.1f}",
            f"{c.standard_macs / 1e6:.1f}",
            f"{c.mac_ratio:.2f}x",
            f"{c.separable.median_ms:.2f} ± {c.separable.iqr_ms:.2f}",
            f"{c.standard.median_ms:.2f} ± {c.standard.iqr_ms:.2f}",
            f"{c.latency_ratio:.2f}x",
        ]
        for c in comparisons
    ]
    speed_headers = [
        "layer",
        "memory",
        "separable MMACs",
        "standard MMACs",
        "MAC ratio",
        "separable ms (median ± IQR)",
        "standard ms (median ± IQR)",
        "measured speed-up",
    ]
    roof = [
        [
            layer,
            row.cost.kind if row.cost else "",
            f"{row.roofline.intensity:.1f}",
            f"{row.roofline.achieved_gflops:.1f}",
            row.roofline.bound,
            f"{100 * row.roofline.fraction_of_bound:.0f}%",
        ]
        for layer, row in roofline_rows
        if row.roofline is not None
    ]
    roof_headers = ["layer", "conv", "FLOP/byte", "GFLOP/s", "bound", "of bound"]

    console = Console(width=160)
    console.print(terminal_table("separable vs standard", speed_headers, speed))
    console.print(terminal_table("roofline", roof_headers, roof))

    run.folder.mkdir(parents=True, exist_ok=True)
    png = plot_roofline(
        [row for _, row in roofline_rows],
        ceilings,
        run.folder / f"{run.name}_roofline.png",
        title="seed layer shapes, NCHW, batch 1: depthwise, pointwise and standard convs",
    )
    data = {
        **run.record(threads),
        "ceilings": ceilings.to_dict(),
        "comparisons": [c.to_dict() for c in comparisons],
        "roofline": [{"layer": layer, **row.to_dict()} for layer, row in roofline_rows],
    }
    run.write(
        data,
        header("Depthwise separable vs standard 3x3 convolution", data) + "\n\n"
        "Batch 1, fp32, stride 1, bare convolutions (no norm/activation). MACs counted by "
        "`sepconv.analyze` (1 MAC = one multiply-add); times are medians ± interquartile range "
        "of repeated blocks. The machine was shared with other jobs during the run, so absolute "
        "times are noisy; compare the ratios, which come from the same run.\n\n"
        f"{markdown_table(speed_headers, speed)}\n\n"
        "## Roofline (NCHW)\n\n"
        f"Ceilings measured in this run: {ceilings.peak_gflops:.1f} GFLOP/s (2048x2048 fp32 "
        f"matmul), {ceilings.bandwidth_gbs:.1f} GB/s (128 MiB copy); ridge point "
        f"{ceilings.ridge:.1f} FLOP/byte. Bytes are the analyzer's unfused, no-reuse estimate "
        "(weights + input + output).\n\n"
        f"{markdown_table(roof_headers, roof)}\n\n"
        f"![roofline]({png.name})\n",
    )


if __name__ == "__main__":
    main()
