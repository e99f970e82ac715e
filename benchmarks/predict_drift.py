"""Does a profile keep predicting this machine? The same models measured again and again after
one calibration.

A latency profile describes the machine as it ran while it was calibrated. If the machine's
own speed moves afterwards (a virtual machine's host can slow it for minutes, with nothing
inside it to show it), no per-kernel model can follow. This benchmark calibrates (or loads a
profile), draws ``--models`` random models of the design space (as ``predict_accuracy.py``
does, trained-looking BatchNorm statistics), predicts each once, and then measures all of them
in ``--passes`` passes ``--gap-s`` seconds apart (each pass: the median of ``--rounds``
interleaved rounds, ``predict_accuracy.time_group``). Per pass: minutes since the calibration
ended, the prediction's mean error, share within 10% and RMSPE, and the models' median speed
against the first pass (measured time of pass 1 over this pass's, per model).

Run:
    .venv/bin/python benchmarks/predict_drift.py [--backend eager] [--passes 3] [--gap-s 240]
    .venv/bin/python benchmarks/predict_drift.py --profile eager.json --passes 4
    .venv/bin/python benchmarks/predict_drift.py --smoke   # calibrates for 60 s, 1 model

Writes results/benchmarks/predict_drift.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from predict_validation import randomize_norms, summary, time_group

from sepconv.bench.output import markdown_table
from sepconv.deploy import compile_for_inference
from sepconv.predict import (
    MOBILENET_STYLES,
    Profile,
    UnpredictableKernelError,
    calibrate,
    predict_latency,
    sample_network,
)

DRAWS = 10  # models drawn at most per model wanted (a short profile misses some kernel groups)
HEADERS = [
    "pass", "minutes after calibration", "mean error", "within 10%", "RMSPE",
    "speed against pass 1",
]  # fmt: skip


def measure_passes(
    profile: Profile, count: int, passes: int, gap_s: float, rounds: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The drawn models with their predictions, and each pass's measured times."""
    rng = np.random.default_rng(seed)
    models, runners, inputs = [], [], []
    for _ in range(DRAWS * count):  # a model the profile cannot predict is drawn again
        if len(models) == count:
            break
        spec = sample_network(rng, MOBILENET_STYLES)
        model = randomize_norms(spec.build(), rng)
        side = spec.resolution
        try:
            predicted = predict_latency(model, side, profile).ms
        except UnpredictableKernelError:
            continue
        models.append({"model": spec.describe(), "predicted_ms": predicted})
        runners.append(
            compile_for_inference(
                model, backend=profile.backend, input_size=(3, side, side), threads=profile.threads
            )
        )
        inputs.append(torch.randn(1, 3, side, side))
    if not models:
        raise SystemExit(
            f"the profile predicts none of {DRAWS * count} drawn models; calibrate longer"
        )
    results = []
    for index in range(passes):
        if index:
            time.sleep(gap_s)
        tally = {"kept": 0, "disturbed": 0, "busy": 0}
        measured = time_group(runners, inputs, rounds, tally)
        results.append({"at": time.time(), "measured_ms": measured, "blocks": tally})
        print(f"pass {index + 1}/{passes} measured", flush=True)
    return models, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, help="a profile of `sepconv calibrate`")
    parser.add_argument("--backend", default="eager", help="what to calibrate without one")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--budget-s", type=float, default=300.0, help="calibration budget")
    parser.add_argument("--models", type=positive_int, default=12)
    parser.add_argument("--passes", type=positive_int, default=3)
    parser.add_argument("--gap-s", type=float, default=240.0, help="pause between passes")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--seed", type=int, default=5, help="seed of the drawn models")
    add_smoke_flag(parser, "calibrate eager for 60 s (unless --profile), then 1 model in 2 passes")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    if args.smoke:
        args.budget_s, args.models, args.passes, args.gap_s, args.rounds = 60.0, 1, 2, 0.5, 1
    if args.profile is not None:
        profile = Profile.load(args.profile)
    else:
        profile = calibrate(
            args.backend, threads=args.threads, budget_s=args.budget_s, progress=print
        )
    profile.check_here()
    if not profile.created:
        raise SystemExit(f"--profile: {args.profile} does not say when it was made; calibrate anew")
    calibrated_at = datetime.datetime.fromisoformat(profile.created).timestamp()
    models, passes = measure_passes(
        profile, args.models, args.passes, args.gap_s, args.rounds, args.seed
    )
    predicted = np.array([m["predicted_ms"] for m in models])
    first = np.array(passes[0]["measured_ms"])
    rows = []
    for index, p in enumerate(passes):
        measured = np.array(p["measured_ms"])
        p["minutes_after_calibration"] = (p["at"] - calibrated_at) / 60
        p["error"] = summary(list(predicted / measured - 1))
        p["speed_against_first"] = float(np.median(first / measured))
        rows.append(
            [
                str(index + 1),
                f"{p['minutes_after_calibration']:.1f}",
                f"{100 * p['error']['mean_error']:+.1f}%",
                f"{100 * p['error']['within_10pct']:.0f}%",
                f"{100 * p['error']['rmspe']:.1f}%",
                f"{p['speed_against_first']:.2f}",
            ]
        )
    data = {
        **run.record(profile.threads),
        "profile": profile.describe(),
        "models": models,
        "passes": passes,
    }
    table = markdown_table(HEADERS, rows)
    print(table)
    run.write(
        data,
        header("Does a profile keep predicting this machine?", data)
        + f"\n\nProfile: {profile.describe()} (calibrated in {profile.elapsed_s:.0f} s). "
        f"{len(models)} random models (seed {args.seed}) predicted once, then measured in "
        f"{len(passes)} passes {args.gap_s:g} s apart, each the median of {args.rounds} "
        "interleaved rounds. *speed against pass 1*: the median over models of pass 1's time "
        f"over this pass's (below 1: slower than in pass 1).\n\n{table}\n",
    )


if __name__ == "__main__":
    main()
