"""The fused Triton kernels of ``sepconv.kernels`` against the vendor path, per block and end to
end, on one GPU (or, at smoke size, on the CPU under Triton's interpreter).

``--part blocks``: every block of each model that the kernels compute, at each batch, on the
input it really receives, timed as PyTorch runs it (the BatchNorm-folded block in the same
precision, channels_last, ``cudnn.benchmark`` on) and on the kernels (expansion and depthwise
in one kernel, and in two). Each row gives the bytes of the kernels' schedule (counted:
``TritonInvertedResidual.bytes_moved``), the time that many bytes take at the copy bandwidth
measured in the same run (the block's floor) and the measured time over that floor. The
kernels are autotuned on their first calls; the tiles chosen are recorded.

``--part models``: the whole model, peers configured as their users would: eager (folded,
channels_last, ``cudnn.benchmark``), that eager model replayed from a CUDA graph, and
``torch.compile(mode="max-autotune")`` (CUDA graphs included, ``dynamic=False``), against
``sepconv fused``: the model on the kernels, replayed from a CUDA graph. All in the same
precision (pure bf16 by default), every output checked against eager fp32, timed in ``--rounds``
alternating rounds (median and IQR of the round medians).

Weights are random, with every BatchNorm's statistics set from a few random batches, so
activations keep their scale through the network and the output check means something.

Run:
    python3 benchmarks/fused_kernels.py --part blocks --device cuda
    python3 benchmarks/fused_kernels.py --part models --device cuda --models mobilenet_v2
    python3 benchmarks/fused_kernels.py --part blocks --smoke   # CPU, interpreter
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from harness import Run, add_output_flags, add_smoke_flag, header, positive_int
from torch import nn

import sepconv
from sepconv.bench import measure, measure_ceilings
from sepconv.bench.output import markdown_table

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CL = torch.channels_last


def calibrated(name: str, *, width: float, size: int, device: torch.device) -> nn.Module:
    """``name`` with random weights and each BatchNorm's statistics those of random inputs
    (cumulative over 4 batches): activations keep their scale, as trained ones do."""
    torch.manual_seed(0)
    model = sepconv.create_model(name, width_mult=width).to(device)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, size, size, device=device))
    return model.eval()


def block_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each top-level-named block of ``model`` receives on ``x``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: seen.setdefault(name, a[0]))
        for name, module in model.named_modules()
        if name
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def rounds(
    calls: dict[str, Callable[[], object]],
    device: torch.device,
    count: int,
    repeats: int,
    once: bool = False,
) -> dict[str, list[float]]:
    """Median seconds per call of each contender in each of ``count`` alternating rounds; with
    ``once``, the seconds of a single call instead (``--smoke``: under the interpreter a call
    takes seconds, and the error check has run every contender once already)."""
    medians: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(count):
            for name, call in calls.items():
                if once:
                    start = time.perf_counter()
                    call()
                    medians[name].append(time.perf_counter() - start)
                    continue
                medians[name].append(
                    measure(call, warmup=2, repeats=repeats, device=device).median_s
                )
    return medians


def summary(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_ms": statistics.median(samples) * 1e3, "iqr_ms": (q[2] - q[0]) * 1e3}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-12))


def blocks_part(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    from sepconv.kernels import TritonInvertedResidual, TritonSeparable, to_triton

    copy_gbs = measure_ceilings(device=device).bandwidth_gbs
    rows = []
    for name in args.models:
        model = calibrated(name, width=args.width, size=args.size, device=device)
        folded = sepconv.fuse(model).to(dtype).to(memory_format=CL)
        fused, names = to_triton(folded, dtype=dtype)
        two, _ = to_triton(folded, dtype=dtype, fuse_expand=False)
        for batch in args.batches:
            x = torch.randn(batch, 3, args.size, args.size, device=device).to(dtype)
            inputs = block_inputs(folded, x.contiguous(memory_format=CL))
            for block_name in names:
                kernel_block = fused.get_submodule(block_name)
                if not isinstance(kernel_block, (TritonInvertedResidual, TritonSeparable)):
                    continue
                inp = inputs[block_name].contiguous(memory_format=CL)
                vendor = folded.get_submodule(block_name)
                calls: dict[str, Callable[[], object]] = {
                    "vendor eager": partial(vendor, inp),
                    "sepconv fused": partial(kernel_block, inp),
                }
                if getattr(kernel_block, "expand", None) is not None:  # a fusion to compare
                    calls["sepconv two kernels"] = partial(two.get_submodule(block_name), inp)
                with torch.no_grad():
                    error = relative_error(kernel_block(inp), vendor(inp))
                element = torch.finfo(dtype).bits // 8
                moved = kernel_block.bytes_moved(tuple(inp.shape), element)
                floor_ms = moved / (copy_gbs * 1e9) * 1e3
                timed = rounds(calls, device, args.rounds, args.repeats, once=args.smoke)
            for contender, samples in timed.items():
                stats = summary(samples)
                rows.append(
                        {
                            "model": name, "block": block_name, "batch": batch,
                            "contender": contender, **stats, "runs": len(samples),
                            "bytes_fused_schedule": moved, "floor_ms": floor_ms,
                            "over_floor": stats["median_ms"] / floor_ms,
                            "rel_error_vs_vendor": error,
                        }
                    )  # fmt: skip
    return rows


def models_part(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    from sepconv.deploy import capture_graph
    from sepconv.kernels import to_triton

    cuda = device.type == "cuda"
    precision = args.precision
    rows = []
    for name in args.models:
        model = calibrated(name, width=args.width, size=args.size, device=device)
        folded = sepconv.fuse(model).to(dtype).to(memory_format=CL)
        fused, _ = to_triton(folded, dtype=dtype)
        for batch in args.batches:
            x = torch.randn(batch, 3, args.size, args.size, device=device)
            with torch.no_grad():
                reference = model.float()(x)

            # Every contender prepares its input (cast, channels_last) inside the timed call.
            prepared = partial(_prepared, x=x, dtype=dtype)
            calls: dict[str, Callable[[], Any]] = {"eager": partial(_call, folded, prepared)}
            if cuda:
                torch.backends.cudnn.benchmark = True
                calls["eager graph"] = partial(capture_graph(folded, x, device, precision), x)
                torch._dynamo.reset()
                compiled = torch.compile(folded, mode="max-autotune", dynamic=False)
                calls["compile max-autotune"] = partial(_call, compiled, prepared)
                calls["sepconv fused"] = partial(capture_graph(fused, x, device, precision), x)
            else:
                calls["sepconv fused"] = partial(_call, fused, prepared)
            with torch.no_grad():
                errors = {k: relative_error(call(), reference) for k, call in calls.items()}
            timed = rounds(calls, device, args.rounds, args.repeats, once=args.smoke)
            for contender, samples in timed.items():
                stats = summary(samples)
                rows.append(
                    {
                        "model": name, "batch": batch, "contender": contender,
                        "precision": precision, **stats, "runs": len(samples),
                        "images_per_s": batch / stats["median_ms"] * 1e3,
                        "rel_error_vs_fp32": errors[contender],
                    }
                )  # fmt: skip
    return rows


def _prepared(*, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype).contiguous(memory_format=CL)


def _call(model: Callable[[torch.Tensor], Any], prepared: Callable[[], torch.Tensor]) -> Any:
    return model(prepared())


def markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    if data["part"] == "blocks":
        headers = ["model", "block", "batch", "contender", "median ms", "floor ms", "x floor"]
        body = [
            [r["model"], r["block"], r["batch"], r["contender"], f"{r['median_ms']:.4f}",
             f"{r['floor_ms']:.4f}", f"{r['over_floor']:.2f}"]
            for r in rows
        ]  # fmt: skip
    else:
        headers = ["model", "batch", "contender", "median ms", "IQR ms", "img/s", "rel. error"]
        body = [
            [r["model"], r["batch"], r["contender"], f"{r['median_ms']:.3f}", f"{r['iqr_ms']:.3f}",
             f"{r['images_per_s']:,.0f}", f"{r['rel_error_vs_fp32']:.1e}"]
            for r in rows
        ]  # fmt: skip
    title = f"Fused kernels, part {data['part']} ({data['precision']})"
    return f"{header(title, data)}\n\n{markdown_table(headers, body)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("blocks", "models"), required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_b0"])
    parser.add_argument("--batches", nargs="+", type=positive_int, default=[1, 256])
    parser.add_argument("--precision", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--repeats", type=positive_int, default=10)
    add_output_flags(parser)
    add_smoke_flag(
        parser, "MobileNetV2-0.35 at 32x32, batch 1, fp32, one timed call, on the CPU interpreter"
    )
    args = parser.parse_args()
    if args.smoke:
        args.device, args.models, args.batches, args.precision = (
            "cpu",
            ["mobilenet_v2"],
            [1],
            "fp32",
        )
        args.width, args.size, args.rounds, args.repeats = 0.35, 32, 1, 2
    device = torch.device(args.device)
    if device.type == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before sepconv.kernels is first imported
    run = Run.start(__file__, args, name=f"fused_kernels_{args.part}")
    dtype = DTYPES[args.precision]
    rows = (blocks_part if args.part == "blocks" else models_part)(args, device, dtype)
    from sepconv.kernels import best_configs

    data = {
        **run.record(), "part": args.part, "precision": args.precision, "size": args.size,
        "width": args.width, "rows": rows,
        "tiles_chosen": best_configs(),
    }  # fmt: skip
    run.write(data, markdown(data))
    print(markdown(data))


if __name__ == "__main__":
    main()
