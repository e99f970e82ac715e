"""The CUDA path of :func:`sepconv.deploy.runtime.compile_for_inference`: build the CUDA
backends of :data:`sepconv.deploy.registry.BACKEND_TABLE` (their code:
:mod:`sepconv.deploy.cuda_backends`) and keep the fastest that matches eager fp32.

With ``backend="auto"`` the precision is chosen first, on the backend that builds fastest
(:data:`PRECISION_SCOUT`, built in every precision and timed); the other backends are then built
at the precision that won, which keeps slow builds (torch.compile's autotuning) to one precision.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import measure
from sepconv.deploy.compiled import (
    BackendMismatchError,
    InferenceModel,
    Target,
    checked,
    fastest_reason,
)
from sepconv.deploy.cuda_backends import CUDA_PRECISIONS
from sepconv.deploy.registry import backend_names, find, rows

__all__ = [
    "CUDA_BACKENDS",
    "CUDA_PRECISIONS",
    "PRECISION_SCOUT",
    "compile_for_cuda",
]

#: The names of the CUDA rows of the backend table, in its order.
CUDA_BACKENDS: Final[tuple[str, ...]] = backend_names("cuda")
#: The backend that ``auto`` builds in every precision to choose the precision of the others.
PRECISION_SCOUT: Final = "eager"


def compile_for_cuda(
    model: nn.Module,
    example: torch.Tensor,
    reference: torch.Tensor,
    device: torch.device,
    *,
    backends: Sequence[str],
    precisions: Sequence[str],
    auto: bool,
    compile_mode: str,
    rounds: int = 3,
) -> InferenceModel:
    """The CUDA path of :func:`sepconv.deploy.runtime.compile_for_inference` (see there).

    With ``auto`` false, ``backends`` holds one name and ``precisions`` one precision: that
    candidate is built and checked (a mismatch raises). With ``auto``, the
    :data:`PRECISION_SCOUT` candidate is built in every precision, timed, and the other
    ``backends`` are built at the precision whose scout candidate was fastest; every built
    candidate is then timed in ``rounds`` alternating blocks with CUDA events and the lowest
    median wins. ``backends`` are names of CUDA rows of the backend table; one that runs from
    an ONNX file gets the file :func:`sepconv.export_onnx` writes, exported once.
    """
    n, c, h, w = (int(v) for v in example.shape)
    shape = (n, c, h, w)
    where = str(device)
    cuda_rows = rows("cuda")
    table = {
        name: find(name, cuda_rows, argument="backends") for name in (PRECISION_SCOUT, *backends)
    }
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="sepconv-cuda-") as tmp:
        onnx_file = Path(tmp) / "model.onnx"  # exported only for a backend that runs from ONNX

        def build(name: str, precision: str) -> InferenceModel:
            row = table[name]
            target = Target(shape, precision, threads, device, compile_mode)
            runner, used = row.build(model, example, target, onnx_file)
            return checked(name, runner, used, shape, example, reference, device=where)

        if not auto:
            return build(backends[0], precisions[0])
        return _choose(build, example, device, backends, precisions, rounds)


def _choose(
    build: Callable[[str, str], InferenceModel],
    example: torch.Tensor,
    device: torch.device,
    backends: Sequence[str],
    precisions: Sequence[str],
    rounds: int,
) -> InferenceModel:
    """``auto``: the precision on :data:`PRECISION_SCOUT`, then every backend at it, timed."""
    built: dict[str, InferenceModel] = {}
    skipped: dict[str, str] = {}

    def attempt(name: str, precision: str) -> None:
        key = f"{name}/{precision}"
        try:
            built[key] = build(name, precision)
        except BackendMismatchError as err:
            skipped[key] = str(err)
        except Exception as err:  # a failed compile or capture: reported, the others still run
            first = (str(err).strip().splitlines() or [""])[0]
            skipped[key] = f"{type(err).__name__}: {first}"

    for precision in precisions:
        attempt(PRECISION_SCOUT, precision)
    if not built:
        raise BackendMismatchError(
            f"Cannot compile for inference on CUDA: no {PRECISION_SCOUT} candidate matched eager "
            "fp32: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    x = example.to(device)
    eager = _timed(built, x, device, rounds=1)
    fastest = min(eager, key=eager.__getitem__).split("/")[1]
    for name in backends:
        if name != PRECISION_SCOUT:
            attempt(name, fastest)
    if PRECISION_SCOUT not in backends:
        for key in [k for k in built if k.startswith(f"{PRECISION_SCOUT}/")]:
            del built[key]
    timings = _timed(built, x, device, rounds=rounds)
    best = min(timings, key=timings.__getitem__)
    why = fastest_reason(best, timings, skipped)
    return dataclasses.replace(built[best], timings=timings, skipped=skipped, why=why)


def _timed(
    built: dict[str, InferenceModel], x: torch.Tensor, device: torch.device, *, rounds: int
) -> dict[str, float]:
    """Median milliseconds per candidate, timed in alternating blocks so that clock and
    thermal drift hit all alike."""
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, candidate in built.items():
            timing = measure(
                functools.partial(candidate.run, x), warmup=3, repeats=5, device=device
            )
            samples[name].extend(timing.samples_s)
    return {name: float(np.median(s)) * 1e3 for name, s in samples.items()}
