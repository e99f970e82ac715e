"""``precision="auto"`` on trained models: sepconv's CPU inference path, free to pick bf16 or int8
where they agree with fp32 on the user's images, against the plain fp32 runtimes.

Models: trained Fashion-MNIST weights (``model.safetensors`` of ``sepconv train`` or
``sepconv reproduce``), by default the seed-0 MobileNetV1-0.25 and MobileNetV2-0.35 runs of
``sepconv reproduce configs/reproduce_compact.toml --only mobilenet_v1_025 mobilenet_v2_035
--seeds 1`` under ``--runs``; the deployment-size models (MobileNetV1, MobileNetV2,
EfficientNet-B0 at 224x224) of ``sepconv reproduce configs/deploy_224.toml`` with ``--runs
runs/reproduce/deploy_224 --rows mobilenet_v1 mobilenet_v2 efficientnet_b0``. Each is measured
at the batch size it was trained with (recorded in its file) and at batch 1 (``--batch-sizes``
chooses), on grey test images at the side it was trained at (28x28, or what its file records
of ``image_size``), normalised with the statistics its file records. Rows:

- ``ONNX Runtime (plain)``, ``OpenVINO (plain, f32)``: the plain fp32 runtimes
  (``peers.py``): the model exported / converted as is, the runtime's defaults.
- ``OpenVINO (plain, default)``: OpenVINO with only the thread count set; it computes in bf16 on
  a CPU with native bf16: what a user gets without asking, its agreement measured like the rest.
- ``sepconv fp32``: ``compile_for_inference(precision="fp32")``, the fastest fp32 backend.
- ``sepconv auto``: ``compile_for_inference(precision="auto", calibration=...)`` with
  ``--calib-samples`` images of the training split (the seeded draw of ``sepconv evaluate
  --calib-data``) and the default ``min_agreement`` (0.995): every precision this CPU runs
  natively is built (int8 calibrated on up to 256 of the images), and the fastest whose top-1
  agreement with eager fp32 on the other, held-out calibration images is at least 0.995 is kept
  (the candidates, with their agreement and median, are listed).

Each row is built in a process of its own, every test image goes through it
(``sepconv.deploy.compare_top1``), and the rows are timed on one batch of test images taking
turns in interleaved rounds (``turns.apart``). The check gives the top-1
agreement with eager fp32 on these held-out images, and accuracy. *speed-up*: the best plain
fp32 runtime's median over the row's. What ``sepconv auto`` is expected to reach is stated in
results/benchmarks/README.md.

Run:
    .venv/bin/python benchmarks/precision_auto.py [--runs runs/reproduce/reproduce_compact]
    .venv/bin/python benchmarks/precision_auto.py --runs runs/reproduce/deploy_224 \
        --rows mobilenet_v1 mobilenet_v2 efficientnet_b0 --batch-sizes 1 --test-images 2000 \
        --out precision_auto_224
    .venv/bin/python benchmarks/precision_auto.py --smoke   # a 2-step model, 1 round

Writes results/benchmarks/precision_auto.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from harness import Run, add_output_flags, add_smoke_flag, positive_int
from peers import eager, plain_onnxruntime, plain_openvino
from precision_auto_report import SEPCONV_AUTO, report
from torch import nn
from turns import METHOD, Built, apart, overall_max

import sepconv
from sepconv.data import load_dataset
from sepconv.deploy import (
    calibration_images,
    compare_top1,
    compile_for_inference,
    prepare_images,
    top1_classes,
)
from sepconv.deploy.precision import DEFAULT_MIN_AGREEMENT
from sepconv.modelfile import read_model_file

RUNS = Path("runs/reproduce/reproduce_compact")
ROWS = ("mobilenet_v1_025", "mobilenet_v2_035")
PLAIN_FP32 = ("ONNX Runtime (plain)", "OpenVINO (plain, f32)")
OV_DEFAULT = "OpenVINO (plain, default)"
SEPCONV_FP32 = "sepconv fp32"


@dataclass
class Inputs:
    """What one model file is measured on: every process makes the same from the same files."""

    model: nn.Module
    record: Any  # the file's ModelRecord
    size: tuple[int, int, int]
    inputs: torch.Tensor  # the held-out test images, as the model takes them
    labels: torch.Tensor
    x: torch.Tensor  # the timed batch: the first ``batch`` of ``inputs``


def model_inputs(weights: Path, batch: int, data: str, test_images: int) -> Inputs:
    """The model of ``weights`` and the first ``test_images`` test images of ``data`` at the
    side it was trained at (``sepconv train --image-size``, as its file records), normalised
    with the statistics its file records."""
    record = read_model_file(weights).record
    model = sepconv.load_model(weights).eval()
    test = load_dataset(data, "test")
    grey = test.images[:test_images]
    side = int(record.provenance.get("image_size") or grey.shape[-1])
    size = (int(grey.shape[1]), side, side)
    inputs = prepare_images(grey, input_size=size, mean=record.mean, std=record.std)
    x = inputs[:batch].contiguous()
    return Inputs(model, record, size, inputs, test.labels[: len(inputs)], x)


def calibration(got: Inputs, data: str, samples: int) -> torch.Tensor:
    """``sepconv auto``'s calibration images: the seeded draw of ``sepconv evaluate
    --calib-data`` from the training split."""
    record = got.record
    return calibration_images(
        data, samples, image_size=got.size[2], in_chans=got.size[0], mean=record.mean,
        std=record.std,
    )  # fmt: skip


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """In a worker process: the rows ``names`` for ``settings["weights"]`` at
    ``settings["batch"]``, each with its precision, what ``compile_for_inference`` chose and
    its top-1 check on every test image against eager fp32's classes
    (``settings["reference"]``)."""
    threads, batch, data = settings["threads"], settings["batch"], settings["data"]
    torch.set_num_threads(threads)
    got = model_inputs(Path(settings["weights"]), batch, data, settings["test_images"])
    runners: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for row in names:
        if row == PLAIN_FP32[0]:
            runners[row] = plain_onnxruntime(got.model, folder, threads, got.x)
            info[row] = {"precision": "fp32"}
        elif row in (PLAIN_FP32[1], OV_DEFAULT):
            runners[row], ov_precision = plain_openvino(
                got.model, got.x, threads, f32=row != OV_DEFAULT
            )
            info[row] = {"precision": "fp32" if row != OV_DEFAULT else ov_precision}
        else:
            asked = "auto" if row == SEPCONV_AUTO else "fp32"
            calib = calibration(got, data, settings["calib_samples"]) if asked == "auto" else None
            start = time.perf_counter()
            fast = compile_for_inference(
                got.model,
                input_size=got.size,
                batch_size=batch,
                threads=threads,
                precision=asked,  # type: ignore[arg-type]
                calibration=calib,
                example=got.x,
            )
            runners[row] = fast
            chosen = {
                "backend": fast.backend,
                "precision": fast.precision,
                "build_s": time.perf_counter() - start,
                "timings_ms": dict(fast.timings),
                "race_busy_share": fast.race_busy_share,
            }
            if calib is not None:
                chosen.update(
                    calibration_images=len(calib),
                    calibration_agreement=fast.agreement,
                    judged_images=fast.candidates[f"{fast.backend}/{fast.precision}"].samples,
                    candidates={name: r.to_dict() for name, r in fast.candidates.items()},
                    why=fast.why,
                )
            info[row] = {"precision": f"{fast.precision} ({fast.backend})", "chosen": chosen}
        check = compare_top1(
            settings["reference"], runners[row], got.inputs, got.labels, batch_size=batch
        )
        info[row]["test"] = check.to_dict()
    return Built(runners, got.x, info)


def bench(weights: Path, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every row for one model file at one batch size, each built, checked and timed in its
    own process (``turns.apart``)."""
    got = model_inputs(weights, batch, args.data, args.test_images)
    settings = {
        "weights": str(weights), "batch": batch, "data": args.data, "threads": args.threads,
        "repeats": args.repeats, "test_images": args.test_images,
        "calib_samples": args.calib_samples,
        # eager fp32's classes, once for every row
        "reference": top1_classes(eager(got.model), got.inputs, batch_size=batch),
    }  # fmt: skip
    names = [*PLAIN_FP32, OV_DEFAULT, SEPCONV_FP32, SEPCONV_AUTO]
    timed = apart(names, settings, setup, rounds=args.rounds)
    out_rows = {
        row: {
            **t.timing.to_dict(),
            "precision": t.info["precision"],
            "test": t.info["test"],
            "waiting_cpu_share": t.waiting_cpu_share,
        }
        for row, t in timed.items()
    }
    best_plain = min(out_rows[r]["median_ms"] for r in PLAIN_FP32)
    for measured in out_rows.values():
        measured["speedup_vs_best_plain_fp32"] = best_plain / measured["median_ms"]
    chosen = {row: timed[row].info["chosen"] for row in (SEPCONV_FP32, SEPCONV_AUTO)}
    return {
        "model": got.record.arch,
        "weights": str(weights),
        "trained_batch_size": (got.record.config or {}).get("batch_size"),
        "batch_size": batch,
        "calibration_images": chosen[SEPCONV_AUTO]["calibration_images"],
        "judged_images": chosen[SEPCONV_AUTO]["judged_images"],
        "test_images": len(got.inputs),
        "rows": out_rows,
        "chosen": chosen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_flags(parser)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed blocks per round")
    parser.add_argument("--calib-samples", type=positive_int, default=1000)
    parser.add_argument("--test-images", type=positive_int, default=10_000)
    parser.add_argument(
        "--batch-sizes", type=positive_int, nargs="+", default=None,
        help="batch sizes to measure (default: the one each model was trained with, and 1)",
    )  # fmt: skip
    add_smoke_flag(
        parser, "a model trained for 2 steps, 64 calibration and 64 test images, 1 round"
    )
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sepconv-precision-auto-smoke-") as tmp:
        if args.smoke:
            args.rounds, args.repeats, args.calib_samples, args.test_images = 1, 3, 64, 64
        weights = model_files(args, parser, Path(tmp))
        results = []
        for path in weights:
            config = read_model_file(path).record.config or {}
            trained = int(config.get("batch_size") or 1)
            for batch in dict.fromkeys(args.batch_sizes or (trained, 1)):
                print(f"{path} at batch {batch} ...", flush=True)
                results.append(bench(path, batch, args))
    data = {
        **run.record(args.threads),
        "min_agreement": DEFAULT_MIN_AGREEMENT,
        "timing_method": METHOD,
        "waiting_cpu_share_max": overall_max(
            [row["waiting_cpu_share"] for r in results for row in r["rows"].values()]
        ),
        "results": results,
    }
    report(data, run)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--runs``/``--rows`` or ``--weights``: the trained models a script reads
    (:func:`model_files`), and ``--data``, the dataset they fit."""
    parser.add_argument(
        "--runs", type=Path, default=RUNS,
        help="folder of sepconv reproduce's runs: ROW/seed0/model.safetensors",
    )  # fmt: skip
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help="run folders under --runs")
    parser.add_argument("--weights", type=Path, nargs="+", help="model files (instead of --runs)")
    parser.add_argument("--data", default="fashion-mnist", help="data spec the models fit")


def model_files(
    args: argparse.Namespace, parser: argparse.ArgumentParser, folder: Path
) -> list[Path]:
    """The model files to measure: with ``--smoke`` one trained here into ``folder``, else
    ``--weights`` or every ``--rows`` run under ``--runs``; a missing one ends the script with
    a usage error naming it."""
    if args.smoke:
        return [smoke_weights(folder, args.data)]
    weights = args.weights or [args.runs / row / "seed0" / "model.safetensors" for row in args.rows]
    for path in weights:
        if not path.is_file():
            parser.error(f"--runs/--weights: no model file {path} (train it first: see --help)")
    return weights


def smoke_weights(folder: Path, data: str) -> Path:
    """A MobileNetV1-0.25 trained for 2 steps by ``sepconv train``, for ``--smoke``."""
    from sepconv.cli import main as cli

    code = cli(
        ["train", "--model", "mobilenet_v1", "--width-mult", "0.25", "--data", data,
         "--epochs", "1", "--max-steps", "2", "--batch-size", "32", "--out", str(folder)]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"smoke training failed ({code})")
    return folder / "last.safetensors"  # --max-steps stops before model.safetensors


if __name__ == "__main__":
    main()
