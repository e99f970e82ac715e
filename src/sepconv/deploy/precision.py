"""``precision="auto"`` of :func:`~sepconv.deploy.runtime.compile_for_inference` on the CPU:
build the model in every precision this machine runs fast, measure each on the user's own
images, and keep the fastest one whose predictions agree with eager fp32.

A fixed bound on the outputs' relative error is a poor judge of a lower precision: on trained
networks bf16 can move the outputs by a large part of :data:`~sepconv.deploy.compiled.BF16_RTOL`
while changing almost no prediction (``results/deploy/bf16_fashion_mnist/README.md``), and
random-weight networks fail the bound outright. What matters to a user is whether the
predictions change on their data, so that is what decides here: the top-1 agreement with eager
fp32 on the calibration images (argmax over the output's last dimension), next to the max
relative error, which is reported but does not decide.

The calibration images are split once (:func:`split_calibration`): int8's ranges are set on a
seeded draw of at most :data:`INT8_CALIBRATION` of them, and every candidate is judged on the
rest, which the quantizer never saw. MinMax ranges cover the extremes of the images they were
set on, so judging int8 on those would leave out the very clipping that changes predictions on
new images.

Candidates, each ``"backend/precision"``, over the CPU rows of the backend table
(:data:`sepconv.deploy.registry.BACKEND_TABLE`):

- fp32: every backend of ``candidates`` that is installed, checked against eager PyTorch with
  :data:`~sepconv.deploy.compiled.FP32_RTOL` as ``backend="auto"`` does (an fp32 backend that
  misses it runs a wrong graph; that is not rounding). fp32 always qualifies: it is the fallback.
- bf16: the backends whose row lists bf16 (eager PyTorch and torch.compile under CPU autocast,
  OpenVINO with bf16 inference precision), only where the CPU has native bf16
  (:func:`sepconv.bench.timing.bf16_native`); elsewhere bf16 is emulated and slower than fp32.
- int8: the file :func:`sepconv.deploy.quantize` writes (ONNX Runtime's quantizer, its ranges
  set on the int8 part of the split), run on every backend whose row runs int8 files (ONNX
  Runtime, OpenVINO).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from sepconv.bench.load import child_pids
from sepconv.bench.timing import bf16_native
from sepconv.deploy.choose import keep_fastest
from sepconv.deploy.compiled import (
    BackendMismatchError,
    CandidateReport,
    InferenceModel,
    Target,
    checked,
)
from sepconv.deploy.inputs import check_images, first_images
from sepconv.deploy.load import load_onnx
from sepconv.deploy.onnx_check import relative_error
from sepconv.deploy.quantize import quantize
from sepconv.deploy.registry import Backend, device_precisions, find, rows
from sepconv.utils.validation import finite_number, invalid

__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "INT8_CALIBRATION",
    "check_calibration",
    "search_precision",
    "split_calibration",
]

#: Default ``min_agreement``: at most 1 calibration image in 200 may change its top-1 class. On
#: the trained Fashion-MNIST MobileNets of results/deploy/ (their READMEs have the numbers) bf16
#: clears it and ONNX Runtime's int8 does not.
DEFAULT_MIN_AGREEMENT = 0.995

#: Most calibration images int8's ranges are set on (:func:`split_calibration`); MinMax ranges
#: stop moving after a few hundred, and the default of :func:`sepconv.deploy.quantize`.
INT8_CALIBRATION = 256


def check_calibration(
    calibration: object,
    *,
    precision: str | None,
    min_agreement: float,
    size: tuple[int, int, int],
    cuda: bool,
) -> torch.Tensor | None:
    """Validate the arguments of ``precision="auto"`` before any work is done.

    Returns:
        ``calibration`` as contiguous float32 on the CPU, or ``None`` when it was not given
        (and ``precision`` is not ``"auto"``).

    Raises:
        ValueError: naming ``calibration``, ``precision`` or ``min_agreement``.
    """
    if cuda and (calibration is not None or precision == "auto"):
        name = "calibration" if calibration is not None else "precision"
        shown = _shown(calibration) if calibration is not None else precision
        raise invalid(
            name,
            "precision='auto' and its calibration images only on the CPU",
            shown,
            note="; on CUDA, precision=None already measures fp32, bf16 and fp16 and keeps the "
            "fastest that passes its check",
        )
    if precision != "auto":
        if calibration is not None:
            raise invalid("calibration", "None unless precision='auto'", _shown(calibration))
        return None
    finite_number("min_agreement", min_agreement, low=0, high=1, low_inclusive=False)
    if calibration is None:
        raise invalid(
            "calibration",
            "a float tensor (N, C, H, W) of normalised images with precision='auto' (the "
            "precision search measures top-1 agreement with fp32 on them)",
            None,
        )
    hint = " of normalised images (sepconv.deploy.prepare_images makes them from uint8 images)"
    images = check_images("calibration", calibration, size, hint=hint)
    if not bool(torch.isfinite(images).all()):
        raise invalid("calibration", "finite values", "a tensor containing NaN or inf")
    return images


def split_calibration(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split calibration images into those int8 is calibrated on and those every candidate is
    judged on.

    The int8 part is a seeded draw (without replacement) of ``min(INT8_CALIBRATION, N // 2)``
    images, the judged part all the others, each in the images' own order. The same images
    always give the same split, so ``sepconv export`` writes the very int8 file that was judged.
    With a single image the int8 part is empty (int8 is then not built).

    Example:
        >>> calibrate, judge = split_calibration(torch.zeros(1000, 1, 28, 28))
        >>> len(calibrate), len(judge)
        (256, 744)
    """
    count = len(images)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    int8_part = min(INT8_CALIBRATION, count // 2)
    return images[order[:int8_part].sort().values], images[order[int8_part:].sort().values]


def search_precision(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    backends: Sequence[str],
    batch_size: int,
    threads: int,
    example: torch.Tensor,
    reference: torch.Tensor,
    min_agreement: float,
) -> InferenceModel:
    """Build ``model`` on ``backends`` in fp32, bf16 and int8; keep the fastest that agrees.

    ``calibration`` is split (:func:`split_calibration`): int8 is calibrated on one part, and
    every candidate runs the other, held-out part (through the compiled batch size, see
    :func:`_top_outputs`); its top-1 agreement with the unmodified eager fp32 model and its max
    relative error there are recorded. All candidates that were built are then timed on ``example``
    as ``backend="auto"`` times its backends (:func:`sepconv.deploy.choose.keep_fastest`:
    alternating rounds), so that the report has every candidate's median; the fastest whose
    agreement is at least ``min_agreement``, or that computes in fp32, is returned, with every
    candidate's numbers in :attr:`InferenceModel.candidates`. The others are released.

    Args:
        model: The fp32 model (not modified).
        calibration: Checked float inputs ``(N, C, H, W)`` (:func:`check_calibration`).
        backends: Backends to build (``candidates`` of ``"auto"``, or the one named).
        batch_size: The compiled batch.
        threads: Intra-op threads of every candidate.
        example: One batch of the compiled shape: the fp32 check and ONNX export run on it.
        reference: The eager fp32 output on ``example``.
        min_agreement: Lowest top-1 agreement at which a bf16 or int8 candidate qualifies.

    Returns:
        The chosen :class:`InferenceModel`; ``timings`` and ``skipped`` are keyed
        ``"backend/precision"``, and ``agreement``, ``candidates`` and ``why`` are set.

    Raises:
        BackendMismatchError: no candidate qualified (every fp32 backend missed its check).
        ImportError: no candidate could be built: the runtimes are missing.
    """
    n, c, h, w = (int(v) for v in example.shape)
    shape = (n, c, h, w)
    table = [find(name, rows("cpu"), argument="backends") for name in backends]
    built: dict[str, InferenceModel] = {}
    skipped: dict[str, str] = {}
    mismatched = False
    children = child_pids()  # the builds' own child processes are waited for
    with tempfile.TemporaryDirectory(prefix="sepconv-precision-") as tmp:
        onnx_file = Path(tmp) / "model.onnx"  # exported once, for the backends that run it
        for precision in device_precisions("cpu"):
            for row in table:
                if precision not in row.precisions:
                    continue
                backend = row.name
                name = f"{backend}/{precision}"
                if precision == "bf16" and not bf16_native():
                    skipped[name] = "this CPU has no native bf16 (AVX512-BF16 or AMX)"
                    continue
                try:
                    target = Target(shape, precision, threads)
                    runner, used = row.build(model, example, target, onnx_file)
                    if used != precision:  # OpenVINO reads back what it compiled for
                        skipped[name] = f"{backend} compiled it in {used}, not {precision}"
                    elif precision == "fp32":
                        built[name] = checked(
                            backend, runner, used, shape, example, reference, threads=threads
                        )
                    else:  # judged by agreement below, not by a bound on the error
                        built[name] = InferenceModel(
                            backend,
                            shape,
                            threads,
                            runner,
                            precision=used,  # type: ignore[arg-type]
                        )
                except ImportError as err:
                    skipped[name] = str(err)
                except BackendMismatchError as err:
                    skipped[name] = str(err)
                    mismatched = True
        int8_images, judged = split_calibration(calibration)
        _build_int8(model, int8_images, table, batch_size, threads, Path(tmp), built, skipped)

    eager = copy.deepcopy(model).float().cpu().eval()
    truth = _top_outputs(eager, judged, batch_size)
    reports: dict[str, CandidateReport] = {}
    for name, candidate in built.items():
        outputs = _top_outputs(candidate, judged, batch_size)
        agreement = (outputs.argmax(-1) == truth.argmax(-1)).double().mean().item()
        qualifies = candidate.precision == "fp32" or agreement >= min_agreement
        reason = "" if qualifies else f"top-1 agreement {agreement:.4f} < {min_agreement:g}"
        reports[name] = CandidateReport(
            candidate.backend,
            candidate.precision,
            kept=qualifies,
            reason=reason,
            agreement=agreement,
            max_rel_error=relative_error(outputs, truth),
            samples=len(judged),
        )
    kept = [name for name in built if reports[name].kept]
    timings: dict[str, float] = {}
    busy_share: float | None = None
    if kept:
        # Every candidate is timed for the report; only those that qualified race to win.
        # (A copy: keep_fastest empties what it is given.)
        race = keep_fastest(dict(built), example, threads, eligible=kept, children_before=children)
        timings, busy_share = race.timings, race.busy_share
    for name, ms in timings.items():
        reports[name] = dataclasses.replace(reports[name], median_ms=ms)
    for name, why in skipped.items():
        backend, _, precision = name.partition("/")
        reports[name] = CandidateReport(backend, precision, kept=False, reason=why)
    if not kept:
        # Nothing qualified: a runtime is missing (ImportError), or something ran but no fp32
        # backend passed its check and no lower precision agreed enough.
        error = ImportError if not built and not mismatched else BackendMismatchError
        raise error(
            "Cannot compile for inference: no candidate qualified: "
            + "; ".join(f"{k}: {r.reason}" for k, r in reports.items())
        )
    best = min(kept, key=timings.__getitem__)
    chosen = reports[best]
    dropped = {name: r.reason for name, r in reports.items() if not r.kept}
    winner = built.pop(best)
    # Release the others now, as backend="auto" does: a live ONNX Runtime session keeps its
    # threads spinning, and an OpenVINO compiled model its memory.
    built.clear()
    gc.collect()
    return dataclasses.replace(
        winner,
        timings=timings,
        skipped=dropped,
        max_rel_error=chosen.max_rel_error,
        agreement=chosen.agreement,
        candidates=reports,
        why=_why(best, reports, len(judged), min_agreement),
        race_busy_share=busy_share,
    )


def _build_int8(
    model: nn.Module,
    calibration: torch.Tensor,
    backends: Sequence[Backend],
    batch_size: int,
    threads: int,
    folder: Path,
    built: dict[str, InferenceModel],
    skipped: dict[str, str],
) -> None:
    """Quantize ``model`` once, calibrated on all of ``calibration`` (the int8 part of the
    split), and load the int8 file on each int8-capable backend of ``backends`` into ``built``
    (or the reason into ``skipped``)."""
    runtimes = [row.name for row in backends if row.int8 is not None]
    if not runtimes:
        return
    if len(calibration) == 0:
        why = (
            "int8 needs at least 2 calibration images: its ranges are set on some and its "
            "agreement is judged on the others"
        )
        skipped.update({f"{b}/int8": why for b in runtimes})
        return
    path = folder / "model.int8.onnx"
    try:
        first = quantize(
            model,
            calibration,
            path,
            num_samples=len(calibration),
            backend=runtimes[0],
            batch_size=batch_size,
            threads=threads,
        )
    except ImportError as err:
        skipped.update({f"{b}/int8": str(err) for b in runtimes})
        return
    # The file is deleted with the temporary folder; the sessions hold the model in memory.
    built[f"{runtimes[0]}/int8"] = dataclasses.replace(first, path=None)
    for backend in runtimes[1:]:
        try:
            other = load_onnx(path, backend=backend, batch_size=batch_size, threads=threads)
            built[f"{backend}/int8"] = dataclasses.replace(other, path=None)
        except ImportError as err:
            skipped[f"{backend}/int8"] = str(err)


def _top_outputs(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """``fn``'s float32 outputs for all ``images``, fed in batches of exactly ``batch_size``.

    A compiled model takes only its own batch size. The ragged tail is padded with the first
    calibration images (cycled), so that no image is dropped and the padding is real data, not
    zeros that could push a runtime into a range it never saw; the padding's outputs are cut off.
    """
    count = len(images)
    pad = -count % batch_size
    if pad:
        images = torch.cat([images, first_images(images, pad)])
    with torch.inference_mode():
        outputs = [fn(batch).float().cpu() for batch in images.split(batch_size)]
    return torch.cat(outputs)[:count]


def _why(best: str, reports: dict[str, CandidateReport], count: int, min_agreement: float) -> str:
    """Why ``best`` was chosen, in one sentence."""
    chosen = reports[best]
    timed = {n: r for n, r in reports.items() if r.median_ms is not None}
    qualified = sum(r.kept for r in timed.values())
    text = (
        f"{best}: {chosen.median_ms:.3g} ms median, fastest of {qualified} of {len(timed)} "
        f"candidates that qualified (fp32, or top-1 agreement with eager fp32 >= "
        f"{min_agreement:g} on {count} held-out calibration images); its agreement "
        f"{chosen.agreement:.4f}"
    )
    faster = [
        f"{n} {r.median_ms:.3g} ms, agreement {r.agreement:.4f}"
        for n, r in sorted(timed.items(), key=lambda item: item[1].median_ms or 0.0)
        if not r.kept and (r.median_ms or 0.0) < (chosen.median_ms or 0.0)
    ]
    if faster:
        text += "; faster but dropped: " + ", ".join(faster)
    return text + "."


def _shown(value: object) -> str:
    """A short description of ``value`` for an error message (never a tensor's contents)."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__
