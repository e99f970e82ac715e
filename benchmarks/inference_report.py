"""The tables of ``inference.py``: printed, and written to OUT.md, from the data of OUT.json."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness import Run, clock_line, header
from inference_profile import profile_section
from inference_ratios import (
    INT8_ROWS,
    RATIO_BASELINES,
    SELF_CONTROL,
    SEPCONV_BF16_ROW,
    SEPCONV_ROW,
    baselines,
    precisions,
    ratios,
)
from rich.console import Console
from turns import method_text

from sepconv.bench.output import markdown_table, terminal_table

HEADERS = [
    "model", "backend", "precision", "median ms", "IQR ms", "speed-up vs eager", "ratio",
    "GMAC/s", "% of matmul peak", "rel. error",
]  # fmt: skip


def table_rows(result: dict[str, Any], peak_gmacs: float) -> list[list[str]]:
    """One row per timed row of a model."""
    base = baselines(result)
    kind = precisions(result)
    ratio = ratios(result)
    table = []
    for row, r in result["rows"].items():
        ms = r["median_ms"]
        gmacs = result["macs"] / 1e9 / (ms / 1e3)
        note = f"{ratio[row]:.2f} vs {RATIO_BASELINES[row][1]}" if row in ratio else ""
        if row in result["auto"]:
            note += f" ({result['auto'][row]['backend']})"
        table.append(
            [
                result["model"], row, kind[row], f"{ms:.2f}", f"{r['iqr_ms']:.2f}",
                f"{base['eager'] / ms:.2f}x", note, f"{gmacs:.1f}",
                f"{100 * gmacs / peak_gmacs:.0f}%", f"{r['max_rel_error_vs_reference']:.1e}",
            ]
        )  # fmt: skip
    return table


def summary_lines(results: list[dict[str, Any]], peak_gmacs: float) -> list[str]:
    """One line per model: sepconv's ratios and speed-ups, computed from the measurements."""
    lines = []
    for result in results:
        ms = {row: r["median_ms"] for row, r in result["rows"].items()}
        base = baselines(result)
        eager_share = result["macs"] / 1e9 / (base["eager"] / 1e3) / peak_gmacs
        line = (
            f"- {result['model']}, fp32: sepconv path / best of (ONNX Runtime, OpenVINO f32) = "
            f"{ms[SEPCONV_ROW] / base['fp32 runtime']:.2f}; "
            f"{base['eager'] / ms[SEPCONV_ROW]:.1f}x faster than "
            f"{result['reference'].split()[0]} eager, which runs at {100 * eager_share:.0f}% of "
            "the matmul peak"
        )
        control = ratios(result).get(SELF_CONTROL)
        if control is not None:
            line += (
                f"; self-control (the faster plain runtime's second session) {control:.2f} of "
                "the best plain fp32 runtime"
            )
        if SEPCONV_BF16_ROW in ms:
            bf16 = ms[SEPCONV_BF16_ROW]
            line += (
                f"; bf16 allowed: {bf16 / base['any runtime']:.2f} of the best plain runtime of "
                f"any precision, {base['eager'] / bf16:.1f}x over eager"
            )
        int8 = [ms[r] for r in INT8_ROWS if r in ms]
        if int8:
            line += f"; best int8 {base['fp32'] / min(int8):.2f}x faster than best fp32"
        lines.append(line)
    return lines


def reruns_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the reruns table: per model and sepconv row, every rerun's ratio."""
    count = data["reruns"]["count"]
    headers = ["model", "row", "ratio vs", *(f"run {i + 1}" for i in range(count))]
    headers += ["median", "worst", "chosen"]
    rows = []
    for model, by_row in data["reruns"]["ratios"].items():
        for row, r in by_row.items():
            chosen = ", ".join(f"{n}x {b}" for b, n in Counter(r["backends"]).most_common())
            per_run = [f"{v:.2f}" for v in r["per_run"]]
            median, worst = f"{r['median']:.2f}", f"{r['worst']:.2f}"
            rows.append([model, row, r["baseline"], *per_run, median, worst, chosen])
    return headers, rows


def report(data: dict[str, Any], run: Run) -> None:
    """Print the tables and write OUT.md (OUT.json is the caller's)."""
    results, threads = data["models"], data["threads"]
    height, width = data["input_shape"][2:]
    peak_size = data.get("matmul_peak_size", 2048)  # absent from files written before it
    peak_gflops = data["matmul_peak_gflops"]
    peak_gmacs = peak_gflops / 2  # 1 MAC = 2 FLOPs
    rows = [row for result in results for row in table_rows(result, peak_gmacs)]
    console = Console(width=180)
    title = f"batch 1, {height}x{width}, {threads} thread(s), CPU"
    console.print(terminal_table(title, HEADERS, rows))
    lines = summary_lines(results, peak_gmacs)
    for line in lines:
        console.print(line)
    reruns = ""
    if "reruns" in data:
        rerun_headers, rerun_rows = reruns_rows(data)
        console.print(terminal_table("ratios over reruns", rerun_headers, rerun_rows))
        reruns = (
            f"## Over {data['reruns']['count']} reruns, each in a fresh process\n\n"
            "Each sepconv row's ratio to its baseline (as in the *ratio* column below) in every "
            "rerun, their median and worst (highest), and the backends sepconv's path chose. "
            "*self-control* (with `--self-control`): a second session of the faster plain fp32 "
            "runtime (built the same way) over the best plain fp32 runtime, that is, the runtime "
            "with its default settings against itself; *chosen* then names the faster runtime. "
            "The tables after this one are the last rerun's; every rerun's data is in the "
            "JSON.\n\n" + markdown_table(rerun_headers, rerun_rows) + "\n\n"
        )
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    method = method_text(data)
    text = (
        header("Inference backends side by side", data)
        + f"  \n{versions}  \n{clock_line(data)}\n\n"
        + reruns
        + f"Batch 1, {height}x{width}, randomly initialised weights (the same in every row: "
        "the sepconv model loads the reference model's), BatchNorm statistics measured on the "
        "calibration images (with the initial ones a random network's activations shrink, to "
        "outputs near 1e-14 for EfficientNet-B0), timed on one held-out image of the same "
        "kind; the rows are described in results/benchmarks/README.md. *precision*: what the "
        "row computes in (OpenVINO's default is bf16 on a CPU with native bf16). Median and "
        f"interquartile range of {data['rounds']} interleaved rounds x {data['repeats']} timed "
        f"blocks, {method}. *speed-up vs eager*: against the torchvision/timm model in eager "
        "PyTorch. "
        "*ratio*: for sepconv's fp32 path, its time over the best of the two plain fp32 "
        "runtimes (ONNX Runtime, OpenVINO f32); for its bf16 path, over the best plain runtime "
        "of any precision; for int8, over the best fp32 row; the backend sepconv's path chose "
        "is in brackets; a bf16 backend whose output differs from fp32 by more than 5e-2 fails "
        "the path's check and is left out, so the bf16 path can end on a fp32 backend (its "
        "precision column says so). GMAC/s: MACs counted by `sepconv.analyze` (1 MAC = one "
        f"multiply-add) per second; matmul peak measured here: {peak_gmacs:.1f} GMAC/s "
        f"({peak_gflops:.1f} GFLOP/s, {peak_size}x{peak_size} fp32 matmul, {threads} threads). "
        "*rel. error*: max|out - reference| / max|reference| on the timed image; int8 "
        "accuracy is measured on trained models (results/deploy/int8_fashion_mnist). "
        f"int8 calibration: {data['calibration']}.\n\n"
        f"{markdown_table(HEADERS, rows)}\n\n"
        "Per model:\n\n" + "\n".join(lines) + "\n\n" + profile_section(results)
    )
    run.write_markdown(text)
