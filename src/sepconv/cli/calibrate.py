"""``sepconv calibrate``: time a sampled set of kernels on this machine for latency prediction."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sepconv.predict.profile import Profile
    from sepconv.utils.tables import FitTable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="time sampled kernels on this machine, for `sepconv predict` and `sepconv pick`",
        description="Time a sampled set of kernel configurations (standard, grouped, "
        "depthwise and pointwise convs with their fused activations and residual adds, "
        "squeeze-excite, LayerNorm, pooling, linear, element-wise) on this machine and "
        "backend, as the backend runs them after the fusions it is found to perform, within "
        "a time budget; sampling concentrates where prediction error is largest. The profile "
        "predicts models' latency here without running them (docs/guides/predicting.md).",
    )
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        help="eager, onnxruntime or openvino (on CUDA: eager); default onnxruntime",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: every logical CPU this process may use)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="seconds to spend (default 300)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--batch-sizes", default="1", help="batch sizes to sample at, e.g. 1,8 (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled networks")
    parser.add_argument(
        "--profiler",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="onnxruntime: time kernels by its profiler's node durations (the default there) "
        "or, with --no-profiler, from outside (docs/guides/predicting.md)",
    )
    parser.add_argument("--out", required=True, help="the profile file to write (JSON)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sepconv.bench.allocator import keep_freed_memory
    from sepconv.bench.timing import usable_cpus
    from sepconv.cli._console import console
    from sepconv.predict.calibrate import DEFAULT_BUDGET_S, MIN_BUDGET_S, calibrate
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable
    from sepconv.utils.validation import (
        MAX_BATCH,
        bounded_int,
        finite_number,
        invalid,
        thread_count,
    )

    check_writable(args.out, "--out")
    if args.profiler and args.backend != "onnxruntime":
        raise invalid("--profiler", "--backend onnxruntime", f"--backend {args.backend}")
    device = check_device(args.device, "--device")
    threads = args.threads if args.threads is not None else usable_cpus()
    thread_count("--threads", threads)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise invalid(
            "--batch-sizes", "comma-separated positive integers such as 1,8", args.batch_sizes
        ) from None
    for batch in batches:
        bounded_int("--batch-sizes", batch, 1, MAX_BATCH)
    budget = DEFAULT_BUDGET_S if args.budget_s is None else args.budget_s
    finite_number(
        "--budget-s",
        budget,
        low=MIN_BUDGET_S,
        high=24 * 3600.0,
        expected=f"a number of seconds from {MIN_BUDGET_S:g} to 86400",
    )
    keep_freed_memory()  # no allocator page faults in the timings (sepconv.bench.allocator)
    out = console()
    out.print(
        f"calibrating {args.backend} on {device.type}, {threads} thread(s), "
        f"for about {budget:.0f} s ..."
    )
    profile = calibrate(
        args.backend,
        threads=threads,
        budget_s=budget,
        device=device.type,
        batch_sizes=batches,
        seed=args.seed,
        profiler=args.profiler,
        progress=lambda line: out.print(f"  {line}", markup=False),
    )
    profile.save(args.out)
    out.print(summary_table(profile))
    share = profile.other_cpu_share
    if share is not None and share > 0.15:
        out.print(
            f"warning: other processes used {100 * share:.0f}% of the machine while this "
            "calibrated: its kernel times are those of a busy machine; calibrate again on a "
            "quiet one",
            style="yellow",
            markup=False,
        )
    out.print(f"profile written to {args.out}")
    return 0


def summary_table(profile: Profile) -> FitTable:
    """Kernels measured per kind, and the held-out error of the predictor."""
    from sepconv.predict.profile import sample_table
    from sepconv.utils.tables import Column, FitTable

    counts = sample_table(profile.samples)
    rows = [[kind, f"{count:,}"] for kind, count in sorted(counts.items())]
    v = profile.validation
    caption = [
        f"fusions found: {', '.join(profile.fusions) or 'none'} "
        "(a conv absorbs the activation or residual add after it)",
        f"{profile.elapsed_s:.0f} s on {profile.machine.get('cpu', '?')}",
    ]
    if v.get("held_out_kernels"):
        caption.append(
            f"held-out kernels (predicted before being timed): {v['held_out_kernels']}, "
            f"RMSPE {100 * v['rmspe']:.1f}%; second half {100 * v['rmspe_second_half']:.1f}%, "
            f"{100 * v['within_10pct_second_half']:.0f}% within 10%"
        )
    caption.insert(0, profile.describe())
    return FitTable(
        "kernels measured",
        [Column("kernel kind", "left"), Column("measured")],
        rows,
        caption="\n".join(caption),
    )
