"""``sepconv bench``: measured latency of a model, per layer and on the roofline."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sepconv.bench import LatencyPoint, PerLayerReport
    from sepconv.bench.twin import TwinComparison
    from sepconv.utils.tables import FitTable


def _int_list(text: str) -> list[int]:
    from sepconv.utils.validation import MAX_BATCH

    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= MAX_BATCH for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers up to {MAX_BATCH} such as 1,8,32, "
            f"received {text!r}"
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

    from sepconv.analysis import analyze
    from sepconv.bench import (
        benchmark,
        compare_twin,
        environment,
        measure_ceilings,
        per_layer_latency,
    )
    from sepconv.bench.allocator import keep_freed_memory
    from sepconv.bench.load import OtherLoad
    from sepconv.bench.plots import plot_roofline
    from sepconv.cli._console import console
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable, write_json
    from sepconv.utils.validation import MAX_BATCH, MAX_SIDE, bounded_int, invalid, thread_count

    if args.plot is not None and not args.per_layer:
        raise invalid(
            "--plot",
            "it together with --per-layer (the plot is the per-layer roofline)",
            args.plot,
            note=" alone",
        )
    device = check_device(args.device, "--device")
    if args.threads is not None:
        thread_count("--threads", args.threads)
    if args.input_size is not None:
        bounded_int("--input-size", args.input_size, 1, MAX_SIDE)
    bounded_int("--repeats", args.repeats, 1, MAX_BATCH)
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path is not None:
            check_writable(path, flag)
    from sepconv.cli._model import resolve_model

    model, default_size = resolve_model(args.model)
    model.eval()
    keep_freed_memory()  # no allocator page faults in the timings (sepconv.bench.allocator)
    others = OtherLoad()  # what other processes take of the machine while this one measures
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
    out = console()
    out.print(_points_table(points, args.model, size, macs, where, args.repeats))
    result: dict[str, Any] = {
        "model": args.model,
        "input_size": size,
        "device": str(device),
        "macs_per_image": macs,
        "environment": environment(threads),
        "points": [p.to_dict() for p in points],
    }
    # The whole model at the first batch, fp32, NCHW, eager: measured once above and reused by
    # the per-layer summary and the twin table, so one run shows one figure for it.
    plain = next(
        (
            p.timing
            for p in points
            if p.batch == args.batch[0]
            and p.dtype == "fp32"
            and not p.channels_last
            and not p.compiled
        ),
        None,
    )
    if args.per_layer:
        ceilings = measure_ceilings(threads=args.threads, device=device)
        example = torch.randn(args.batch[0], 3, size, size, device=device)
        report = per_layer_latency(
            model.to(device),
            example,
            ceilings=ceilings,
            threads=args.threads,
            progress=True,
            model_timing=plain,
        )
        out.print(_layers_table(report))
        out.print(_roofline_table(report, reused=plain is not None))
        result["per_layer"] = report.to_dict()
        if args.plot is not None:
            plot_roofline(report.rows, ceilings, args.plot, title=f"{args.model} on the roofline")
            out.print(f"roofline written to {args.plot}")
    twin = None
    if args.twin:
        twin = compare_twin(
            model,
            torch.randn(args.batch[0], 3, size, size),
            label=args.model,
            threads=args.threads,
            repeats=args.repeats,
            device=device,
            separable_timing=plain,
        )
        out.print(_twin_table(twin, reused=plain is not None))
        result["twin"] = twin.to_dict()
    busy = others.note()
    for line in busy_warnings(points, twin) + ([f"warning: {busy}"] if busy else []):
        out.print(line, style="yellow", markup=False)
    if args.json is not None:
        write_json(args.json, result)
        out.print(f"measurements written to {args.json}")
    return 0


def busy_warnings(points: list[LatencyPoint], twin: TwinComparison | None) -> list[str]:
    """A warning per timing whose blocks disagree too much to trust its median."""
    from sepconv.bench.timing import NOISY_SPREAD

    timings = [(f"batch {p.batch} {p.dtype} {_mode(p)}", p.timing) for p in points]
    if twin is not None:
        timings.append(("the standard twin", twin.standard))
    return [
        f"warning: {name}: IQR {100 * t.spread:.0f}% of the median (more than "
        f"{100 * NOISY_SPREAD:.0f}%): the machine looks busy; compare medians from a quiet run"
        for name, t in timings
        if t.noisy
    ]


def _mode(point: LatencyPoint) -> str:
    return f"{'NHWC' if point.channels_last else 'NCHW'} {'compile' if point.compiled else 'eager'}"


def _points_table(
    points: list[LatencyPoint], model: str, size: int, macs: int, where: str, repeats: int
) -> FitTable:
    """The whole model per batch, dtype, memory format and mode."""
    from sepconv.utils.tables import Column, FitTable

    columns = [
        Column("batch"),
        Column("dtype", "left"),
        Column("memory", "left", short="mem"),
        Column("mode", "left"),
        Column("median ms"),
        Column("IQR ms"),
        Column("img/s", drop=2),
        Column("GFLOP/s", short="GF/s", drop=1),
    ]
    rows = [
        [
            str(p.batch),
            p.dtype,
            "NHWC" if p.channels_last else "NCHW",
            "compile" if p.compiled else "eager",
            f"{p.timing.median_ms:.2f}",
            f"{p.timing.iqr_ms:.2f}",
            f"{p.images_per_s:.1f}",
            f"{2 * macs * p.images_per_s / 1e9:.1f}",
        ]
        for p in points
    ]
    return FitTable(
        f"{model} at {size}x{size}, {where}",
        columns,
        rows,
        caption=f"{macs / 1e9:.3f} GMACs per image (1 MAC = one multiply-add, FLOPs = 2 x "
        f"MACs); median and interquartile range over {repeats} timed blocks",
    )


def _layers_table(report: PerLayerReport) -> FitTable:
    """One row per convolution and linear layer: counted cost next to its measured time."""
    from sepconv.utils.tables import Column, FitTable

    columns = [
        Column("layer", "left"),
        Column("kind", "left", drop=3),
        Column("in -> out", "left", drop=5),
        Column("MMACs", drop=4),
        Column("MB moved", short="MB"),
        Column("FLOP/B", drop=2),
        Column("ms"),
        Column("GFLOP/s", short="GF/s"),
        Column("bound", "left", drop=1),
        Column("% of bound", short="%"),
    ]
    rows = []
    for row in report.rows:
        if row.cost is None or row.roofline is None:
            continue
        point = row.roofline
        out = row.output_shape or ()
        shape_in = "x".join(map(str, row.input_shape[1:]))
        shape_out = "x".join(map(str, out[1:]))
        rows.append(
            [
                row.name,
                row.cost.kind.removesuffix("_conv"),
                f"{shape_in} -> {shape_out}",
                f"{row.cost.macs / 1e6:.1f}",
                f"{row.cost.bytes_moved / 1e6:.2f}",
                f"{point.intensity:.1f}",
                f"{row.timing.median_ms:.3f}",
                f"{point.achieved_gflops:.1f}",
                point.bound + (" (c)" if point.level == "cache" else ""),
                f"{100 * point.fraction_of_bound:.0f}" + ("*" if point.above_roof else ""),
            ]
        )
    c = report.ceilings
    notes = [
        "each layer timed alone on its captured input; bytes: weights + activations read "
        "and written once"
    ]
    if c is not None and c.cache_bandwidth_gbs is not None and c.cache_bytes is not None:
        notes.append(
            f"(c): bytes fit in the {c.cache_bytes / 2**20:.0f} MiB last-level cache, so the "
            f"layer runs from it when repeated: held against the cache roof "
            f"({c.cache_bandwidth_gbs:.1f} GB/s) instead of DRAM ({c.bandwidth_gbs:.1f} GB/s)"
        )
    above = {r[-2].split()[0] for r in rows if r[-1].endswith("*")}
    if "memory" in above:
        notes.append(
            "* on a memory-bound layer: above its roof, as its data stayed in a cache closer "
            "than the one measured (L1/L2)"
        )
    if "compute" in above:
        notes.append(
            "* on a compute-bound layer: faster than the matmul that measured the peak (taken "
            "once, it comes out low on a busy machine or where the BLAS favours this shape)"
        )
    return FitTable(
        "per layer: counted cost next to measured time", columns, rows, caption="\n".join(notes)
    )


def _roofline_table(report: PerLayerReport, *, reused: bool) -> FitTable:
    """Summarise placed layers per kind: count, share of time, bound, median fraction of bound."""
    from statistics import median

    from sepconv.utils.tables import Column, FitTable
    from sepconv.utils.validation import invalid

    c = report.ceilings
    if c is None:
        raise invalid("report", "one with ceilings", report.ceilings)
    kinds: dict[str, list[Any]] = {}
    for row in report.rows:
        kinds.setdefault(row.cost.kind if row.cost else "not counted", []).append(row)
    rows = []
    for kind, layer_rows in kinds.items():
        placed = [r.roofline for r in layer_rows if r.roofline is not None]
        share = sum(r.timing.median_s for r in layer_rows) / report.layers_total_s
        rows.append(
            [
                kind,
                str(len(layer_rows)),
                f"{100 * share:.1f}",
                str(sum(p.bound == "memory" for p in placed)) if placed else "-",
                str(sum(p.bound == "compute" for p in placed)) if placed else "-",
                f"{100 * median(p.fraction_of_bound for p in placed):.1f}" if placed else "-",
            ]
        )
    columns = [
        Column("kind", "left"),
        Column("layers"),
        Column("time %"),
        Column("memory-bound", short="mem"),
        Column("compute-bound", short="comp"),
        Column("median % of bound", short="med %"),
    ]
    cache = f", cache {c.cache_bandwidth_gbs:.1f} GB/s" if c.cache_bandwidth_gbs is not None else ""
    whole = "the same timing as the first table" if reused else "timed after the layers"
    return FitTable(
        f"per kind, batch {report.rows[0].input_shape[0]}",
        columns,
        rows,
        caption=f"roofline: peak {c.peak_gflops:.1f} GFLOP/s, DRAM {c.bandwidth_gbs:.1f} GB/s"
        f"{cache}, ridge {c.ridge:.1f} FLOP/byte (FLOP = 2 MACs)\n"
        f"sum of isolated layers {report.layers_total_s * 1e3:.2f} ms vs whole model "
        f"{report.model_timing.median_ms:.2f} ms ({whole}); coverage {report.coverage:.2f}",
    )


def _twin_table(twin: TwinComparison, *, reused: bool) -> FitTable:
    """The model next to its standard twin: counted MACs, measured time, and both ratios."""
    from sepconv.utils.tables import Column, FitTable

    rows = [
        [name, f"{macs / 1e9:.3f}", f"{timing.median_ms:.2f}", f"{timing.iqr_ms:.2f}"]
        for name, macs, timing in (
            ("separable", twin.separable_macs, twin.separable),
            ("standard twin", twin.standard_macs, twin.standard),
        )
    ]
    rows.append(
        ["standard / separable", f"{twin.mac_ratio:.2f}x", f"{twin.latency_ratio:.2f}x", ""]
    )
    separable = "the first table's timing" if reused else "timed here"
    return FitTable(
        f"{twin.label} vs its standard-conv twin",
        [Column("version", "left"), Column("GMACs"), Column("median ms"), Column("IQR ms")],
        rows,
        caption=f"{twin.pairs} depthwise+pointwise pairs made standard convs; separable: "
        f"{separable}, twin timed with the same settings. Fewer MACs is not the same as "
        "faster: compare the two ratios",
    )
