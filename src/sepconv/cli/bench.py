"""``sepconv bench``: measured latency of a model, per layer and on the roofline."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from sepconv.bench import PerLayerReport
    from sepconv.bench.twin import TwinComparison


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 1,8,32, received {text!r}"
        )
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure a model's latency (per batch, memory format, mode; per layer; roofline)",
        description="Measure the forward latency of a model on this machine, next to its counted "
        "MACs: median and interquartile range over repeated runs, threads pinned and reported. "
        "With --per-layer, every leaf layer is timed in isolation on its real input and placed "
        "on the roofline measured here.",
    )
    parser.add_argument(
        "model", help="a registered model name (see `sepconv zoo`) or 'module:attr' for your own"
    )
    parser.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, e.g. 1,8,32")
    parser.add_argument(
        "--input-size", type=int, default=None, help="input side in pixels (default: the model's)"
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads to pin")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where to run: cpu (default), cuda or cuda:N (timed with CUDA events)",
    )
    parser.add_argument(
        "--dtype",
        default="fp32",
        help="comma-separated dtypes to measure: fp32, bf16, and on CUDA fp16",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="also measure channels_last (NHWC) memory"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also measure torch.compile next to eager"
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed blocks per point")
    parser.add_argument(
        "--per-layer",
        action="store_true",
        help="time each layer in isolation (at the first batch size) and place it on the roofline",
    )
    parser.add_argument(
        "--twin",
        action="store_true",
        help="also build the model's standard-conv twin (every depthwise+pointwise pair made one "
        "standard conv) and put its counted and measured cost next to the model's",
    )
    parser.add_argument("--plot", default=None, help="write the roofline (needs --per-layer)")
    parser.add_argument("--json", default=None, help="write every measurement to this JSON file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.table import Table

    from sepconv.analysis import analyze
    from sepconv.bench import (
        benchmark,
        compare_twin,
        environment,
        measure_ceilings,
        per_layer_latency,
    )
    from sepconv.bench.plots import plot_roofline
    from sepconv.cli._console import console
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable, write_json
    from sepconv.utils.validation import invalid, positive_int

    if args.plot is not None and not args.per_layer:
        raise invalid(
            "--plot",
            "it together with --per-layer (the plot is the per-layer roofline)",
            args.plot,
            note=" alone",
        )
    device = check_device(args.device, "--device")
    if args.threads is not None:
        positive_int("--threads", args.threads)
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path is not None:
            check_writable(path, flag)
    from sepconv.cli._model import resolve_model

    model, default_size = resolve_model(args.model)
    model.eval()
    size = args.input_size or default_size or 224
    macs = analyze(model, (1, 3, size, size)).macs
    points = benchmark(
        model,
        batches=args.batch,
        input_sizes=[size],
        dtypes=args.dtype.split(","),
        channels_last=[False, True] if args.channels_last else [False],
        compile=[False, True] if args.compile else [False],
        threads=args.threads,
        repeats=args.repeats,
        device=device,
    )
    threads = points[0].timing.threads
    where = (
        f"on {torch.cuda.get_device_name(device)}"
        if device.type == "cuda"
        else f"{threads} thread(s)"
    )
    table = Table(
        title=f"{args.model} at {size}x{size}: {macs / 1e9:.3f} GMACs per image (1 MAC = one "
        f"multiply-add), {where}",
        caption="median and interquartile range over repeated blocks",
    )
    for column in ("batch", "dtype", "memory", "mode", "median ms", "IQR ms", "img/s", "GMAC/s"):
        table.add_column(
            column, justify="left" if column in ("dtype", "memory", "mode") else "right"
        )
    for p in points:
        table.add_row(
            str(p.batch),
            p.dtype,
            "NHWC" if p.channels_last else "NCHW",
            "compile" if p.compiled else "eager",
            f"{p.timing.median_ms:.2f}",
            f"{p.timing.iqr_ms:.2f}",
            f"{p.images_per_s:.1f}",
            f"{macs * p.images_per_s / 1e9:.1f}",
        )
    console().print(table)
    result: dict[str, Any] = {
        "model": args.model,
        "input_size": size,
        "device": str(device),
        "macs_per_image": macs,
        "environment": environment(threads),
        "points": [p.to_dict() for p in points],
    }
    if args.per_layer:
        ceilings = measure_ceilings(threads=args.threads, device=device)
        example = torch.randn(args.batch[0], 3, size, size, device=device)
        report = per_layer_latency(
            model.to(device), example, ceilings=ceilings, threads=args.threads, progress=True
        )
        console().print(_layers_table(report))
        console().print(_roofline_table(report))
        result["per_layer"] = report.to_dict()
        if args.plot is not None:
            plot_roofline(report.rows, ceilings, args.plot, title=f"{args.model} on the roofline")
            console().print(f"roofline written to {args.plot}")
    if args.twin:
        twin = compare_twin(
            model,
            torch.randn(args.batch[0], 3, size, size),
            label=args.model,
            threads=args.threads,
            repeats=args.repeats,
            device=device,
        )
        console().print(_twin_table(twin, args.batch[0]))
        result["twin"] = twin.to_dict()
    if args.json is not None:
        write_json(args.json, result)
        console().print(f"measurements written to {args.json}")
    return 0


def _layers_table(report: PerLayerReport) -> Table:
    """One row per convolution and linear layer: counted cost next to its measured time."""
    from rich.table import Table

    table = Table(
        title="counted cost next to measured time, per conv / linear layer "
        "(1 MAC = one multiply-add; bytes: weights + activations read and written, fp32)",
        caption="each layer timed alone on its captured input; bound and % of bound from the "
        "roofline measured here",
    )
    for column in (
        "layer", "kind", "in -> out", "MMACs", "MB moved", "FLOP/B", "ms", "GMAC/s", "bound",
        "% of bound",
    ):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("layer", "kind", "bound") else "right"
        )
    for row in report.rows:
        if row.cost is None or row.roofline is None:
            continue
        out = row.output_shape or ()
        shape_in = "x".join(map(str, row.input_shape[1:]))
        shape_out = "x".join(map(str, out[1:]))
        table.add_row(
            row.name,
            row.cost.kind.removesuffix("_conv"),
            f"{shape_in} -> {shape_out}",
            f"{row.cost.macs / 1e6:.1f}",
            f"{row.cost.bytes_moved / 1e6:.2f}",
            f"{row.roofline.intensity:.1f}",
            f"{row.timing.median_ms:.3f}",
            f"{row.gmacs_per_s or 0.0:.1f}",
            row.roofline.bound,
            f"{100 * row.roofline.fraction_of_bound:.0f}",
        )
    return table


def _roofline_table(report: PerLayerReport) -> Table:
    """Summarise placed layers per kind: count, share of time, bound, median fraction of bound."""
    from statistics import median

    from rich.table import Table

    from sepconv.utils.validation import invalid

    c = report.ceilings
    if c is None:
        raise invalid("report", "one with ceilings", report.ceilings)
    table = Table(
        title=f"per layer, batch {report.rows[0].input_shape[0]}: roofline peak "
        f"{c.peak_gflops:.1f} GFLOP/s, {c.bandwidth_gbs:.1f} GB/s, ridge {c.ridge:.1f} FLOP/byte",
        caption=f"sum of isolated layers {report.layers_total_s * 1e3:.1f} ms vs whole model "
        f"{report.model_timing.median_ms:.1f} ms (coverage {report.coverage:.2f})",
    )
    for column in (
        "kind",
        "layers",
        "time %",
        "memory-bound",
        "compute-bound",
        "median % of bound",
    ):
        table.add_column(column, justify="left" if column == "kind" else "right")
    kinds: dict[str, list[Any]] = {}
    for row in report.rows:
        kinds.setdefault(row.cost.kind if row.cost else "not counted", []).append(row)
    for kind, rows in kinds.items():
        placed = [r.roofline for r in rows if r.roofline is not None]
        share = sum(r.timing.median_s for r in rows) / report.layers_total_s
        table.add_row(
            kind,
            str(len(rows)),
            f"{100 * share:.1f}",
            str(sum(p.bound == "memory" for p in placed)) if placed else "-",
            str(sum(p.bound == "compute" for p in placed)) if placed else "-",
            f"{100 * median(p.fraction_of_bound for p in placed):.1f}" if placed else "-",
        )
    return table


def _twin_table(twin: TwinComparison, batch: int) -> Table:
    """The model next to its standard twin: counted MACs, measured time, and both ratios."""
    from rich.table import Table

    table = Table(
        title=f"{twin.label} vs its standard-conv twin ({twin.pairs} depthwise+pointwise pairs "
        "made standard convs)",
        caption="fewer MACs is not the same as faster: compare the two ratios",
    )
    for column in ("version", "GMACs", "median ms", "IQR ms"):
        table.add_column(column, justify="left" if column == "version" else "right")
    for name, macs, timing in (
        ("separable", twin.separable_macs, twin.separable),
        ("standard twin", twin.standard_macs, twin.standard),
    ):
        table.add_row(name, f"{macs / 1e9:.3f}", f"{timing.median_ms:.2f}", f"{timing.iqr_ms:.2f}")
    table.add_row(
        "ratio standard / separable",
        f"{twin.mac_ratio:.2f}x",
        f"{twin.latency_ratio:.2f}x",
        "",
        style="bold",
    )
    return table
