"""The tables that result files and the terminal show (files are written by
:mod:`sepconv.utils.files`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a GitHub Markdown table; numbers are written as given (format them first).

    Example:
        >>> print(markdown_table(["a", "b"], [[1, "x"]]))
        | a | b |
        |---|---|
        | 1 | x |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def terminal_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """The rows of :func:`markdown_table` as a rich table: first column left, the rest right."""
    table = Table(title=title)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def _features(env: Mapping[str, Any]) -> str:
    """The CPU's instruction sets as a result header shows them (records from before
    ``cpu_features`` was kept show PyTorch's capability and native bf16 only)."""
    text = f"{env['cpu_capability']}, native bf16: {env['bf16_native']}"
    features = env.get("cpu_features")
    if features is not None:
        text += f"; has: {', '.join(features) or 'none of AVX2, AVX-512, VNNI, bf16, AMX'}"
    return text


def markdown_environment(env: Mapping[str, Any], command: str) -> str:
    """The header every committed result starts with: command, machine, versions, threads."""
    return (
        f"Command: `{command}`  \n"
        f"Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs "
        f"({_features(env)}), {env['platform']}  \n"
        f"PyTorch {env['torch']}, Python {env['python']}, {env['threads']} intra-op thread(s)"
        + (f"; allocator: {env['allocator']}" if env.get("allocator") else "")
        + (
            f"  \nGPU: {env['gpu']} ({env['gpu_memory_gib']} GiB, compute capability "
            f"{env['gpu_capability']}), driver {env['gpu_driver']}, CUDA {env['cuda_runtime']}, "
            f"cuDNN {env['cudnn']}"
            if env.get("gpu")
            else ""
        )
    )
