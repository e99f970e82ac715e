"""How well a calibration profile predicts the latency of models it never saw.

Draws random models from the MobileNet family's design space (``sepconv.predict.sample_network``:
width, resolution, depth per stage, expansion, kernel size, SE on or off, activation; BatchNorm
statistics randomised so that folding leaves real biases), predicts each from the profile, then
builds it on the profile's backend (``compile_for_inference``) and measures it: the median of
interleaved rounds, in groups of models timed round-robin, round r of every group before round
r + 1 of any, so that each model's rounds span the whole run as a calibration's timings span
it (``--no-spread``: a group's rounds one after another). Reports the share of models within
10% and 5% of their measured latency and the RMSPE, next to the same prediction with the
profile's kernel scale set to 1 (the kernels as timed alone; an eager profile keeps the
module-call cost it fitted together with the scale, ``sepconv.predict.whole_networks``) and
two baselines fitted on the same
profile's kernel measurements: MACs only (``t = a + b * MACs`` per kernel) and a roofline
(``t = a + max(MACs / P, bytes / W)`` per kernel). The noise floor beside them is the runtime
timed against itself: one model per group is built twice and both are timed in the same rounds.

Run (one profile per backend; ``--compare`` judges more profiles on the same measured models):
    .venv/bin/python benchmarks/predict_accuracy.py --profiles ort.json eager.json --models 100
    .venv/bin/python benchmarks/predict_accuracy.py --smoke   # calibrates eager for 60 s, 3 models

Writes results/benchmarks/predict_accuracy.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from predict_baselines import baseline_ms, fit_baselines
from predict_validation import GROUP, compared, draw_group, summary, time_groups

from sepconv.bench.load import OtherLoad
from sepconv.bench.output import markdown_table
from sepconv.deploy import compile_for_inference
from sepconv.models import mobilenet_v2
from sepconv.predict import (
    Profile,
    UnpredictableKernelError,
    calibrate,
    predict_latency,
    reference_timer,
)
from sepconv.predict.latency import predict_trace
from sepconv.predict.trace import trace_ops

ROWS = (  # the report's rows: a summary of the result and its label
    ("predicted", "sepconv (kernels)"),
    ("rechecked", "sepconv, speed rechecked"),
    ("kernels_alone", "sepconv, kernel scale 1"),
    ("macs_only", "MACs only"),
    ("roofline_only", "roofline only"),
    ("noise_floor", "noise: runtime vs itself"),
)


def run_backend(
    profile: Profile, count: int, rounds: int, seed: int, others: list[Profile], spread: bool
) -> dict[str, Any]:
    """``others``: further profiles, those of this backend judged on the same measured models;
    ``spread``: each model's rounds spread over the whole run (``time_groups``). Every model
    is built before any is timed, and all are held at once (about 110 sessions or modules)."""
    others = [o for o in others if o.backend == profile.backend]
    profile.check_here()
    device = profile.device
    variant = profile.variants[0]
    fits = fit_baselines(profile, variant)
    as_timed = dataclasses.replace(profile, kernel_scale={})  # every kernel scale 1
    rng = np.random.default_rng(seed)
    seen = {k for k, _ in profile.samples}
    rows: list[dict[str, Any]] = []
    noise: list[float] = []
    load = OtherLoad()
    # The process's first prediction pays once for what PyTorch imports on first use (its
    # compiler package, for the meta tensors of the trace): timed apart from the models'.
    began = time.perf_counter()
    predict_latency(mobilenet_v2(), 224, profile, check_machine=False)
    first_s = time.perf_counter() - began
    tally = {"kept": 0, "disturbed": 0, "busy": 0}
    unpredictable: list[dict[str, str]] = []
    # The profile's reference network, timed after every round as the calibration timed it:
    # how much slower than in the calibration the machine ran while each group was measured
    # (sepconv.predict.speed; None for a profile made before it was timed).
    with ExitStack() as reference:
        probe = reference.enter_context(reference_timer(profile)) if profile.reference_s else None
        speeds: list[float] = []
        built: list[tuple[list[dict[str, Any]], list, list]] = []  # rows, runners, inputs
        for start in range(0, count, GROUP):
            drawn = draw_group(rng, min(GROUP, count - start))
            runners, inputs, models, sides, group = [], [], [], [], []
            for spec, model in drawn:
                side = spec.resolution
                began = time.perf_counter()
                try:
                    p = predict_latency(model, side, profile)
                except UnpredictableKernelError as err:  # a miss, reported; never a silent zero
                    unpredictable.append({"model": spec.describe(), "why": str(err)})
                    continue
                predict_s = time.perf_counter() - began
                # The same prediction with the kernels as timed alone (kernel scale 1; an eager
                # profile's module-call cost stays as fitted with the scale).
                trace, shape = trace_ops(model, (1, 3, side, side)), (1, 3, side, side)
                alone = predict_trace(trace, shape, as_timed)
                models.append(model)
                sides.append(side)
                kernels = [k.kernel for k in p.kernels]  # the trace predict_latency made
                ms = {
                    **{
                        f"compared{j}": predict_trace(trace, shape, o).ms
                        for j, o in enumerate(others)
                    },
                    "predicted": p.ms,
                    "kernels_alone": alone.ms,
                    **baseline_ms(fits, profile, p.variant, kernels),
                }
                group.append(
                    {
                        "model": spec.describe(),
                        "macs": p.macs,
                        "predict_s": predict_s,
                        "kernels": len(kernels),
                        "seen_kernels": sum(k in seen for k in kernels),
                        **{f"{k}_ms": v for k, v in ms.items()},
                    }
                )
                net = compile_for_inference(
                    model,
                    backend=profile.backend,
                    input_size=(3, side, side),
                    threads=profile.threads,
                    device=device,
                )
                runners.append(net)
                inputs.append(torch.randn(1, 3, side, side, device=device))
            print(f"{profile.backend}: {start + len(drawn)}/{count} models built", flush=True)
            if not runners:
                continue
            twin = compile_for_inference(
                models[0],
                backend=profile.backend,
                input_size=(3, sides[0], sides[0]),
                threads=profile.threads,
                device=device,
            )
            built.append((group, [*runners, twin], [*inputs, inputs[0]]))
        timed = time_groups([b[1:] for b in built], rounds, tally, device, probe, spread)
        for (group, _, _), (measured, readings) in zip(built, timed, strict=True):
            # The prediction at the speed the reference network measured meanwhile, after the
            # rounds' models as in the calibration after its networks: ``profile.at_speed``.
            factor = float(np.median(readings)) / profile.reference_s if readings else None
            if factor is not None:
                speeds.append(factor)
            for row, model_ms in zip(group, measured[:-1], strict=True):
                row["measured_ms"] = model_ms
                if factor is not None:
                    row["speed_factor"] = factor
                    row["rechecked_ms"] = row["predicted_ms"] * factor
            rows += group
            noise.append(measured[-1] / measured[0] - 1)
    if not rows:
        raise SystemExit(
            f"{profile.backend}: the profile predicts none of the {count} drawn models "
            f"({unpredictable[0]['why']}); calibrate for longer"
        )
    result: dict[str, Any] = {
        "profile": profile.describe(),
        "backend": profile.backend,
        "device": device,
        "threads": profile.threads,
        "fusions": list(profile.fusions),
        "calibration_s": profile.elapsed_s,
        "models": rows,
        "unpredictable": unpredictable,
        "other_cpu_share": load.share(),
        "noise": noise,
        "speed_factors": speeds,
        "spread_rounds": spread,
        "blocks": tally,
    }
    # An unpredictable model counts as a miss of the kernel predictor; the baselines are
    # judged on the models the predictor could predict (they predict every model).
    names = ["predicted", "kernels_alone", "macs_only", "roofline_only"]
    for name in names + (["rechecked"] if speeds else []):
        misses = len(unpredictable) if name in ("predicted", "kernels_alone", "rechecked") else 0
        result[name] = summary([r[f"{name}_ms"] / r["measured_ms"] - 1 for r in rows], misses)
    result["compared"] = [compared(rows, j, o, profile) for j, o in enumerate(others)]
    result["noise_floor"] = summary(noise)
    result["predict_s_max"] = max(r["predict_s"] for r in rows)
    result["first_predict_s"] = first_s
    seen = sum(r["seen_kernels"] for r in rows)
    result["seen_kernel_share"] = seen / sum(r["kernels"] for r in rows)
    return result


def report(data: dict[str, Any]) -> str:
    lines = [header("Latency prediction on models it never saw", data), clock_line(data), ""]
    heads = ["backend", "predictor", "within 10%", "within 5%", "RMSPE", "mean error", "worst"]
    rows = []
    for b in data["backends"]:
        judged = [(b.get(name), label) for name, label in ROWS]
        for i, c in enumerate(b.get("compared", [])):
            label = f"sepconv, profile {i + 2} ({c['kernel_timing']} timing)"
            judged += [(c, label), (c.get("rechecked"), f"{label}, speed rechecked")]
        for s, label in judged:
            if s is None:  # a result from before the row existed
                continue
            rows.append(
                [b["backend"], label]
                + [f"{100 * s[k]:.0f}%" for k in ("within_10pct", "within_5pct")]
                + [f"{100 * s['rmspe']:.1f}%", f"{100 * s['mean_error']:+.1f}%"]
                + [f"{100 * s['max_abs_error']:.0f}%"]
            )
    lines.append(markdown_table(heads, rows))
    for b in data["backends"]:
        measured = [m["measured_ms"] for m in b["models"]]
        share = b["other_cpu_share"]
        first = f" (the process's first, MobileNetV2: {b['first_predict_s']:.2f} s)"
        first = first if "first_predict_s" in b else ""
        lines += [
            "",
            f"**{b['backend']}** ({b['profile']}; calibrated in "
            f"{b['calibration_s']:.0f} s; fusions: {', '.join(b['fusions']) or 'none'}): "
            f"{len(measured)} models ({len(b.get('unpredictable', []))} more the profile "
            f"could not predict, counted as misses), {min(measured):.2f} to {max(measured):.2f} ms "
            f"measured; prediction took at most {b['predict_s_max']:.2f} s a model{first}; "
            f"{100 * b['seen_kernel_share']:.0f}% of their kernels were among the "
            f"profile's samples; noise floor from {len(b['noise'])} twins; other processes "
            f"used {100 * (share or 0):.0f}% of the machine meanwhile."
            + _rounds_line(b)
            + "".join(
                f" Profile {i + 2}: {c['profile']}, {c['calibration_s']:.0f} s."
                for i, c in enumerate(b.get("compared", []))
            ),
        ]
    return "\n".join(lines) + "\n"


def _rounds_line(b: dict[str, Any]) -> str:
    """How the models' rounds were timed, and what the reference network said of the
    machine's speed, group by group."""
    spread = b.get("spread_rounds")  # None: a result from before the option
    rounds = "" if spread is None else " A model's rounds spread over the whole run."
    rounds = " A group's rounds one after another." if spread is False else rounds
    factors = b.get("speed_factors", [])
    if not factors:
        return rounds
    return rounds + (
        " The reference network took "
        f"{min(factors):.2f}x to {max(factors):.2f}x (median {np.median(factors):.2f}x) its "
        "time in the calibration, group by group; *speed rechecked* multiplies each group's "
        "predictions by its factor (`profile.at_speed(factor)`)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, what in (
        ("--profiles", "profiles of `sepconv calibrate` (default: calibrate --backend)"),
        ("--compare", "more profiles, judged on the models measured for their backend"),
    ):
        parser.add_argument(flag, nargs="*", type=Path, default=[], help=what)
    parser.add_argument("--backend", default="eager", help="what to calibrate without profiles")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where to calibrate"
    )
    parser.add_argument("--budget-s", type=float, default=None, help="calibration budget")
    parser.add_argument("--models", type=positive_int, default=100)
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--seed", type=int, default=2024, help="seed of the drawn models")
    parser.add_argument(
        "--spread",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a model's rounds spread over the whole run (--no-spread: its group's in a row)",
    )
    add_smoke_flag(parser, "calibrate eager for 60 s, then 3 models in 2 rounds")
    add_output_flags(parser)
    args = parser.parse_args()
    profiles = [Profile.load(p) for p in args.profiles]
    cuda = args.device == "cuda" or any(p.device == "cuda" for p in profiles)
    run = Run.start(__file__, args, name="predict_accuracy_cuda" if cuda else None)
    if args.smoke:
        args.models, args.rounds, args.budget_s = 3, 2, args.budget_s or 60.0
    if not profiles:
        kwargs = {} if args.budget_s is None else {"budget_s": args.budget_s}
        profiles = [
            calibrate(
                args.backend, threads=args.threads, device=args.device, progress=print, **kwargs
            )
        ]
    more = [Profile.load(p) for p in args.compare]
    for path, other in zip(args.compare, more, strict=True):
        other.check_here(source=f"--compare {path}")
        if other.backend not in {p.backend for p in profiles}:
            raise SystemExit(f"--compare {path}: no --profiles profile of {other.backend}")
    backends = [
        run_backend(p, args.models, args.rounds, args.seed, more, args.spread) for p in profiles
    ]
    data = {**run.record(args.threads), "backends": backends}
    text = report(data)
    run.write(data, text)
    print(text)


if __name__ == "__main__":
    main()
