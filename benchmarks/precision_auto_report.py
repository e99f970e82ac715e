"""The report of ``precision_auto.py``: its tables and summary lines, from its JSON."""

from __future__ import annotations

from typing import Any

from harness import Run, clock_line, header
from rich.console import Console
from turns import method_text

from sepconv.bench.output import markdown_table, terminal_table

SEPCONV_AUTO = "sepconv auto"
HEADERS = [
    "model", "batch", "row", "computes in", "median ms", "IQR ms", "speed-up",
    "test agreement", "test top-1",
]  # fmt: skip


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for result in results:
        for row, r in result["rows"].items():
            test = r["test"]
            cells = [
                result["model"], str(result["batch_size"]), row, r["precision"],
                f"{r['median_ms']:.3f}", f"{r['iqr_ms']:.3f}",
                f"{r['speedup_vs_best_plain_fp32']:.2f}x",
                f"{test['agreement']:.4f}", f"{test['candidate_accuracy']:.4f}",
            ]  # fmt: skip
            out.append(cells)
    return out


def candidate_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for result in results:
        for name, c in result["chosen"][SEPCONV_AUTO]["candidates"].items():
            ms = "" if c["median_ms"] is None else f"{c['median_ms']:.3f}"
            agreement = "" if c["agreement"] is None else f"{c['agreement']:.4f}"
            fate = "kept" if c["kept"] else f"dropped: {c['reason']}"
            out.append([result["model"], str(result["batch_size"]), name, ms, agreement, fate])
    return out


def summary_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per model and batch: what sepconv auto chose, its speed-up and agreement."""
    lines = []
    for result in results:
        auto = result["rows"][SEPCONV_AUTO]
        speedup, agreement = auto["speedup_vs_best_plain_fp32"], auto["test"]["agreement"]
        lines.append(
            f"- {result['model']}, batch {result['batch_size']}: sepconv auto chose "
            f"{auto['precision']}, {speedup:.2f}x the best plain fp32 runtime at "
            f"{agreement:.2%} top-1 agreement on {result['test_images']} test images"
        )
    return lines


def report(data: dict[str, Any], run: Run) -> None:
    results = data["results"]
    rows, candidates = table_rows(results), candidate_rows(results)
    lines = summary_lines(results)
    console = Console(width=160)
    console.print(terminal_table("precision='auto' on trained models", HEADERS, rows))
    cand_headers = ["model", "batch", "candidate", "median ms", "held-out calib. agreement", "fate"]
    console.print(terminal_table("sepconv auto's candidates", cand_headers, candidates))
    for line in lines:
        console.print(line)
    first = results[0]
    method = method_text(data)
    text = "\n\n".join(
        [
            header("precision='auto' on trained models against the plain fp32 runtimes", data),
            f"{first['calibration_images']} calibration images (training split), "
            f"{first['test_images']} held-out test images; the rows are defined in the "
            "docstring of `benchmarks/precision_auto.py`. Median and IQR over interleaved "
            f"rounds on one batch of test images, {method}; *speed-up*: the best plain fp32 "
            "runtime's "
            "median over the row's; *test agreement*: top-1 agreement with eager fp32 on the "
            "test images.",
            markdown_table(HEADERS, rows),
            "Per model and batch:\n\n" + "\n".join(lines),
            "## sepconv auto's candidates\n\nAs `compile_for_inference(precision='auto')` "
            "measured them while building: median while choosing, top-1 agreement with eager "
            f"fp32 on the {first['judged_images']} calibration images int8 was not calibrated "
            "on.",
            markdown_table(cand_headers, candidates),
            clock_line(data),
        ]
    )
    run.write(data, text + "\n")
