"""The tables of ``gpu_inference.py``, its roofline estimate, and the merge of its parts.

**Bytes, an estimate.** ``sepconv.analyze`` counts each op's input, weights and output once, at
bf16 element size (every contender here computes in bf16). Three counts per model and batch:

- ``minimum``: the BatchNorm-folded model (``sepconv.fuse``) with every activation applied in
  the epilogue of the convolution that produces its input: convolutions, the linear layer,
  residual adds, poolings and squeeze-excite products each one pass, norm and activation
  none. The least traffic this network needs layer by layer; the ``% BW`` columns divide it by
  the time, so they compare contenders on time alone and never overstate a fraction.
- ``folded``: the same with each activation its own pass (read and write): what runs where the
  convolution is cuDNN's and the activation (with the folded bias, or the BatchNorm that
  torch.compile fuses into it) a separate kernel: sepconv's paths and compiled peers.
- ``unfolded``: every BatchNorm and activation its own pass: timm's eager model.

A backend that keeps activations on chip across layers moves less than ``minimum``;
``gpu_inference_dram.py`` measures the DRAM traffic of one forward with Nsight Compute.

Merge the parts of one device run into one file (the ``--out`` of each part's JSON):

    python benchmarks/gpu_inference_report.py results/gpu/parts/gpu_inference_*.json \\
        --results-dir results/gpu --out gpu_inference
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from harness import Run, add_output_flags

import sepconv
from sepconv.bench.output import markdown_environment, markdown_table

EXECUTED = {"eager": "unfolded", "graph": "unfolded", "compile": "folded", "sepconv": "folded"}


def traffic(model: torch.nn.Module, batch: int, size: int) -> dict[str, int]:
    """The three byte counts of the module docstring for ``model`` at ``batch``."""
    shape = (batch, 3, size, size)
    folded = sepconv.analyze(sepconv.fuse(model.eval()), shape, dtype=torch.bfloat16)
    unfolded = sepconv.analyze(model.eval(), shape, dtype=torch.bfloat16)
    activations = sum(r.bytes_moved for r in folded.rows if r.kind == "activation")
    return {
        "minimum": folded.bytes_moved - activations,
        "folded": folded.bytes_moved,
        "unfolded": unfolded.bytes_moved,
        "macs": folded.macs,
    }


def derived(row: dict[str, Any], counts: dict[str, int], ceilings: dict[str, Any]) -> None:
    """Add FLOP rate and bandwidth, as fractions of the measured ceilings, to ``row``."""
    seconds = row["median_ms"] / 1e3
    peak = ceilings.get("bf16_peak_gflops") or ceilings["peak_gflops"]
    gflops = 2 * counts["macs"] / seconds / 1e9
    row.update(
        gflops=gflops,
        fraction_of_peak=gflops / peak,
        fraction_of_bandwidth=counts["minimum"] / seconds / 1e9 / ceilings["bandwidth_gbs"],
        executed_bytes_estimate=counts[EXECUTED[row["kind"]]],
    )


HEADERS = [
    "model", "batch", "contender", "check", "ms (IQR)", "img/s", "p50 / p99 ms", "peak / held MiB",
    "% FLOP peak", "% BW", "build s",
]  # fmt: skip


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        name = r["contender"] + (f" ({r['picked']})" if r.get("picked") else "")
        error = r["check"]["rel_error"]
        ok = "ok" if r["check"]["passed"] else "FAILED"
        ok += "" if error is None else f" {error:.2g}"
        out.append([
            r["model"], str(r["batch"]), name, ok,
            f"{r['median_ms']:.3f} ({r['iqr_ms']:.3f})", f"{r['images_per_s']:.0f}",
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}",
            f"{_mib(r['peak_mem_mb'])} / {_mib(r['held_mb'])}",
            f"{100 * r['fraction_of_peak']:.1f}", f"{100 * r['fraction_of_bandwidth']:.1f}",
            f"{r['build_s']:.0f}",
        ])  # fmt: skip
    return out


def summary(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per model and batch: sepconv against the fastest peer that passed its check, by
    pipelined time and by single-request p50 (peer / sepconv: above 1, sepconv is faster)."""
    out = []
    keys = dict.fromkeys((r["model"], r["batch"]) for r in rows)
    for model, batch in keys:
        group = [r for r in rows if (r["model"], r["batch"]) == (model, batch)]
        ours = [r for r in group if r["kind"] == "sepconv" and r["check"]["passed"]]
        peers = [r for r in group if r["kind"] != "sepconv" and r["check"]["passed"]]
        if not ours or not peers:
            continue
        cells = [model, str(batch), f"{ours[0]['contender']} ({ours[0].get('picked', '')})"]
        for key in ("median_ms", "p50_ms"):
            best = min(peers, key=lambda r, key=key: r[key])
            cells += [f"{best['contender']}: {best[key]:.3f}", f"{ours[0][key]:.3f}"]
            cells.append(f"{best[key] / ours[0][key]:.2f}x")
        out.append(cells)
    return out


SUMMARY_HEADERS = [
    "model", "batch", "sepconv", "fastest peer, ms", "sepconv ms", "peer / sepconv",
    "fastest peer p50, ms", "sepconv p50 ms", "peer / sepconv (p50)",
]  # fmt: skip


def markdown(payload: dict[str, Any]) -> str:
    c = payload["ceilings"]
    bf16 = c.get("bf16_peak_gflops")
    text = markdown_environment(payload["environment"], payload["command"])
    text += (
        f"\n\nCeilings measured in this run on {c['device']}: fp32 matmul "
        f"{c['peak_gflops'] / 1e3:.1f} TFLOP/s, bf16 matmul "
        f"{'-' if bf16 is None else f'{bf16 / 1e3:.1f} TFLOP/s'}, copy {c['bandwidth_gbs']:.0f} "
        "GB/s. `% BW`: the network's minimum bytes (BatchNorm folded, activations fused; "
        "gpu_inference_report.py) over the median time, as a fraction of the copy bandwidth. "
        "Check: max relative error against the fp32 model (TF32 off), bound "
        f"{payload['tolerance']}; weights: {payload['weights']}\n\n"
    )
    trimmed = [row for row in payload["plan"] if row["note"]]
    text += "".join(
        f"- `{r['name']}`: {' and '.join(r['regimes'])} only ({r['note']})\n" for r in trimmed
    )
    for part in payload.get("parts", []):
        machine = part["environment"].get("gpu") or part["environment"]["cpu"]
        text += f"- part `{part['file']}`: {machine}, `{part['command']}`\n"
    text += "\n"
    if summary(payload["results"]):
        text += markdown_table(SUMMARY_HEADERS, summary(payload["results"])) + "\n\n"
    text += markdown_table(HEADERS, table_rows(payload["results"])) + "\n"
    if payload["skipped"]:
        text += "\nNot measured:\n\n" + "".join(f"- {s}\n" for s in payload["skipped"])
    return text


def merge(paths: list[Path]) -> dict[str, Any]:
    """The parts' JSON files as one: their rows, skips and byte counts in order, the first
    one's machine and ceilings, and each part's command, machine and ceilings under ``parts``."""
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    first = parts[0]
    keys = ("environment", "ceilings", "tolerance", "weights", "plan")
    merged: dict[str, Any] = {key: first[key] for key in keys}
    merged["results"] = [row for part in parts for row in part["results"]]
    merged["skipped"] = [s for part in parts for s in part["skipped"]]
    merged["traffic"] = {k: v for part in parts for k, v in part["traffic"].items()}
    merged["models"] = {k: v for part in parts for k, v in part["models"].items()}
    merged["parts"] = [
        {"file": p.name, **{k: part[k] for k in ("command", "environment", "ceilings")}}
        for p, part in zip(paths, parts, strict=True)
    ]
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description="Merge gpu_inference.py parts into one file.")
    parser.add_argument("parts", nargs="+", type=Path, help="the parts' JSON files")
    add_output_flags(parser)
    args = parser.parse_args()
    missing = [str(p) for p in args.parts if not p.is_file()]
    if missing:
        parser.error(f"argument parts: expected JSON files, these do not exist: {missing}")
    run = Run.start(__file__, args, name="gpu_inference")
    payload = {"command": run.command, **merge(sorted(args.parts))}
    run.write(payload, markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
