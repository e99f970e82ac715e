"""GPU inference, side by side in one run on one GPU: the usual ways to run these models, and
sepconv's ``compile_for_inference(device="cuda")``.

For mobilenet_v1, mobilenet_v2, efficientnet_b0 and resnet50 at 224x224, batch 1 and 256:

- ``eager fp32``: torchvision's model (timm's ``mobilenetv1_100`` for MobileNetV1, which
  torchvision lacks), NCHW, eager, PyTorch's default math (TF32 allowed for cuDNN convs).
- ``eager AMP channels_last``: the same model in channels-last memory under
  ``torch.autocast(float16)``, as timm's ``benchmark.py --amp --channels-last`` runs it.
- ``timm compile bf16 channels_last``: timm's model, channels-last, ``torch.compile`` (default
  mode) under bf16 autocast: the configuration of timm's own published GPU tables, the
  strongest peer.
- ``sepconv compile_for_inference``: sepconv's model of the same architecture, compiled with
  ``compile_for_inference(model, device="cuda", batch_size=N)``: BatchNorm folded, eager
  channels-last fp32/bf16/fp16, torch.compile max-autotune and a CUDA graph measured, each
  checked against fp32, the fastest kept (its choice and why are in the JSON). Its timed call
  includes casting the fp32 NCHW input; the peers get theirs prepared outside the timed region.

All weights are random (no network here), so every path does the same arithmetic as with
trained weights. Each contender is timed with CUDA events by :func:`sepconv.bench.measure`, in
alternating rounds. Beside img/s and ms, each row gives the model's achieved FLOP rate (FLOPs =
2 x sepconv's counted MACs) as a fraction of the matmul peak measured in this run (bf16 peak
for 16-bit contenders, fp32 otherwise) and its achieved bandwidth (sepconv's counted bytes,
an unfused estimate at the contender's element size, / time) as a fraction of the measured
device-to-device copy bandwidth; a fused path can exceed 1.0 there, as it keeps activations on
chip that the count assumes go to memory.

Run:
    python3 benchmarks/gpu_inference.py [--smoke] [--device cuda] [--out results/benchmarks]

Writes gpu_inference.{json,md} (``gpu_inference_<device>_smoke`` with ``--smoke``) into
``--out``, after every model, so a run cut short keeps what it measured. ``--budget-s`` stops
starting new models once spent. ``--smoke``: one model, tiny batches, no torch.compile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

import sepconv
from sepconv.analysis import analyze
from sepconv.bench import environment, measure, measure_ceilings
from sepconv.bench.output import markdown_environment, markdown_table, terminal_table
from sepconv.deploy import compile_for_inference
from sepconv.utils.devices import check_device
from sepconv.utils.files import write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
# sepconv name -> (torchvision builder name or None, timm name)
PEERS = {
    "mobilenet_v2": ("mobilenet_v2", "mobilenetv2_100"),
    "efficientnet_b0": ("efficientnet_b0", "efficientnet_b0"),
    "mobilenet_v1": (None, "mobilenetv1_100"),
    "resnet50": ("resnet50", "resnet50"),
}


def peer_model(name: str) -> nn.Module:
    """torchvision's model of ``name`` where it has one, else timm's; random weights."""
    tv_name, timm_name = PEERS[name]
    torch.manual_seed(0)
    if tv_name is not None:
        import torchvision

        return getattr(torchvision.models, tv_name)(weights=None).eval()
    return timm_model(timm_name)


def timm_model(timm_name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(timm_name, pretrained=False).eval()


def contenders(
    name: str, batch: int, size: int, device: torch.device, smoke: bool, compile_mode: str
) -> dict[str, tuple[Callable[[], object], str, dict[str, Any]]]:
    """Contender -> (call to time, element size of its activations, facts to report)."""
    cuda = device.type == "cuda"
    x = torch.randn(batch, 3, size, size, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    amp = torch.float16 if cuda else torch.bfloat16  # CPU autocast runs bf16
    out: dict[str, tuple[Callable[[], object], str, dict[str, Any]]] = {}

    eager = peer_model(name).to(device)
    out["eager fp32"] = (lambda: eager(x), "fp32", {})
    amp_model = peer_model(name).to(device).to(memory_format=torch.channels_last)

    def run_amp() -> object:
        with torch.autocast(device.type, dtype=amp):
            return amp_model(x_cl)

    out["eager AMP channels_last"] = (run_amp, "16-bit", {"autocast": str(amp)})
    if not smoke:
        timm_net = timm_model(PEERS[name][1]).to(device).to(memory_format=torch.channels_last)
        compiled = torch.compile(timm_net)

        def run_timm() -> object:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return compiled(x_cl)

        out["timm compile bf16 channels_last"] = (run_timm, "16-bit", {})
    model = sepconv.create_model(name).eval()
    started = time.perf_counter()
    fast = compile_for_inference(
        model,
        input_size=(3, size, size),
        batch_size=batch,
        device=device,
        candidates=None if cuda and not smoke else (("eager", "cudagraph") if cuda else ("eager",)),
        compile_mode=compile_mode,
    )
    facts = {
        # the key of fast.timings: "backend/precision" on CUDA, the backend on a CPU
        "picked": f"{fast.backend}/{fast.precision}" if cuda else fast.backend,
        "why": fast.why,
        "timings_ms": dict(fast.timings),
        "skipped": dict(fast.skipped),
        "max_rel_error": fast.max_rel_error,
        "build_s": time.perf_counter() - started,
    }
    kind = "fp32" if fast.precision == "fp32" else "16-bit"
    out["sepconv compile_for_inference"] = (lambda: fast.run(x), kind, facts)
    return out


def measure_model(
    name: str, batch: int, size: int, device: torch.device, args: argparse.Namespace, ceilings: Any
) -> list[dict[str, Any]]:
    runs = contenders(name, batch, size, device, args.smoke, args.compile_mode)
    model = sepconv.create_model(name).eval()
    macs = analyze(model, (batch, 3, size, size)).macs
    bytes_by_kind = {
        "fp32": analyze(model, (batch, 3, size, size)).bytes_moved,
        "16-bit": analyze(model, (batch, 3, size, size), dtype=torch.bfloat16).bytes_moved,
    }
    samples: dict[str, list[float]] = {label: [] for label in runs}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for label, (call, _, _) in runs.items():
                timing = measure(call, warmup=3, repeats=args.repeats, device=device)
                samples[label].extend(timing.samples_s)
    rows = []
    for label, (_, kind, facts) in runs.items():
        seconds = statistics.median(samples[label])
        peak = ceilings.bf16_peak_gflops if kind == "16-bit" else None
        peak = peak or ceilings.peak_gflops
        gflops = 2 * macs / seconds / 1e9
        gbs = bytes_by_kind[kind] / seconds / 1e9
        rows.append(
            {
                "model": name,
                "batch": batch,
                "contender": label,
                "median_ms": seconds * 1e3,
                "images_per_s": batch / seconds,
                "gflops": gflops,
                "fraction_of_peak": gflops / peak,
                "gbytes_per_s": gbs,
                "fraction_of_bandwidth": gbs / ceilings.bandwidth_gbs,
                "element_size": kind,
                **facts,
            }
        )
    return rows


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["model"],
            str(r["batch"]),
            r["contender"] + (f" ({r['picked']})" if "picked" in r else ""),
            f"{r['images_per_s']:.0f}",
            f"{r['median_ms']:.3f}",
            f"{100 * r['fraction_of_peak']:.1f}",
            f"{100 * r['fraction_of_bandwidth']:.1f}",
        ]
        for r in rows
    ]


HEADERS = ["model", "batch", "contender", "img/s", "ms", "% FLOP peak", "% bandwidth"]


def write(args: argparse.Namespace, payload: dict[str, Any], stem: str) -> None:
    rows = payload["results"]
    c = payload["ceilings"]
    env = payload["environment"]
    peak16 = c["bf16_peak_gflops"]
    bf16 = "not measured (CPU)" if peak16 is None else f"{peak16 / 1e3:.1f} TFLOP/s"
    text = (
        markdown_environment(env, payload["command"])
        + f"\n\nCeilings measured in this run on {c['device']}: fp32 matmul "
        f"{c['peak_gflops'] / 1e3:.1f} TFLOP/s, bf16 matmul {bf16}, copy "
        f"{c['bandwidth_gbs']:.0f} GB/s.\n\n" + markdown_table(HEADERS, table_rows(rows)) + "\n"
    )
    if payload["skipped"]:
        text += "\nNot measured: " + "; ".join(payload["skipped"]) + "\n"
    write_json(args.out / f"{stem}.json", payload)
    write_text(args.out / f"{stem}.md", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--smoke", action="store_true", help="one model, tiny batches")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for JSON + MD")
    parser.add_argument("--models", default=None, help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per round")
    parser.add_argument("--budget-s", type=float, default=None, help="start no model after")
    parser.add_argument(
        "--compile-mode", default="max-autotune", help="torch.compile mode of sepconv's candidate"
    )
    args = parser.parse_args()
    device = check_device(args.device, "--device")
    cuda = device.type == "cuda"
    names = args.models.split(",") if args.models else list(PEERS)
    for name in names:
        if name not in PEERS:
            parser.error(f"argument --models: expected names among {list(PEERS)}, got {name!r}")
    if args.smoke:
        names = names[:1]
        batches, size = ((1, 8), 224) if cuda else ((1, 2), 64)
    else:
        batches, size = (1, 256), 224
    args.rounds = args.rounds or (1 if args.smoke else 2)
    args.repeats = args.repeats or (3 if args.smoke else 10)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_inference" + (f"_{device.type}_smoke" if args.smoke else "")
    start = time.perf_counter()
    ceilings = measure_ceilings(device=device)
    env = environment()
    payload: dict[str, Any] = {
        "command": "python3 benchmarks/gpu_inference.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "ceilings": ceilings.to_dict(),
        "results": [],
        "skipped": [],
    }
    for name in names:
        for batch in batches:
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                payload["skipped"].append(f"{name} batch {batch} (over --budget-s)")
                continue
            try:
                payload["results"] += measure_model(name, batch, size, device, args, ceilings)
            except Exception as err:  # e.g. out of memory: record it, measure the rest
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                payload["skipped"].append(f"{name} batch {batch} ({type(err).__name__}: {first})")
            write(args, payload, stem)
            if cuda:
                torch.cuda.empty_cache()
    payload["total_s"] = time.perf_counter() - start
    write(args, payload, stem)
    title = f"Inference on {env.get('gpu') or env['cpu']}, {size}x{size}"
    Console().print(terminal_table(title, HEADERS, table_rows(payload["results"])))
    for skipped in payload["skipped"]:
        print(f"not measured: {skipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
