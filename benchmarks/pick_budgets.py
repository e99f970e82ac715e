"""Does ``sepconv pick``'s choice meet its budget when measured?

For each budget, picks the most accurate published MobileNetV1/V2/EfficientNet configuration
predicted under it, as ``sepconv pick`` does. Every configuration chosen is then built on the
profile's backend (``compile_for_inference``) and measured: the median of interleaved rounds,
all of them in the same rounds, the reference network timed after each round. The budgets default to
five, at the 15th, 30th, 50th, 70th and 85th percentile of the published configurations'
predicted latencies on the profile, so that each has candidates on both sides of it.

Run:
    .venv/bin/python benchmarks/pick_budgets.py --profile ort_2t.json
    .venv/bin/python benchmarks/pick_budgets.py --profile eager.json --budgets-ms 4 8 12 16 20
    .venv/bin/python benchmarks/pick_budgets.py --smoke   # calibrates eager for 60 s, 2 budgets

Writes results/benchmarks/pick_budgets.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from predict_validation import time_group

from sepconv.bench.output import markdown_table
from sepconv.deploy import compile_for_inference
from sepconv.predict import Profile, calibrate, pick, reference_timer

PERCENTILES = (15, 30, 50, 70, 85)


def choose(budgets: list[float], profile: Profile) -> list[dict[str, Any]]:
    """The choice under each budget, as ``sepconv pick`` makes it."""
    rows = []
    for budget in budgets:
        within, over = pick(budget, profile, check_machine=False)
        best = within[0] if within else None
        rows.append(
            {
                "budget_ms": budget,
                "config": best.config if best else None,
                "choice": best.config.label if best else None,
                "top1": best.config.top1 if best else None,
                "predicted_ms": best.ms if best else None,
                "fastest_ms": over[0].ms if not within else None,
            }
        )
    return rows


def measure_choices(
    rows: list[dict[str, Any]], profile: Profile, rounds: int
) -> tuple[list[float], dict[str, int]]:
    """Build every configuration chosen and measure them in the same interleaved rounds; the
    reference network's readings after each round."""
    configs = list(dict.fromkeys(r["config"] for r in rows if r["config"] is not None))
    runners, inputs = [], []
    for config in configs:
        side = config.resolution
        runners.append(
            compile_for_inference(
                config.build(),
                backend=profile.backend,
                input_size=(3, side, side),
                threads=profile.threads,
                device=profile.device,
            )
        )
        inputs.append(torch.randn(1, 3, side, side, device=profile.device))
    tally = {"kept": 0, "disturbed": 0, "busy": 0}
    readings: list[float] = []
    if runners:
        with reference_timer(profile) as probe:
            measured = time_group(runners, inputs, rounds, tally, profile.device, probe, readings)
        by_config = dict(zip(configs, measured, strict=True))
        for row in rows:
            if row["config"] is not None:
                row["measured_ms"] = by_config[row["config"]]
                row["meets_budget"] = row["measured_ms"] <= row["budget_ms"]
    for row in rows:
        row["config"] = None if row["config"] is None else row["choice"]
    return readings, tally


def report(data: dict[str, Any]) -> str:
    lines = [header("Does the picker's choice meet its budget?", data), clock_line(data), ""]
    heads = ["budget ms", "choice", "top-1 %", "predicted ms", "measured ms", "meets"]
    table = []
    for r in data["rows"]:
        if r["choice"] is None:
            table.append([f"{r['budget_ms']:g}", "(none predicted under it)", "",
                          f"fastest {r['fastest_ms']:.2f}", "", ""])  # fmt: skip
            continue
        table.append(
            [
                f"{r['budget_ms']:g}",
                r["choice"],
                f"{r['top1']:.1f}",
                f"{r['predicted_ms']:.2f}",
                f"{r['measured_ms']:.2f}",
                "yes" if r["meets_budget"] else "**no**",
            ]
        )
    lines.append(markdown_table(heads, table))
    lines.append("")
    mine = [r for r in data["rows"] if r["choice"] is not None]
    met = sum(r["meets_budget"] for r in mine)
    lines.append(f"- The choice met its budget under {met} of {len(mine)} budgets.")
    typical = data["reference_typical_ms"]
    if typical is not None and data["reference_readings_s"]:
        during = [1e3 * s / typical for s in data["reference_readings_s"]]
        lines.append(
            f"- Reference network ({data['reference']}): {min(during):.2f}-{max(during):.2f}x "
            "its time in the calibration during the measurement rounds."
        )
    lines.append(
        f"- Profile: {data['profile']}; every choice measured in {data['rounds']} interleaved "
        "rounds (median)."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=None, help="a `sepconv calibrate` profile")
    parser.add_argument("--budgets-ms", type=float, nargs="*", default=None, help="budgets, ms")
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--threads", type=positive_int, default=2, help="without --profile")
    add_smoke_flag(parser, "calibrate eager for 60 s, then 2 budgets in 2 rounds")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.smoke:
        args.rounds = 2
    if args.profile is not None:
        profile = Profile.load(args.profile)
    else:
        profile = calibrate("eager", threads=args.threads, budget_s=60.0, progress=print)
    profile.check_here()
    budgets = args.budgets_ms
    if not budgets:
        everything, _ = pick(1e9, profile, check_machine=False)
        predicted = [c.ms for c in everything]
        shares = PERCENTILES[1::3] if args.smoke else PERCENTILES
        budgets = [round(float(np.percentile(predicted, q)), 2) for q in shares]
    rows = choose(budgets, profile)
    readings, tally = measure_choices(rows, profile, args.rounds)
    typical = profile.reference_s
    data = {
        **run.record(profile.threads),
        "profile": profile.describe(),
        "rounds": args.rounds,
        "budgets_ms": budgets,
        "rows": rows,
        "reference": profile.validation.get("speed", {}).get("network"),
        "reference_typical_ms": None if typical is None else 1e3 * typical,
        "reference_readings_s": readings,
        "blocks": tally,
    }
    text = report(data)
    run.write(data, text)
    print(text)


if __name__ == "__main__":
    main()
