"""``sepconv predict``: a model's latency on this machine, predicted from a profile, not run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from sepconv.predict.kernels import Kernel
    from sepconv.predict.latency import LatencyPrediction
    from sepconv.utils.tables import FitTable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict a model's latency here from a `sepconv calibrate` profile, without "
        "running it",
        description="Split MODEL into the kernels the profile's backend runs (after its "
        "fusions) and predict each from the kernels the profile measured on this machine; "
        "the model is traced on the meta device, never run. MODEL is a registered name "
        "(see `sepconv zoo`) or 'module:attr'.",
    )
    parser.add_argument("model", metavar="MODEL", help="registry name or module:attr")
    parser.add_argument("--profile", required=True, help="a profile of `sepconv calibrate`")
    add_model_options(parser)
    parser.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--per-layer", action="store_true", help="list every kernel")
    parser.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    parser.add_argument(
        "--backend", default=None, help="refuse a profile of another backend than this one"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="refuse a profile of another thread count"
    )
    parser.set_defaults(func=run)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--input-size`` and the registry builder's ``--width-mult``."""
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="side of the square input image (default: the model's registered resolution)",
    )
    parser.add_argument(
        "--width-mult",
        type=float,
        default=None,
        help="width multiplier, for models whose builder takes one",
    )


def build_model(spec: str, width_mult: float | None) -> tuple[nn.Module, int | None]:
    """The model ``spec`` names (a registered model on the meta device: shapes only, built
    at once), with ``width_mult`` for builders that take it; and its registered side."""
    import inspect

    import torch

    from sepconv.cli._model import resolve_model
    from sepconv.models import create_model, get_model_info
    from sepconv.models.options import MAX_WIDTH_MULT
    from sepconv.utils.validation import invalid, positive_number

    if ":" in spec:
        if width_mult is not None:
            raise invalid(
                "--width-mult",
                "no value for a 'module:attr' model",
                width_mult,
                note=f" for {spec!r}",
            )
        return resolve_model(spec)
    info = get_model_info(spec)
    kwargs: dict[str, Any] = {}
    if width_mult is not None:
        if "width_mult" not in inspect.signature(info.builder).parameters:
            raise invalid(
                "--width-mult",
                "no value: the width of this model is fixed by its name",
                width_mult,
                note=f" for {spec!r}",
            )
        positive_number("--width-mult", width_mult)
        if width_mult > MAX_WIDTH_MULT:
            raise invalid("--width-mult", f"a positive number up to {MAX_WIDTH_MULT:g}", width_mult)
        kwargs["width_mult"] = width_mult
    with torch.device("meta"):
        model = create_model(spec, **kwargs)
    return model.eval(), info.input_size


def run(args: argparse.Namespace) -> int:
    import json

    from sepconv.cli._console import console
    from sepconv.predict.latency import predict_latency
    from sepconv.predict.profile import Profile
    from sepconv.utils.validation import MAX_BATCH, MAX_SIDE, bounded_int, thread_count

    bounded_int("--batch-size", args.batch_size, 1, MAX_BATCH)
    if args.input_size is not None:
        bounded_int("--input-size", args.input_size, 1, MAX_SIDE)
    if args.threads is not None:
        thread_count("--threads", args.threads)
    profile = Profile.load(args.profile)
    profile.check_here(
        backend=args.backend, threads=args.threads, source=f"Profile file {args.profile!r}"
    )
    model, default_size = build_model(args.model, args.width_mult)
    side = args.input_size or default_size or 224
    one = predict_latency(model, side, profile, check_machine=False)
    batch = (
        one
        if args.batch_size == 1
        else predict_latency(model, side, profile, batch_size=args.batch_size, check_machine=False)
    )
    if args.json:
        result = {
            **batch.to_dict(),
            "model": args.model,
            "width_mult": args.width_mult,
            "batch_size": args.batch_size,
            "batch1_ms": one.ms,
            "profile": profile.describe(),
        }
        if args.per_layer:
            result["per_kernel"] = [k.to_dict() for k in batch.kernels]
        print(json.dumps(result, indent=2))
        return 0
    out = console()
    out.print(summary_table(args.model, one, batch, profile.describe()))
    if args.per_layer:
        out.print(kernel_table(batch))
    return 0


def summary_table(
    name: str, one: LatencyPrediction, batch: LatencyPrediction, where: str
) -> FitTable:
    """Batch 1 and the asked batch: predicted ms, per image, MACs."""
    from sepconv.utils.tables import Column, FitTable

    rows = []
    for p in [one] if batch is one else [one, batch]:
        n = p.input_shape[0]
        rows.append(
            [str(n), f"{p.ms:.3f}", f"{p.ms / n:.3f}", f"{p.macs / n / 1e6:.1f}", p.variant]
        )
    far = sum(k.extrapolated for k in batch.kernels)
    caption = [f"predicted from {where}; nothing was run"]
    if far:
        caption.append(
            f"{far} kernel(s) far from every measured one (extrapolated): calibrate longer "
            "or with models like this one"
        )
    side = one.input_shape[2]
    return FitTable(
        f"{name} at {side}x{side}: predicted latency",
        [
            Column("batch"),
            Column("predicted ms", short="ms"),
            Column("ms / image", short="ms/img"),
            Column("MMACs / image", short="MMACs", drop=2),
            Column("variant", "left", drop=1),
        ],
        rows,
        caption="\n".join(caption),
    )


def kernel_table(prediction: LatencyPrediction) -> FitTable:
    """One row per kernel: layer, kernel, its input, predicted ms, share of the total."""
    from sepconv.utils.tables import Column, FitTable

    total = prediction.seconds
    rows = [
        [
            k.kernel.layer or "(model)",
            label(k.kernel) + (" *" if k.extrapolated else ""),
            "x".join(map(str, k.kernel.inputs[0][1:])),
            f"{k.seconds * 1e3:.4f}",
            f"{100 * k.seconds / total:.1f}",
        ]
        for k in prediction.kernels
    ]
    rows.append(
        [
            "(runtime call)",
            "",
            "",
            f"{prediction.call_s * 1e3:.4f}",
            f"{100 * prediction.call_s / total:.1f}",
        ]
    )
    return FitTable(
        "per kernel, as the backend runs them",
        [
            Column("layer", "left"),
            Column("kernel", "left"),
            Column("input", "left", drop=1),
            Column("ms"),
            Column("% of total", short="%"),
        ],
        rows,
        caption="pw/dw/std/grp: pointwise, depthwise, standard, grouped conv (KxK/stride, fused "
        "activation, +add: fused residual add); * far from every measured kernel "
        "(extrapolated)",
    )


_CONV = {"pointwise": "pw", "depthwise": "dw", "standard": "std", "grouped": "grp"}


def label(kernel: Kernel) -> str:
    """A short name: ``"dw 3x3/2 relu6"``, ``"pw 1x1/1 +add"``, ``"se silu/sigmoid"``."""
    if kernel.kind == "conv":
        k = kernel.kernel_size
        text = f"{_CONV[kernel.conv_type]} {k}x{k}/{kernel.stride}"
        return text + (f" {kernel.act}" if kernel.act else "") + (" +add" if kernel.add else "")
    if kernel.kind == "se":
        return f"se {kernel.act}/{kernel.gate}"
    if kernel.kind == "act":
        return kernel.act
    return kernel.kind
