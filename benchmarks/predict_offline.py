"""A recorded accuracy run predicted again, offline, with other rules for ONNX Runtime's kernels:
how a change of predictor does on the very models and measurements of that run.

``predict_accuracy.py`` records each model's measured latency and the seed it drew the models
from; here they are built again from that seed (``predict_validation.draw_group``, in the run's
order), and the calibration's whole networks from the calibration's seed
(``sepconv.predict.whole_networks.whole_network_specs``), whose measured times the profile
keeps. For each ``--faster-share`` (the share of the ten scaled neighbours' weight averaged,
fastest first; ``1``: all ten, the rule before 2026-12-08), every kernel is predicted again,
the kernel scale fitted again on the whole networks (``fit_networks``; for each ``--networks``,
each network's time read as the median of its timings, as before 2026-12-08, or
``undisturbed``, ``sepconv.predict.speed.undisturbed_seconds``, as a calibration on ONNX
Runtime reads it now), and each model predicted.
Reported: the share within ±10% and ±5%, the RMSPE and mean error; the same at the speed the
run's reference network read (*speed rechecked*); within each group of ten about its median
(the shape apart from the level); and the kernels' 5-fold cross-validated error in the profile.

A first row reproduces the run as it was recorded (the profile's own kernel scale, the rule of
``--recorded-share``) and must match the run's predictions: a rebuild that differs stops the
script, so the rows below it are predictions of the same models.

Run (the profile of the run, kept gzipped beside the results):
    .venv/bin/python benchmarks/predict_offline.py \\
        --profile results/benchmarks/profiles/ort_2026-12-08_0124.json.gz \\
        --run results/benchmarks/predict_accuracy_quiet_hour.json --seed 2028 --recorded-share 1
    .venv/bin/python benchmarks/predict_offline.py --smoke   # that run's first 10 models

Writes results/benchmarks/predict_offline.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from harness import ROOT, Run, add_output_flags, add_smoke_flag, header, positive_int
from predict_validation import GROUP, draw_group, summary

from sepconv.bench.output import markdown_table
from sepconv.deploy import fuse
from sepconv.predict import Kernel, Profile, extract_kernels
from sepconv.predict.regression import FASTER_SHARE, KernelRegressor, fits_slopes
from sepconv.predict.speed import typical_seconds
from sepconv.predict.whole_networks import fit_networks, whole_network_specs

SMOKE_PROFILE = ROOT / "results/benchmarks/profiles/ort_2026-12-08_0124.json.gz"
SMOKE_RUN = ROOT / "results/benchmarks/predict_accuracy_quiet_hour.json"
FOLDS = 5
HEADERS = [
    "rule", "kernel scale", "within 10%", "within 5%", "RMSPE", "mean error",
    "speed rechecked: within 10%", "each group of ten: within 10%",
    "kernels, 5-fold: median error", "kernels, 5-fold: within 10%",
]  # fmt: skip


def load_profile(path: Path) -> Profile:
    """A profile file, gzipped or not (checked as ``sepconv predict`` checks it, but not
    against this machine: it is read, not run)."""
    if path.suffix != ".gz":
        return Profile.load(path)
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as err:
        raise SystemExit(f"--profile: cannot read {str(path)!r} ({err})") from None
    return Profile.from_dict(data, source=str(path))


def recorded_models(
    run: dict[str, Any], backend: str, seed: int, limit: int | None
) -> tuple[list, list]:
    """The run's first ``limit`` rows for ``backend`` (all with ``None``) and the models they
    measured, built again from ``seed``: the drawn models in order, less those the run could
    not predict, drawn only as far as the rows asked for."""
    entries = [b for b in run["backends"] if b["backend"] == backend]
    if not entries:
        raise SystemExit(f"--run: no {backend} models in the run")
    rows, missed = entries[0]["models"], {u["model"] for u in entries[0]["unpredictable"]}
    rows = rows[:limit]
    count = len(entries[0]["models"]) + len(missed)
    rng = np.random.default_rng(seed)
    models: list = []
    for start in range(0, count, GROUP):
        if len(models) >= len(rows):
            break
        drawn = draw_group(rng, min(GROUP, count - start))
        models += [(spec, model) for spec, model in drawn if spec.describe() not in missed]
    models = models[: len(rows)]
    if [spec.describe() for spec, _ in models] != [r["model"] for r in rows]:
        raise SystemExit(f"--seed {seed}: the models drawn are not the run's (another seed?)")
    return rows, models


def read(timings: list[float], how: str) -> float:
    """A time from repeated timings, read ``how``: ``"undisturbed"`` or ``"median"``."""
    return typical_seconds(timings, undisturbed=how == "undisturbed")


def network_kernels(profile: Profile, seed: int) -> dict[str, list[Kernel]]:
    """The kernels of the calibration's whole networks, by name, built again from ``seed``."""
    kernels = {}
    for spec in whole_network_specs(seed):
        model = fuse(spec.build().eval())
        side = spec.resolution
        kernels[spec.describe()] = extract_kernels(model, (1, 3, side, side), profile.fusions)
    return kernels


def cross_validated(kernels: list[Kernel], seconds: np.ndarray, share: float) -> np.ndarray:
    """Each measured kernel's error predicted from the other folds' (log ratios)."""
    fold = np.random.default_rng(0).integers(0, FOLDS, len(kernels))
    errors = np.full(len(kernels), np.nan)
    for f in range(FOLDS):
        train = fold != f
        regressor = KernelRegressor([k for k, t in zip(kernels, train, strict=True) if t],
                                    seconds[train], slopes=False, faster_share=share)  # fmt: skip
        for i in np.flatnonzero(~train):
            try:
                errors[i] = math.log(regressor.predict(kernels[i]) / max(seconds[i], 1e-9))
            except ValueError:  # a group the other folds lack
                continue
    return errors[~np.isnan(errors)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=SMOKE_PROFILE,
                        help="the run's profile (.json or .json.gz)")  # fmt: skip
    parser.add_argument("--run", type=Path, default=SMOKE_RUN,
                        help="a predict_accuracy.py JSON made with that profile")  # fmt: skip
    parser.add_argument("--seed", type=int, default=2028, help="the run's --seed")
    parser.add_argument("--calibration-seed", type=int, default=0,
                        help="the calibration's --seed (default 0)")  # fmt: skip
    parser.add_argument("--recorded-share", type=float, default=FASTER_SHARE,
                        help="the share the run predicted with (1 before 2026-12-08)")  # fmt: skip
    parser.add_argument("--faster-share", type=float, nargs="+", default=[1.0, FASTER_SHARE])
    parser.add_argument("--networks", choices=("median", "undisturbed"), nargs="+",
                        default=["median", "undisturbed"],
                        help="how each whole network's (and the reference network's) time is "
                        "read: the median of its timings (before 2026-12-08) or the undisturbed "
                        "time (calibrate on ONNX Runtime now)")  # fmt: skip
    parser.add_argument("--models", type=positive_int, default=None,
                        help="only the run's first N models")  # fmt: skip
    add_smoke_flag(parser, "the first 10 models of the committed quiet-hour run")
    add_output_flags(parser)
    args = parser.parse_args()
    for value in (args.recorded_share, *args.faster_share):
        if not 0 < value <= 1:
            parser.error(f"--faster-share/--recorded-share: expected a share in (0, 1], "
                         f"received {value}")  # fmt: skip
    if args.smoke:
        args.models, args.faster_share, args.recorded_share = 10, [1.0, FASTER_SHARE], 1.0
        args.networks = ["median"]  # as the committed run's calibration read its networks
    for flag, path in (("--profile", args.profile), ("--run", args.run)):
        if not path.is_file():
            parser.error(f"{flag}: expected a file, received {str(path)!r}, which does not exist")
    run = Run.start(__file__, args)
    profile = load_profile(args.profile)
    if fits_slopes(profile.backend) or len(profile.variants) != 1:
        raise SystemExit(f"--profile: a {profile.backend} profile; only ONNX Runtime's kernels "
                         "are predicted from scaled neighbours")  # fmt: skip
    variant = profile.variants[0]
    recorded = json.loads(args.run.read_text())
    rows, models = recorded_models(recorded, profile.backend, args.seed, args.models)
    traces = [extract_kernels(m, (1, 3, s.resolution, s.resolution), profile.fusions)
              for s, m in models]  # fmt: skip
    measured = np.array([r["measured_ms"] for r in rows])
    speed = profile.validation["speed"]
    recorded_factors = np.array([r.get("speed_factor", 1.0) for r in rows])

    def factors(how: str) -> np.ndarray:
        """The run's speed factors (a reading over the profile's reference time), with that
        time read again ``how`` (as recorded if ``how`` is empty)."""
        if not how:
            return recorded_factors
        readings = [s for _, s in speed["readings"]]
        return recorded_factors * speed["typical_s"] / read(readings, how)

    kernels = [k for k, _ in profile.samples]
    seconds = np.array([t[variant] for _, t in profile.samples])
    networks = profile.validation["network_fit"]["networks"]
    net_kernels = network_kernels(profile, args.calibration_seed)
    call_s = profile.call_s[variant]

    regressors = {  # one per share, and each share's cross-validated kernel errors
        share: KernelRegressor(kernels, list(seconds), slopes=False, faster_share=share)
        for share in {args.recorded_share, *args.faster_share}
    }
    cv = {share: cross_validated(kernels, seconds, share) for share in regressors}

    def predicted(share: float, scale: float | None, how: str = "") -> tuple[np.ndarray, float]:
        regressor = regressors[share]
        if scale is None:  # fitted again on the whole networks read ``how``, as calibrate does
            mine = [n for n in networks if n["variant"] == variant]
            alone = [sum(map(regressor.predict, net_kernels[n["network"]])) for n in mine]
            times = [read(n["rounds_s"], how) for n in mine]
            scale = fit_networks(times, alone, [0] * len(mine), call_s, 0.0).kernel_scale
        sums = np.array([sum(map(regressor.predict, ks)) for ks in traces])
        return 1e3 * (call_s + scale * sums), scale

    again, _ = predicted(args.recorded_share, profile.scale(variant))
    as_run = np.array([r["predicted_ms"] for r in rows])
    if not np.allclose(again, as_run, rtol=1e-9):
        worst = float(np.max(np.abs(again / as_run - 1)))
        raise SystemExit(f"the rebuilt models' predictions differ from the run's (up to "
                         f"{100 * worst:.2g}%): another --recorded-share or seed?")  # fmt: skip
    results = []
    for label, share, scale, how in [
        ("as recorded", args.recorded_share, profile.scale(variant), ""),
        *((f"faster share {s:g}, networks {how}", s, None, how)
          for how in args.networks for s in args.faster_share),
    ]:  # fmt: skip
        ms, fitted = predicted(share, scale, how)
        logs = np.log(ms / measured)
        groups = np.arange(len(logs)) // GROUP  # each model's error about its group's median
        about = logs - np.array([np.median(logs[groups == g]) for g in groups])
        results.append({
            "rule": label, "faster_share": share, "kernel_scale": fitted,
            "predicted_ms": ms.tolist(), "errors": summary(list(ms / measured - 1)),
            "networks": how or None, "rechecked": summary(list(ms * factors(how) / measured - 1)),
            "in_group_within_10pct": float(np.mean(np.abs(np.expm1(about)) <= 0.1)),
            "kernels_cv": {"median_abs_error": float(np.median(np.abs(np.expm1(cv[share])))),
                           "within_10pct": float(np.mean(np.abs(np.expm1(cv[share])) <= 0.1))},
        })  # fmt: skip
    table = markdown_table(HEADERS, [[
        r["rule"], f"{r['kernel_scale']:.3f}", f"{r['errors']['within_10pct']:.0%}",
        f"{r['errors']['within_5pct']:.0%}", f"{r['errors']['rmspe']:.1%}",
        f"{r['errors']['mean_error']:+.1%}", f"{r['rechecked']['within_10pct']:.0%}",
        f"{r['in_group_within_10pct']:.0%}", f"{r['kernels_cv']['median_abs_error']:.1%}",
        f"{r['kernels_cv']['within_10pct']:.0%}"] for r in results])  # fmt: skip
    print(table)
    data = {**run.record(profile.threads), "profile": str(args.profile), "run": str(args.run),
            "models": len(rows), "results": results}  # fmt: skip
    run.write(data, header("A recorded accuracy run predicted again offline", data)
              + f"\n\n{len(rows)} models of `{args.run}` (measured on "
              f"{recorded['environment']['cpu']}), predicted again from the profile "
              f"`{args.profile}` ({profile.describe()}). *as recorded*: the run's own "
              "predictions, reproduced. Each *faster share* row: every kernel predicted "
              "from the share of its ten scaled neighbours' weight, fastest first, and the "
              "kernel scale fitted again on the calibration's whole networks, each network's "
              "time, and the reference network's for *speed rechecked*, read as the row says "
              f"(the module doc says how).\n\n{table}\n")  # fmt: skip


if __name__ == "__main__":
    main()
