"""The CUDA candidates of :func:`sepconv.deploy.runtime.compile_for_inference`.

On a GPU a MobileNet at batch 1 is bound by kernel launches, not arithmetic: each of its ~150
small kernels costs a few microseconds of CPU-side launch work, longer than the kernel itself.
The candidates therefore attack two costs separately:

- ``"eager"``: the BatchNorm-folded model cast to fp32, bf16 or fp16, weights and input in
  channels-last (NHWC) memory, the layout cuDNN's depthwise and tensor-core kernels prefer, with
  ``cudnn.benchmark`` choosing each convolution's algorithm for the static shape.
- ``"compile"``: ``torch.compile(mode="max-autotune")``: inductor fuses the element-wise tails
  into the convolutions, benchmarks Triton/cuBLAS variants per shape and replays the whole
  forward as a CUDA graph. Compiled (and autotuned) at build time: minutes per model.
- ``"cudagraph"``: the eager model captured once into a ``torch.cuda.CUDAGraph`` for the static
  input shape (warm-up on a side stream, then capture into a static input and output buffer);
  a call copies the input into the static buffer and replays every kernel with one launch.

An ``"fp32"`` candidate computes in true float32: TF32 tensor-core math (PyTorch's default for
cuDNN convolutions) is switched off while it runs, so that it meets the same tolerance as on the
CPU; bf16 and fp16 candidates are the whole model cast to that type (no autocast), checked with
their own tolerance by the caller.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final, Literal

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import measure
from sepconv.deploy.compiled import (
    BackendMismatchError,
    InferenceModel,
    Runner,
    checked,
    fastest_reason,
)
from sepconv.deploy.fuse import fuse

__all__ = [
    "CUDA_BACKENDS",
    "CUDA_PRECISIONS",
    "CudaPrecision",
    "build_cuda_runner",
    "compile_for_cuda",
    "cuda_flags",
]

CudaPrecision = Literal["fp32", "bf16", "fp16"]
CUDA_BACKENDS: Final[tuple[str, ...]] = ("eager", "compile", "cudagraph")
CUDA_PRECISIONS: Final[tuple[str, ...]] = ("fp32", "bf16", "fp16")
DTYPES: Final[dict[str, torch.dtype]] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Eager warm-up calls before a CUDA graph is captured: cuDNN's algorithm search (benchmark
# mode) and the caching allocator must have settled, or the capture records their side effects.
_GRAPH_WARMUP = 3


@contextmanager
def cuda_flags(precision: str) -> Iterator[None]:
    """Run a block with cuDNN autotuning on and TF32 off for ``"fp32"`` (restored after).

    The flags are process-wide, so they are set around each call rather than once.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark = True
    if precision == "fp32":
        cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


def _prepared(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """A BatchNorm-folded copy of ``model`` on ``device`` in ``precision``, channels-last."""
    folded = fuse(model).eval()
    folded = folded.to(device=device, dtype=DTYPES[precision])
    return folded.to(memory_format=torch.channels_last)


def _eager(model: nn.Module, device: torch.device, precision: str) -> Runner:
    dtype = DTYPES[precision]

    def run(x: torch.Tensor) -> torch.Tensor:
        # inference_mode on every call, the first (compiling) one included: torch.compile
        # guards on it, and a call in another mode would compile (and autotune) again.
        with torch.inference_mode(), cuda_flags(precision):
            x = x.to(device, dtype).contiguous(memory_format=torch.channels_last)
            return model(x).to(torch.float32, copy=True)

    return run


def _compiled(
    model: nn.Module, example: torch.Tensor, device: torch.device, precision: str, mode: str
) -> Runner:
    compiled = torch.compile(model, mode=mode, dynamic=False)
    # Outputs of inductor's CUDA graphs are overwritten by the next call: the eager runner's
    # copy to float32 (copy=True) keeps each result.
    run = _eager(compiled, device, precision)  # type: ignore[arg-type]
    run(example)  # compile and autotune now, not on the first call
    return run


def _graphed(
    model: nn.Module, example: torch.Tensor, device: torch.device, precision: str
) -> Runner:
    static_in = example.to(device, DTYPES[precision]).contiguous(memory_format=torch.channels_last)
    # Warm up on a side stream, as capture requires: lazy initialisation and cuDNN's algorithm
    # search must not land inside the graph.
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), torch.no_grad(), cuda_flags(precision):
        for _ in range(_GRAPH_WARMUP):
            model(static_in)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), cuda_flags(precision), torch.cuda.graph(graph):
        static_out = model(static_in)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            static_in.copy_(x)  # casts and converts to channels-last on the way in
            graph.replay()
            # The graph rewrites static_out on every replay: hand out a copy.
            return static_out.to(torch.float32, copy=True)

    return run


def build_cuda_runner(
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    device: torch.device,
    precision: str,
    compile_mode: str = "max-autotune",
) -> Runner:
    """The runner of CUDA backend ``name`` in ``precision``, built (compiled, captured) now.

    Args:
        name: One of :data:`CUDA_BACKENDS`.
        model: The model; a BatchNorm-folded copy is made, ``model`` is not modified.
        example: An input of the compiled shape (any device, float), used to compile, capture
            and warm up.
        device: The CUDA device.
        precision: One of :data:`CUDA_PRECISIONS`.
        compile_mode: The ``torch.compile`` mode of the ``"compile"`` backend.

    Returns:
        A function from an input batch of the compiled shape to the float32 output on
        ``device``.

    Example:
        >>> cuda = torch.device("cuda")
        >>> run = build_cuda_runner("cudagraph", net, x, cuda, "fp16")  # doctest: +SKIP
        >>> run(x).dtype  # doctest: +SKIP
        torch.float32
    """
    prepared = _prepared(model, device, precision)
    if name == "eager":
        return _eager(prepared, device, precision)
    if name == "compile":
        return _compiled(prepared, example, device, precision, compile_mode)
    return _graphed(prepared, example, device, precision)


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
    candidate is built and checked (a mismatch raises). With ``auto``, the eager candidate is
    built in every precision, timed, and the other ``backends`` are built at the precision
    whose eager candidate was fastest; every built candidate is then timed in ``rounds``
    alternating blocks with CUDA events and the lowest median wins.
    """
    shape = tuple(example.shape)
    where = str(device)

    def build(name: str, precision: str) -> InferenceModel:
        runner = build_cuda_runner(name, model, example, device, precision, compile_mode)
        return checked(name, runner, precision, shape, example, reference, device=where)

    if not auto:
        return build(backends[0], precisions[0])
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
        attempt("eager", precision)
    if not built:
        raise BackendMismatchError(
            "Cannot compile for inference on CUDA: no eager candidate matched eager fp32: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    x = example.to(device)
    eager = _timed(built, x, device, rounds=1)
    fastest = min(eager, key=eager.__getitem__).split("/")[1]
    for name in backends:
        if name != "eager":
            attempt(name, fastest)
    if "eager" not in backends:
        for key in [k for k in built if k.startswith("eager/")]:
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
