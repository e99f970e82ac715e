"""``sepconv pick``: the most accurate published MobileNet predicted to meet a latency budget."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sepconv.predict.choices import Choice
    from sepconv.predict.profile import Profile
    from sepconv.utils.tables import FitTable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pick",
        help="the most accurate published MobileNetV1/V2/EfficientNet predicted under a "
        "latency budget here",
        description="Predict the latency (batch 1) of every MobileNetV1, MobileNetV2 and "
        "EfficientNet configuration (width x resolution) with a published ImageNet top-1, on "
        "the profile's machine and backend, keep those under the budget and rank them by "
        "top-1. With --verify the chosen one is also built and measured on the backend.",
    )
    parser.add_argument("--budget-ms", type=float, required=True, help="latency budget, ms")
    parser.add_argument("--profile", required=True, help="a profile of `sepconv calibrate`")
    parser.add_argument("--verify", action="store_true", help="build and measure the chosen model")
    parser.add_argument("--top", type=int, default=5, help="candidates listed (default 5)")
    parser.add_argument("--json", action="store_true", help="print only a JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from sepconv.cli._console import console
    from sepconv.predict.choices import pick
    from sepconv.predict.profile import Profile
    from sepconv.utils.validation import bounded_int, finite_number

    finite_number(
        "--budget-ms",
        args.budget_ms,
        low=0,
        low_inclusive=False,
        expected="a positive number of milliseconds",
    )
    bounded_int("--top", args.top, 1, 1000)
    profile = Profile.load(args.profile)
    profile.check_here(source=f"Profile file {args.profile!r}")
    within, over = pick(args.budget_ms, profile, check_machine=False)
    measured = verify(within[0], profile) if (args.verify and within) else None
    result = {
        "budget_ms": args.budget_ms,
        "profile": profile.describe(),
        "chosen": _entry(within[0]) if within else None,
        "measured_ms": measured,
        "meets_budget": None if measured is None else measured <= args.budget_ms,
        "within_budget": [_entry(c) for c in within],
        "fastest_over_budget": _entry(over[0]) if over else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = console()
    out.print(choices_table(within[: args.top], args.budget_ms))
    if not within:
        fastest = over[0]
        out.print(
            f"no published configuration is predicted under {args.budget_ms:g} ms; the "
            f"fastest is {fastest.config.label} at {fastest.ms:.2f} ms",
            markup=False,
        )
        return 0
    best = within[0]
    line = (
        f"chosen: {best.config.label}, top-1 {best.config.top1:.1f}% ({best.config.source}), "
        f"predicted {best.ms:.2f} ms"
    )
    if measured is not None:
        verdict = "meets" if measured <= args.budget_ms else "MISSES"
        line += f", measured {measured:.2f} ms: {verdict} the budget"
    out.print(line, markup=False)
    return 0


def _entry(choice: Choice) -> dict[str, object]:
    c = choice.config
    return {
        "model": c.model,
        "width_mult": c.width,
        "input_size": c.resolution,
        "top1": c.top1,
        "source": c.source,
        "predicted_ms": choice.ms,
    }


def verify(choice: Choice, profile: Profile) -> float:
    """Build the chosen model and measure it on the profile's backend: median ms, batch 1."""
    import torch

    from sepconv.bench.allocator import keep_freed_memory
    from sepconv.bench.timing import measure
    from sepconv.deploy.runtime import compile_for_inference
    from sepconv.predict.quiet import quiet_measure

    keep_freed_memory()  # measured as the profile was (sepconv.bench.allocator)
    side = choice.config.resolution
    net = compile_for_inference(
        choice.config.build(),
        backend=profile.backend,
        input_size=(3, side, side),
        threads=profile.threads,
        device=profile.device,
    )
    x = torch.randn(1, 3, side, side)
    if profile.device == "cuda":
        return measure(
            lambda: net(x), warmup=3, repeats=15, min_block_s=0.05, device=profile.device
        ).median_ms
    return quiet_measure(lambda: net(x), warmup=3, repeats=15, min_block_s=0.05).median_ms


def choices_table(choices: list[Choice], budget_ms: float) -> FitTable:
    """The configurations within the budget, most accurate first."""
    from sepconv.utils.tables import Column, FitTable

    rows = [
        [
            c.config.label,
            f"{c.config.top1:.1f}",
            f"{c.ms:.2f}",
            f"{c.prediction.macs / 1e6:.0f}",
            c.config.source,
        ]
        for c in choices
    ]
    return FitTable(
        f"published configurations predicted under {budget_ms:g} ms",
        [
            Column("model", "left"),
            Column("top-1 %", short="top-1"),
            Column("predicted ms", short="ms"),
            Column("MMACs", drop=2),
            Column("source of top-1", "left", short="source", drop=1),
        ],
        rows,
        caption="ImageNet-1k top-1, single crop, as published; latency predicted at batch 1",
    )
