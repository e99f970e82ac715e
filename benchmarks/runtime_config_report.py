"""The tables of ``runtime_config.py``: printed, and written to OUT.md, from the data of
OUT.json."""

from __future__ import annotations

from typing import Any

from harness import Run, clock_line, header
from rich.console import Console
from turns import method_text

from sepconv.bench.output import markdown_table, terminal_table

HEADERS = ["model", "runtime", "config", "median ms", "IQR ms", "ratio", "faster in", "settings"]


def describe(settings: dict[str, object]) -> str:
    """``key=value`` pairs, with ONNX Runtime's enums by their short name."""
    return ", ".join(f"{k}={str(v).rsplit('.', 1)[-1]}" for k, v in sorted(settings.items()))


def effective_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per model, the OpenVINO configs grouped by the properties they compiled to."""
    lines = []
    for result in results:
        groups: dict[str, list[str]] = {}
        for row in result["rows"]:
            if row["openvino_effective"]:
                groups.setdefault(row["openvino_effective"], []).append(row["config"])
        for props, configs in groups.items():
            lines.append(f"- {result['model']}: {', '.join(configs)} -> {props}")
    return lines


def table_rows(results: list[dict[str, Any]], rounds: int) -> list[list[str]]:
    table = []
    for result in results:
        for row in result["rows"]:
            label = f"{row['runtime']} / {row['config']}"
            config = row["config"] + (
                f" (= {row['timed_as'].split(' / ')[1]})" if row["timed_as"] != label else ""
            )
            wins = row["faster_rounds"]
            table.append(
                [
                    result["model"],
                    row["runtime"],
                    config,
                    f"{row['median_ms']:.2f}",
                    f"{row['iqr_ms']:.2f}",
                    f"{row['ratio_to_default']:.3f}",
                    "" if wins is None else f"{wins}/{rounds}",
                    row["settings"],
                ]
            )
    return table


def report(data: dict[str, Any], run: Run) -> None:
    """Print the table, and write OUT.md, from the data."""
    results, rounds, repeats = data["models"], data["rounds"], data["repeats"]
    size = data["input_shape"][-1]
    rows = table_rows(results, rounds)
    title = f"batch 1, {size}x{size}, {data['threads']} thread(s), fp32, CPU"
    Console(width=200).print(terminal_table(title, HEADERS, rows))
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    method = method_text(data)
    run.write_markdown(
        header("sepconv's runtime settings against the runtimes' defaults", data)
        + f"  \n{versions}  \n{clock_line(data)}\n\n"
        f"Batch 1, {size}x{size}, fp32, random weights with BatchNorm statistics measured on "
        "random images; every row runs the same BN-folded ONNX file, except the PyTorch-graph "
        "row, which gives OpenVINO the BN-folded PyTorch model. The rows of a model are timed, "
        f"{method}, in {rounds} alternating rounds (order changed each round) x {repeats} "
        f"timed blocks, each after a {data['settle_s']:g} s pause; *median ms*, *IQR ms* over "
        "all blocks. *ratio*: the row's median over its runtime's default row (below 1: faster "
        "than the default). *faster in*: rounds in which the row's median beat the default's. "
        "A row marked (= other) has the same settings as the other row and was timed once. "
        "*settings*: everything the row sets; the rest is the runtime's default. A load "
        "average above the thread count means other processes shared the cores during the "
        "run: times then vary by tens of percent from round to round, and only rows that "
        "compiled to different properties (list below the table) can differ for a reason "
        "other than noise.\n\n"
        f"{markdown_table(HEADERS, rows)}\n\n"
        "What the OpenVINO CPU plugin reports each config (on the ONNX file) compiled to; "
        "configs on one line compiled to the same properties, so their times differ only by "
        "noise:\n\n" + "\n".join(effective_lines(results)) + "\n"
    )
