"""GPU inference, sepconv against the strongest peers a GPU user would run, in one process on
one GPU.

For each model (MobileNetV1, MobileNetV2, EfficientNet-B0, ResNet-50; 224x224) and batch (1
and 256), the rows of ``gpu_inference_contenders.PLAN``: timm's model eager, captured in a
plain CUDA graph, and under ``torch.compile`` in the modes ``default``, ``reduce-overhead``,
``max-autotune`` and ``max-autotune-no-cudagraphs``, in pure bf16 and under bf16 autocast; and
sepconv's ``compile_for_inference(model, device="cuda", precision="bf16")``. Every contender
runs with ``cudnn.benchmark`` on, channels_last, ``dynamic=False`` after
``torch._dynamo.reset()``, and prepares its input inside the timed call. Weights are random
with calibrated BatchNorm statistics (``gpu_inference_models.py``), and every contender's
output is checked against its model's fp32 output (TF32 off) before it is timed. Timing
(pipelined throughput over ``--runs`` runs: median, IQR and each run's median; single-request
p50/p99 latency from pinned host memory and back; peak GPU memory): ``gpu_inference_timing.py``.
Bytes and the roofline columns: ``gpu_inference_report.py``.

Each model and batch takes minutes (torch.compile, max-autotune above all), so
``scripts/gpu-check`` runs one per part; ``--budget-s`` starts no row that its estimate (or
the time a row of its kind took in this run) says would not finish in time, records it as not
measured, and goes on with the next. The timm eager bf16 row is timed once more at the end of
each model and batch (``repeat_median_ms``): the drift of the GPU over the part.

Run:
    python3 benchmarks/gpu_inference.py --models mobilenet_v2 --batches 1 --budget-s 270
    python benchmarks/gpu_inference.py --smoke --device cpu --results-dir /tmp/bench

Writes ``--results-dir``/OUT.{json,md} (OUT: ``gpu_inference``, ``gpu_inference_smoke``)
after every row, so a run stopped part-way keeps what it measured. ``--smoke``: one small
model, batches 1 and 2 (8 on a GPU), short timings, no max-autotune; on a CPU the rows that
need CUDA (graphs, the modes that use them) are recorded as not measured, with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import torch
from gpu_inference_contenders import ANCHOR, PLAN, Contender, build, plan_for
from gpu_inference_models import BF16_TOLERANCE, PEERS, build_pair, check, fp32_reference
from gpu_inference_report import HEADERS, derived, markdown, table_rows, traffic
from gpu_inference_timing import MemoryWatch, measure_contender
from harness import Run, add_output_flags, add_smoke_flag, positive_int
from rich.console import Console

from sepconv.bench import measure_ceilings
from sepconv.bench.output import terminal_table
from sepconv.utils.devices import check_device

WEIGHTS = (
    "random initialisation (sepconv's and timm's defaults), then every BatchNorm's weight set "
    "to 1, its bias to 2 and its running statistics from 4 batches of 16 N(0, 1) images, so "
    "that activations keep their scale and bf16 rounding is not amplified layer by layer "
    "(calibrate_norms in benchmarks/gpu_inference_models.py says why)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    add_smoke_flag(parser, "one small model, two small batches, short timings")
    add_output_flags(parser)
    parser.add_argument("--models", default=None, help=f"comma-separated, among {list(PEERS)}")
    parser.add_argument("--batches", default=None, help="comma-separated (default 1,256)")
    parser.add_argument("--contenders", default=None, help="comma-separated names of PLAN rows")
    parser.add_argument("--runs", type=positive_int, default=3, help="separate measurements")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed blocks a run")
    parser.add_argument("--requests", type=positive_int, default=None, help="latency requests")
    parser.add_argument("--budget-s", type=float, default=None, help="start no row past it")
    args = parser.parse_args()
    args.device = check_device(args.device, "--device")
    names = [n for n in (args.models or "").split(",") if n]
    for name in names:
        if name not in PEERS:
            parser.error(f"argument --models: expected names among {list(PEERS)}, got {name!r}")
    known = [c.name for c in PLAN]
    args.contenders = [n.strip() for n in (args.contenders or "").split(",") if n.strip()]
    for name in args.contenders:
        if name not in known:
            parser.error(f"argument --contenders: expected names among {known}, got {name!r}")
    try:
        batches = [positive_int(b) for b in (args.batches or "").split(",") if b]
    except argparse.ArgumentTypeError as err:
        parser.error(f"argument --batches: {err}")
    cuda = args.device.type == "cuda"
    smoke = args.smoke
    args.models = names or (["mobilenet_v1"] if smoke else list(PEERS))
    args.batches = batches or ([1, 8 if cuda else 2] if smoke else [1, 256])
    args.size = 224 if cuda or not smoke else 32
    args.repeats = args.repeats or (3 if smoke else 10)
    args.requests = args.requests or (5 if smoke else 200)
    args.request_budget_s = 0.2 if smoke else 1.0
    return args


def not_runnable(contender: Contender, args: argparse.Namespace) -> str | None:
    """Why ``contender`` cannot run in this run, or None."""
    if args.device.type != "cuda" and contender.needs_cuda:
        return "needs CUDA (CUDA graphs, or GPU autotuning)"
    if args.smoke and "max-autotune" in (contender.mode or "") and contender.kind != "sepconv":
        return "--smoke: max-autotune builds take minutes"
    if args.contenders and contender.name not in args.contenders:
        return "left out by --contenders"
    return None


def measure_one(
    contender: Contender, args: argparse.Namespace, setup: dict[str, Any]
) -> dict[str, Any]:
    """Build, check and time one contender; its row."""
    device, x = args.device, setup["x"]
    if contender.kind == "sepconv" and args.smoke and contender.mode != "default":
        name = contender.name.replace(str(contender.mode), "default")
        contender = dataclasses.replace(contender, name=name, mode="default")
    watch = MemoryWatch(device)
    watch.start()
    started = time.perf_counter()
    call, facts = build(contender, setup["ours"], setup["theirs"], x, device)
    on_device = x.to(device)
    for _ in range(3):  # compiles (and records a CUDA graph) on the first calls
        output = call(on_device)
    build_s = time.perf_counter() - started
    watch.built()
    family = "sepconv" if contender.kind == "sepconv" else "timm"
    verdict = check(output, setup["references"][family])
    timing = measure_contender(
        call, x, device, runs=args.runs, repeats=args.repeats, requests=args.requests,
        request_budget_s=args.request_budget_s,
    )  # fmt: skip
    del call, output
    row = {
        "model": setup["model"], "batch": int(x.shape[0]), "contender": contender.name,
        "kind": contender.kind, "precision": contender.precision, "mode": contender.mode,
        **timing, **watch.end(), "build_s": build_s, "check": verdict, **facts,
    }  # fmt: skip
    derived(row, setup["traffic"], setup["ceilings"])
    return row


def measure_batch(
    name: str, batch: int, pair: tuple, args: argparse.Namespace, payload: dict, run: Run
) -> None:
    """Every row of the plan for ``name`` at ``batch``, into ``payload`` (written after each)."""
    ours, theirs = pair
    x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(2))
    setup = {
        "model": name, "x": x, "ours": ours, "theirs": theirs, "ceilings": payload["ceilings"],
        "references": {
            "sepconv": fp32_reference(ours, x, args.device),
            "timm": fp32_reference(theirs, x, args.device),
        },
        "traffic": traffic(ours, batch, args.size),
    }  # fmt: skip
    payload["traffic"][f"{name} batch {batch}"] = setup["traffic"]
    took: dict[tuple[str, str | None], float] = {}
    for contender in plan_for(batch):
        label = f"{name} batch {batch}: {contender.name}"
        reason = not_runnable(contender, args)
        estimate = took.get((contender.kind, contender.mode), contender.estimate_s)
        spent = time.perf_counter() - run.started
        left = None if args.budget_s is None else args.budget_s - spent
        if reason is None and left is not None and estimate > left:
            reason = f"over --budget-s (about {estimate:.0f} s, {max(left, 0):.0f} s left)"
        if reason is not None:
            payload["skipped"].append(f"{label} ({reason})")
            continue
        print(f"== {label}", flush=True)
        started = time.perf_counter()
        try:
            row = measure_one(contender, args, setup)
        except Exception as err:  # a failed compile or capture, out of memory: the rest still run
            first = (str(err).strip().splitlines() or [""])[0][:300]
            payload["skipped"].append(f"{label} ({type(err).__name__}: {first})")
        else:
            payload["results"].append(row)
        took[(contender.kind, contender.mode)] = time.perf_counter() - started
        write(run, payload)
    anchor = next(
        (r for r in payload["results"] if (r["model"], r["batch"], r["contender"])
         == (name, batch, ANCHOR.name)), None,
    )  # fmt: skip
    if anchor is not None:  # seconds, whatever the budget
        try:
            again = measure_one(ANCHOR, args, setup)
        except Exception as err:  # the rows measured stand without it
            payload["skipped"].append(f"{name} batch {batch}: the anchor's repeat ({err!r:.300})")
        else:
            anchor["repeat_median_ms"] = again["median_ms"]
            anchor["drift"] = again["median_ms"] / anchor["median_ms"]
        write(run, payload)


def write(run: Run, payload: dict[str, Any]) -> None:
    payload.update(run.clock())
    run.write(payload, markdown(payload))


def main() -> int:
    args = parse_args()
    device = args.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for every contender alike
    run = Run.start(__file__, args)
    payload: dict[str, Any] = {
        **run.record(),
        "ceilings": measure_ceilings(device=device).to_dict(),
        "tolerance": BF16_TOLERANCE,
        "weights": WEIGHTS,
        "plan": [{"name": c.name, "regimes": list(c.regimes), "note": c.note} for c in PLAN],
        "models": {},
        "traffic": {},
        "results": [],
        "skipped": [],
    }
    for name in args.models:
        print(f"== {name}: building and calibrating", flush=True)
        ours, theirs, facts = build_pair(name, args.size, device)
        payload["models"][name] = facts
        for batch in args.batches:
            measure_batch(name, batch, (ours, theirs), args, payload, run)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write(run, payload)
    env = payload["environment"]
    title = f"Inference on {env.get('gpu') or env['cpu']}, {args.size}x{args.size}"
    Console().print(terminal_table(title, HEADERS, table_rows(payload["results"])))
    for skipped in payload["skipped"]:
        print(f"not measured: {skipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
