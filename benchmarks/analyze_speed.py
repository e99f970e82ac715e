"""How long ``sepconv.analyze`` takes on EfficientNet-B7 at 600x600, next to its peers.

For sepconv's and torchvision's EfficientNet-B7 (random init) at 1x3x600x600, times in one run:
``sepconv.analyze`` (which costs shapes on the meta device), PyTorch's ``FlopCounterMode``
over an eager forward, and the bare eager forward (no counting), each the median of
``--repeats`` runs via ``torch.utils.benchmark``. The counted MACs of the two counters are
printed side by side as a check.

Run:
    .venv/bin/python benchmarks/analyze_speed.py [--threads 2] [--repeats 3]
    .venv/bin/python benchmarks/analyze_speed.py --smoke   # EfficientNet-B0 at 64x64, 1 repeat

Writes results/benchmarks/analyze_speed.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torchvision
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from rich.console import Console
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import sepconv
from sepconv.bench.output import markdown_table, terminal_table

SIZE, SMOKE_SIZE = (1, 3, 600, 600), (1, 3, 64, 64)


def models(name: str) -> dict[str, Callable[[], torch.nn.Module]]:
    """sepconv's and torchvision's model of ``name``, randomly initialised."""
    return {
        f"sepconv {name}": lambda: sepconv.create_model(name),
        f"torchvision {name}": getattr(torchvision.models, name),
    }


def flop_counter_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def median_s(fn: Callable[[], object], repeats: int, threads: int) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.timeit(repeats).median


def time_all(
    model: torch.nn.Module, x: torch.Tensor, repeats: int, threads: int
) -> dict[str, float]:
    """Median seconds of the analyzer and its two peers on one model, back to back."""
    size = tuple(x.shape)
    return {
        "analyze_s": median_s(lambda: sepconv.analyze(model, size), repeats, threads),
        "flop_counter_s": median_s(lambda: flop_counter_macs(model, x), repeats, threads),
        "eager_forward_s": median_s(lambda: forward(model, x), repeats, threads),
    }


HEADERS = [
    "model", "MACs (analyze)", "MACs (FlopCounterMode)", "ops", "analyze s", "FlopCounterMode s",
    "eager forward s", "analyze / forward",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=3)
    add_smoke_flag(parser, "EfficientNet-B0 at 64x64, 1 repeat")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    size, name = (SMOKE_SIZE, "efficientnet_b0") if args.smoke else (SIZE, "efficientnet_b7")
    title_name = "EfficientNet-" + name.rsplit("_", 1)[1].upper()
    repeats = 1 if args.smoke else args.repeats
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = torch.randn(size)

    rows = []
    for label, build in tqdm(models(name).items(), desc="models"):
        model = build().eval()
        report = sepconv.analyze(model, size)
        rows.append(
            {
                "model": label,
                "input_size": list(size),
                "analyze_macs": report.macs,
                "flop_counter_macs": flop_counter_macs(model, x),
                "rows": len(report.rows),
                **time_all(model, x, repeats, args.threads),
            }
        )

    table_rows = [
        [
            r["model"],
            f"{r['analyze_macs'] / 1e9:.3f}G",
            f"{r['flop_counter_macs'] / 1e9:.3f}G",
            str(r["rows"]),
            f"{r['analyze_s']:.2f}",
            f"{r['flop_counter_s']:.2f}",
            f"{r['eager_forward_s']:.2f}",
            f"{r['analyze_s'] / r['eager_forward_s']:.2f}x",
        ]
        for r in rows
    ]
    title = f"analyze at {'x'.join(map(str, size))}, median of {repeats}"
    Console(width=160).print(terminal_table(title, HEADERS, table_rows))
    data = {**run.record(args.threads), "repeats": repeats, "results": rows}
    side = f"{size[2]}x{size[3]}"
    run.write(
        data,
        header(f"Time to analyze {title_name} at {side}", data)
        + "\n\nSeconds, median of the repeats, all measured in the same run. `analyze` costs"
        " shapes on the meta device; FlopCounterMode and the bare forward compute for real.\n\n"
        + markdown_table(HEADERS, table_rows)
        + "\n",
    )


if __name__ == "__main__":
    main()
