"""How the kernels are launched: tile choice (autotuned on a GPU, fixed under the interpreter),
grids, and the precision of ``tl.dot``.

On a GPU each kernel is wrapped once in ``triton.autotune`` over its module's ``CONFIGS``, keyed
by the problem's sizes: the first call at a new size times every tile and keeps the fastest,
later calls reuse it, and :func:`best_configs` reports what was chosen (the device benchmark
records it). Under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, used by the tests) tiles
are fixed and small, since every program runs in Python there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import triton

#: A fixed tile: the kernel's block-size meta-parameters (``{"BM": 64, "BN": 64, "BK": 32}``).
Tile = Mapping[str, int]

_TUNED: dict[int, Any] = {}


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_device(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` can run here: on a CUDA device, or on the CPU under the
    interpreter."""
    if x.device.type == "cuda" or (x.device.type == "cpu" and interpreting()):
        return
    raise ValueError(
        f"Invalid value for argument `x`: expected a CUDA tensor (or a CPU tensor with "
        f"TRITON_INTERPRET=1 set before sepconv.kernels is imported), received one on "
        f"{x.device}"
    )


def dot_in_fp32(dtype: torch.dtype) -> bool:
    """Whether ``tl.dot`` must multiply in full fp32 (``input_precision="ieee"``): for fp32
    inputs, which are there to check the kernels and must not be rounded to TF32; and for bf16
    under the interpreter, whose NumPy has no bf16 matrix product (the loads, the stores and
    the fp32 accumulation are those of the GPU kernel all the same)."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and interpreting())


def tuned(
    kernel: Any,
    configs: Sequence[triton.Config],
    key: Sequence[str],
    tile: Tile | None,
    device: torch.device,
) -> tuple[Any, dict[str, int]]:
    """The kernel to launch and the meta-parameters to pass it.

    A given ``tile`` is used as it is. Under the interpreter the smallest of ``configs`` is
    used. On a GPU the kernel is autotuned over ``configs`` (keyed by the arguments ``key``),
    and no meta-parameters are passed: the autotuner supplies them.
    """
    if tile is not None:
        return kernel, dict(tile)
    if device.type != "cuda":
        smallest = min(configs, key=lambda c: _volume(c.kwargs))
        return kernel, dict(smallest.kwargs)
    if id(kernel) not in _TUNED:
        _TUNED[id(kernel)] = triton.autotune(configs=list(configs), key=list(key))(kernel)
    return _TUNED[id(kernel)], {}


def _volume(meta: Mapping[str, Any]) -> int:
    volume = 1
    for value in meta.values():
        volume *= int(value)
    return volume


def grid_2d(
    rows: int, cols: int, row_block: str, col_block: str, meta: Mapping[str, int]
) -> Callable[[Mapping[str, int]], tuple[int, int]]:
    """The launch grid ``(cdiv(rows, META[row_block]), cdiv(cols, META[col_block]))``."""

    def grid(tuned_meta: Mapping[str, int]) -> tuple[int, int]:
        chosen = {**tuned_meta, **meta}
        return triton.cdiv(rows, chosen[row_block]), triton.cdiv(cols, chosen[col_block])

    return grid


def best_configs() -> dict[str, dict[str, str]]:
    """Per autotuned kernel, the tile chosen for each problem size seen so far (for the record
    a benchmark keeps of what ran)."""
    chosen: dict[str, dict[str, str]] = {}
    for autotuner in _TUNED.values():
        name = getattr(getattr(autotuner, "fn", None), "__name__", "kernel")
        cache = getattr(autotuner, "cache", {})
        chosen[name] = {str(k): str(v) for k, v in cache.items()}
    return chosen
