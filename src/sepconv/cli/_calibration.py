"""The ``--precision auto`` flags that ``sepconv export`` and ``sepconv evaluate`` share: the
calibration images (``--calib-data``, the data spec of ``sepconv quantize``), how many of them,
and the agreement a lower precision must reach."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sepconv.deploy.compiled import CandidateReport, InferenceModel

#: Calibration images drawn by default: agreement is then measured to 0.1%.
CALIB_SAMPLES = 1000


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--calib-data``, ``--calib-samples`` and ``--min-agreement`` to ``parser``."""
    parser.add_argument(
        "--calib-data",
        metavar="SPEC",
        help="with --precision auto: images on which int8 is calibrated (up to 256 of them) and "
        "every precision's top-1 agreement with eager fp32 is measured (all the others): "
        "fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | imagefolder:DIR (its training "
        "split), normalised as in the weights' training or by the images' own statistics",
    )
    parser.add_argument(
        "--calib-samples",
        type=int,
        default=CALIB_SAMPLES,
        metavar="N",
        help=f"with --precision auto: calibration images, a seeded draw (default: {CALIB_SAMPLES})",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        metavar="A",
        help="with --precision auto: lowest top-1 agreement with eager fp32, in (0, 1], at which "
        "bf16 or int8 is kept (default: 0.995); fp32 always qualifies",
    )


def check_flags(args: argparse.Namespace) -> float:
    """Refuse inconsistent ``--precision auto`` flags before any work; return the
    ``min_agreement`` to use."""
    from sepconv.deploy.precision import DEFAULT_MIN_AGREEMENT
    from sepconv.utils.validation import finite_number, invalid, positive_int

    auto = args.precision == "auto"
    if auto and args.calib_data is None:
        raise invalid(
            "--calib-data",
            "a data spec with --precision auto (its images decide which precision is kept)",
            None,
        )
    if not auto:
        for flag, value in (
            ("--calib-data", args.calib_data),
            ("--min-agreement", args.min_agreement),
        ):
            if value is not None:
                raise invalid(flag, "nothing unless --precision auto", value)
    positive_int("--calib-samples", args.calib_samples)
    if args.min_agreement is None:
        return DEFAULT_MIN_AGREEMENT
    return finite_number("--min-agreement", args.min_agreement, low=0, high=1, low_inclusive=False)


def candidate_rows(fast: InferenceModel) -> list[tuple[str, str]]:
    """Table rows: one per candidate of ``precision="auto"``, then what was chosen."""
    rows = []
    for name, report in fast.candidates.items():
        if report.median_ms is None:
            rows.append((name, f"not built: {report.reason}"))
            continue
        fate = "kept" if report.kept else f"dropped: {report.reason}"
        rows.append(
            (
                name,
                f"{report.median_ms:.3g} ms, agreement {report.agreement:.4f}, "
                f"max rel error {report.max_rel_error:.2e}, {fate}",
            )
        )
    return rows


def chosen_line(fast: InferenceModel, spec: str, min_agreement: float) -> str:
    """The result lines: what ``precision="auto"`` chose, how well it agrees (with the 95%
    interval of that agreement) and, when a reduced precision's agreement is too close to
    ``min_agreement`` for the images it was measured on to tell, that more images would
    settle it."""
    from sepconv.deploy import agreement_interval

    low, high = chosen_interval(fast)
    count = _chosen(fast).samples
    lines = [
        f"chosen: {fast.backend}/{fast.precision}, top-1 agreement {fast.agreement:.4f} (95% "
        f"interval {low:.4f}-{high:.4f}) with eager fp32 on {count} held-out calibration images "
        f"of {spec} (train; int8 was calibrated on the others)"
    ]
    close = []
    for name, report in fast.candidates.items():
        if report.precision != "fp32" and report.agreement is not None and report.samples:
            low, high = agreement_interval(report.agreement, report.samples)
            if low <= min_agreement <= high:
                close.append(name)
    if close:
        lines.append(
            f"note: --min-agreement {min_agreement} lies within the 95% interval of "
            f"{', '.join(close)} on {count} images, so whether they reach it on your data is "
            "not settled; more --calib-samples narrow the interval"
        )
    return "\n".join(lines)


def chosen_interval(fast: InferenceModel) -> tuple[float, float]:
    """The 95% interval of the chosen model's agreement on the images it was measured on."""
    from sepconv.deploy import agreement_interval

    report = _chosen(fast)
    if fast.agreement is None or not report.samples:
        raise ValueError("the model was not built with precision='auto': no agreement measured")
    return agreement_interval(fast.agreement, report.samples)


def _chosen(fast: InferenceModel) -> CandidateReport:
    """The report of the candidate ``precision="auto"`` chose."""
    from sepconv.deploy import CandidateReport

    name = f"{fast.backend}/{fast.precision}"
    return fast.candidates.get(name, CandidateReport(fast.backend, fast.precision, kept=True))
