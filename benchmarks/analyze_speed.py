"""How long ``sepconv.analyze`` takes on EfficientNet-B7 at 600x600, next to its peers.

For sepconv's and torchvision's EfficientNet-B7 (random init) at 1x3x600x600, times in one run:
``sepconv.analyze`` (which costs shapes on the meta device), PyTorch's ``FlopCounterMode``
over an eager forward, and the bare eager forward (no counting), each the median of
``--repeats`` runs via ``torch.utils.benchmark``. The counted MACs of the two counters are
printed side by side as a check.

Run:
    .venv/bin/python benchmarks/analyze_speed.py [--threads 2] [--repeats 3]

Writes results/benchmarks/analyze_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from rich.console import Console
from rich.table import Table
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import sepconv
from sepconv.bench import environment
from sepconv.bench.output import markdown_environment, markdown_table
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
SIZE = (1, 3, 600, 600)
MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "sepconv efficientnet_b7": lambda: sepconv.create_model("efficientnet_b7"),
    "torchvision efficientnet_b7": torchvision.models.efficientnet_b7,
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


def time_all(model: torch.nn.Module, x: torch.Tensor, repeats: int, threads: int) -> dict:
    """Median seconds of the analyzer and its two peers on one model, back to back."""
    return {
        "analyze_s": median_s(lambda: sepconv.analyze(model, SIZE), repeats, threads),
        "flop_counter_s": median_s(lambda: flop_counter_macs(model, x), repeats, threads),
        "eager_forward_s": median_s(lambda: forward(model, x), repeats, threads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    command = "python benchmarks/analyze_speed.py " + " ".join(sys.argv[1:])
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = torch.randn(SIZE)

    rows = []
    for label, build in tqdm(MODELS.items(), desc="models"):
        model = build().eval()
        report = sepconv.analyze(model, SIZE)
        rows.append(
            {
                "model": label,
                "input_size": list(SIZE),
                "analyze_macs": report.macs,
                "flop_counter_macs": flop_counter_macs(model, x),
                "rows": len(report.rows),
                **time_all(model, x, args.repeats, args.threads),
            }
        )

    headers = ["model", "MACs (analyze)", "MACs (FlopCounterMode)", "ops", "analyze s"]
    headers += ["FlopCounterMode s", "eager forward s", "analyze / forward"]
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
    table = Table(title=f"analyze at {'x'.join(map(str, SIZE))}, median of {args.repeats}")
    for h in headers:
        table.add_column(h, justify="left" if h == "model" else "right")
    for r in table_rows:
        table.add_row(*r)
    Console(width=160).print(table)

    env = environment(args.threads)
    write_json(
        RESULTS / "analyze_speed.json",
        {"command": command, "environment": env, "repeats": args.repeats, "results": rows},
    )
    write_text(
        RESULTS / "analyze_speed.md",
        "# Time to analyze EfficientNet-B7 at 600x600\n\n"
        + markdown_environment(env, command)
        + "\n\nSeconds, median of the repeats, all measured in the same run. `analyze` costs"
        " shapes on the meta device; FlopCounterMode and the bare forward compute for real.\n\n"
        + markdown_table(headers, table_rows)
        + "\n",
    )


if __name__ == "__main__":
    main()
