"""OpenVINO's two ways of reading an ONNX file, on the same fp32 and int8 files: its native
reader (``openvino.Core().read_model``, what sepconv uses) and its Python conversion tool
(``openvino.convert_model``).

For each trained model sepconv writes its fp32 ONNX file (``sepconv.export_onnx``: BatchNorm
folded) and its int8 file (``sepconv.deploy.quantize``: ONNX Runtime's quantizer, MinMax ranges
on ``--calib-samples`` training images drawn as ``sepconv evaluate --calib-data`` draws them),
reads each file both ways, compiles both for the CPU (f32 inference precision, ``--threads``
threads, the same static shape) and reports, per file and reader: top-1 agreement with eager
fp32 on ``--test-images`` test images, the largest output difference between the two readers,
the median latency at batch 1 (interleaved rounds, both readers of a file taking turns in one
process: the same runtime), and whether the conversion tool started child processes (its
usage telemetry, sent unless the user opted out, one forked process per message).

Run (the models of ``configs/deploy_224.toml``):
    .venv/bin/python benchmarks/openvino_reader.py --runs runs/reproduce/deploy_224 \\
        --rows mobilenet_v1 mobilenet_v2 efficientnet_b0
    .venv/bin/python benchmarks/openvino_reader.py --smoke   # a 2-step model, 32 images

Writes results/benchmarks/openvino_reader.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from precision_auto import add_model_flags, calibration, model_files, model_inputs
from rich.console import Console
from turns import children_ended

from sepconv.bench import measure
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.bench.timing import interleaved_order
from sepconv.deploy import export_onnx, openvino_config, quantize
from sepconv.deploy.backends import read_onnx_graph

READERS = ("read_model", "convert_model")
HEADERS = ["model", "file", "reader", "test agreement", "median ms", "IQR ms", "max abs diff"]


def compiled(path: Path, reader: str, shape: list[int], threads: int) -> Any:
    """An infer request over ``path`` read by ``reader``, and the CPU seconds of the child
    processes reading it started (``convert_model``'s telemetry), waited for to the end."""
    before = os.times()
    graph = read_onnx_graph(path) if reader == "read_model" else ov.convert_model(str(path))
    children_ended()  # those still sending count too, and none runs on into the timings
    children = sum(os.times()[2:4]) - sum(before[2:4])
    graph.reshape(shape)
    model = ov.Core().compile_model(graph, "CPU", openvino_config(threads, "f32"))
    return model.create_infer_request(), children


def bench(weights: Path, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    got = model_inputs(weights, 1, args.data, args.test_images)
    calib = calibration(got, args.data, args.calib_samples)
    with torch.inference_mode():
        reference = got.model(got.inputs).argmax(-1).numpy()
    files = {"fp32": folder / "model.onnx", "int8": folder / "model.int8.onnx"}
    export_onnx(got.model, files["fp32"], input_size=got.size)
    quantize(got.model, calib, files["int8"], num_samples=len(calib), threads=args.threads)
    shape = [1, *got.size]
    images = [got.inputs[i : i + 1].numpy() for i in range(len(got.inputs))]
    rows = []
    for kind, path in files.items():
        requests, children, outputs = {}, {}, {}
        for reader in READERS:
            requests[reader], children[reader] = compiled(path, reader, shape, args.threads)
            outputs[reader] = np.stack([requests[reader].infer({0: x})[0][0] for x in images])
        samples: dict[str, list[float]] = {reader: [] for reader in READERS}
        for r in range(args.rounds):
            for i in interleaved_order(len(READERS), r):
                reader = READERS[i]
                run = functools.partial(requests[reader].infer, {0: images[0]})
                timing = measure(run, warmup=2, repeats=args.repeats, threads=args.threads)
                samples[reader] += timing.samples_s
        diff = float(np.abs(outputs["read_model"] - outputs["convert_model"]).max())
        for reader in READERS:
            ms = np.asarray(samples[reader]) * 1e3
            q1, q3 = np.percentile(ms, [25, 75])
            agreement = float((outputs[reader].argmax(-1) == reference).mean())
            rows.append({
                "file": kind, "reader": reader, "test_agreement": agreement,
                "median_ms": float(np.median(ms)), "iqr_ms": float(q3 - q1),
                "max_abs_diff_between_readers": diff, "child_cpu_s": children[reader],
            })  # fmt: skip
    return {"model": got.record.arch, "weights": str(weights), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_flags(parser)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--calib-samples", type=positive_int, default=256)
    parser.add_argument("--test-images", type=positive_int, default=500)
    parser.add_argument("--rounds", type=positive_int, default=6, help="interleaved rounds")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed blocks per round")
    add_smoke_flag(parser, "a model trained for 2 steps, 32 calibration and test images")
    add_output_flags(parser)
    args = parser.parse_args()
    run = Run.start(__file__, args)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.calib_samples = args.test_images = 32
        args.rounds = 2
    with tempfile.TemporaryDirectory(prefix="sepconv-openvino-reader-") as tmp:
        paths = model_files(args, parser, Path(tmp))
        results = [bench(path, args, Path(tmp)) for path in paths]
    data = {
        **run.record(args.threads),
        "openvino": ov.__version__,
        "calibration_images": args.calib_samples,
        "test_images": args.test_images,
        "results": results,
    }
    run.write_json(data)
    every = [(result["model"], row) for result in results for row in result["rows"]]
    table = [
        [model, row["file"], row["reader"], f"{row['test_agreement']:.4f}",
         f"{row['median_ms']:.3f}", f"{row['iqr_ms']:.3f}",
         f"{row['max_abs_diff_between_readers']:.2e}"]
        for model, row in every
    ]  # fmt: skip
    spawned = max(row["child_cpu_s"] for _, row in every if row["reader"] == "convert_model")
    Console(width=120).print(terminal_table("OpenVINO's two ONNX readers", HEADERS, table))
    text = "\n\n".join(
        [
            header("OpenVINO's two ways of reading an ONNX file", data),
            f"OpenVINO {data['openvino']}. The files, readers and columns are described in "
            "the docstring of `benchmarks/openvino_reader.py`; *test agreement*: top-1 "
            f"agreement with eager fp32 on {args.test_images} test images; *max abs diff*: the "
            "largest difference between the two readers' outputs on those images. "
            f"`convert_model`'s child processes used up to {spawned:.2f} CPU s per call "
            "(`read_model`: none).",
            markdown_table(HEADERS, table),
            clock_line(data),
        ]
    )
    run.write_markdown(text + "\n")


if __name__ == "__main__":
    main()
