"""Which layers int8 hurts: top-1 agreement with fp32 when only a window of a model's
convolutions runs in int8.

When a model's int8 file disagrees with fp32 on many images, the usual remedies (a better range
calibration, the first conv or the classifier in float: ``int8_recipes.py``) assume one culprit.
This script looks for it. For each trained model it quantizes the whole model with sepconv's
recipe (ONNX Runtime's quantizer, MinMax ranges set on ``--calib-samples`` training images,
per-channel int8 weights, uint8 activations: ``ort_int8.quantize_file``), then, for every
window of ``--window`` consecutive convolutions in graph order, the same recipe on that window
alone (every other op left in float) and the whole recipe with that window left in float, and
scores each file by its top-1 agreement with eager fp32 on ``--test-images`` test images, at
the image size the weights were trained at. A window whose int8 alone costs most of the whole
model's disagreement, and whose float restores it, is the culprit; windows that each cost a
little and none of which restores it point at the whole model (its int8 error large against its
logit margins) or at the other ops. So, last, every conv in int8 with no other op, then with the
ops of one other kind (``Mul``, ``Sigmoid``, ``ReduceMean``, ``Add``, ``Gemm``: those the model
has) in int8 too. The
median top-1 margin of fp32's logits and the median largest logit error of the whole-model
int8 file are reported beside it.

Run (the models of ``configs/deploy_224.toml``):
    .venv/bin/python benchmarks/int8_layers.py --runs runs/reproduce/deploy_224 \\
        --rows efficientnet_b0
    .venv/bin/python benchmarks/int8_layers.py --smoke   # a 2-step model, 32/32 images

Writes results/benchmarks/int8_layers.{json,md} (``--results-dir``/``--out`` move them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch
from harness import Run, add_output_flags, add_smoke_flag, clock_line, header, positive_int
from onnxruntime import quantization
from ort_int8 import quantize_file, reader
from precision_auto import add_model_flags, model_files
from rich.console import Console

import sepconv
from sepconv.bench.output import markdown_table, terminal_table
from sepconv.data import load_dataset
from sepconv.deploy import (
    calibration_images,
    compare_top1,
    export_onnx,
    load_onnx,
    prepare_images,
)
from sepconv.modelfile import read_model_file

HEADERS = ["model", "in int8", "convs", "layers", "test agreement"]
# Op types ONNX Runtime's quantizer can put in int8 that sepconv's models contain.
QUANTIZABLE = {"Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "ReduceMean", "GlobalAveragePool"}
BATCH = 25  # images per call, and per calibration batch (at 224x224 ORT keeps every output)


def module_name(node: onnx.NodeProto) -> str:
    """The module a node was exported from (its ``name_scopes``), else the node's name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = json.loads(prop.value.replace("'", '"'))
            if len(scopes) >= 2:
                return str(scopes[-2])
    return node.name


def label(row: dict[str, Any]) -> str:
    """What a row put in int8, as its table shows it."""
    if row["whole_model"]:
        return "every op"
    if row["mode"] == "convs and":
        return f"every conv and {row['op_type']}" if row["op_type"] else "every conv only"
    return f"{row['mode']} these convs"


def span(names: list[str]) -> str:
    """``first .. last`` of a window's module names."""
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def bench(weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    record = read_model_file(weights).record
    model = sepconv.load_model(weights).eval()
    mean, std = list(record.mean), list(record.std)
    split = load_dataset(args.data, "test")
    side = int(record.provenance.get("image_size") or split.images.shape[-1])
    size = (len(mean), side, side)
    test = prepare_images(split.images[: args.test_images], input_size=size, mean=mean, std=std)
    labels = split.labels[: args.test_images]
    calib = calibration_images(
        args.data, args.calib_samples, image_size=side, in_chans=size[0], mean=mean, std=std
    )
    with torch.inference_mode():
        logits = torch.cat([model(batch) for batch in test.split(BATCH)])
    reference = logits.argmax(dim=1)  # eager fp32's classes, for every file's comparison
    top2 = logits.topk(2, dim=1).values
    loaded = {"batch_size": BATCH, "threads": args.threads}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sepconv-int8-layers-") as tmp:
        folder = Path(tmp)
        fp32, prepared, out = folder / "fp32.onnx", folder / "fp32.pre.onnx", folder / "q.onnx"
        export_onnx(model, fp32, input_size=size, check_batches=(1,), check_inputs=calib[:1])
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        convs = [n for n in graph.node if n.op_type == "Conv"]
        names = [module_name(n) for n in convs]
        windows = [(a, min(a + args.window, len(convs))) for a in range(0, len(convs), args.window)]
        kinds = sorted({n.op_type for n in graph.node} & QUANTIZABLE - {"Conv"})
        plans = [("whole", 0, len(convs), "")]
        plans += [(mode, a, b, "") for a, b in windows for mode in ("only", "all but")]
        plans += [("convs and", 0, len(convs), kind) for kind in ["", *kinds]]
        for mode, a, b, kind in plans:
            whole = mode == "whole"
            print(f"{weights}: {mode} convs {a}-{b - 1} {kind} in int8 ...", flush=True)
            inside = [n.name for i, n in enumerate(convs) if a <= i < b]
            options: dict[str, Any] = {}
            if mode == "only":  # the window's convs, every other op in float
                others = [n.name for n in convs if n.name not in inside]
                options = {"op_types_to_quantize": ["Conv"], "nodes_to_exclude": others}
            elif mode == "all but":  # sepconv's recipe with the window's convs in float
                options = {"nodes_to_exclude": inside}
            elif mode == "convs and":  # every conv, and every op of one other kind
                options = {"op_types_to_quantize": ["Conv", *([kind] if kind else [])]}
            quantize_file(prepared, out, reader(calib, BATCH), **options)
            int8 = load_onnx(out, **loaded)
            agreement = compare_top1(reference, int8, test, labels, batch_size=BATCH)
            row = {
                "whole_model": whole,
                "mode": mode,
                "op_type": kind,
                "convs": [a, b],
                "layers": names[a:b],
                "test": agreement.to_dict(),
            }
            if whole:
                with torch.inference_mode():
                    outputs = torch.cat([int8(batch) for batch in test.split(BATCH)])
                row["median_logit_error"] = float((outputs - logits).abs().amax(1).median())
            rows.append(row)
    return {
        "model": record.arch,
        "weights": str(weights),
        "input_size": list(size),
        "convs": len(convs),
        "median_top1_margin": float((top2[:, 0] - top2[:, 1]).median()),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_flags(parser)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--calib-samples", type=positive_int, default=250)
    parser.add_argument("--test-images", type=positive_int, default=500)
    parser.add_argument("--window", type=positive_int, default=10, help="convs per window")
    add_smoke_flag(parser, f"a model trained for 2 steps, {BATCH} calibration and test images")
    add_output_flags(parser)
    args = parser.parse_args()
    for flag in ("calib_samples", "test_images"):
        if getattr(args, flag) % BATCH:
            parser.error(f"--{flag.replace('_', '-')}: expected a positive multiple of {BATCH}")
    run = Run.start(__file__, args)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sepconv-int8-layers-smoke-") as tmp:
        if args.smoke:
            args.calib_samples = args.test_images = BATCH
        results = [bench(path, args) for path in model_files(args, parser, Path(tmp))]
    data = {
        **run.record(args.threads),
        "calibration_images": args.calib_samples,
        "test_images": args.test_images,
        "window": args.window,
        "results": results,
    }
    run.write_json(data)
    table = [
        [
            result["model"],
            label(row),
            f"{row['convs'][0]}-{row['convs'][1] - 1}",
            "all" if row["whole_model"] or row["mode"] == "convs and" else span(row["layers"]),
            f"{row['test']['agreement']:.4f}",
        ]
        for result in data["results"]
        for row in result["rows"]
    ]
    lines = [
        f"- {result['model']} at {result['input_size'][1]}x{result['input_size'][2]}: "
        f"{result['convs']} convs; fp32's median top-1 margin {result['median_top1_margin']:.3f},"
        f" the whole int8 model's median largest logit error "
        f"{result['rows'][0]['median_logit_error']:.3f}"
        for result in data["results"]
    ]
    Console(width=160).print(terminal_table("int8 convs by window", HEADERS, table))
    print("\n".join(lines))
    run.write_markdown(
        "\n\n".join(
            [
                header("Which layers int8 hurts: one window of convolutions at a time", data),
                f"{data['calibration_images']} calibration images (training split), "
                f"{data['test_images']} test images; *convs*: a window of convolutions in graph "
                "order; *only these convs* in int8, every other op in float; *all but these "
                "convs*: sepconv's recipe on every op except the window's convs, left in float; "
                "*every conv and X*: every conv and every op of type X in int8, the rest in "
                "float; the first row of each model: sepconv's recipe on every op. *test "
                "agreement*: top-1 agreement with eager fp32 (`benchmarks/int8_layers.py`'s "
                "docstring).",
                markdown_table(HEADERS, table),
                "\n".join(lines),
                clock_line(data),
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
