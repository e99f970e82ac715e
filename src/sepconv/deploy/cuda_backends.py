"""The CUDA backends of :func:`sepconv.deploy.runtime.compile_for_inference`: how each is built
and run. Their rows are in :data:`sepconv.deploy.registry.BACKEND_TABLE`; the choice among them
is :func:`sepconv.deploy.cuda.compile_for_cuda`.

On a GPU a MobileNet at batch 1 is bound by kernel launches, not arithmetic: each of its ~150
small kernels costs a few microseconds of CPU-side launch work, longer than the kernel itself.
The candidates therefore attack two costs separately:

- ``"eager"``: the BatchNorm-folded model cast to fp32, bf16 or fp16, weights and input in
  channels-last (NHWC) memory, the layout cuDNN's depthwise and tensor-core kernels prefer, with
  ``cudnn.benchmark`` choosing each convolution's algorithm for the static shape.
- ``"compile"``: ``torch.compile(mode="max-autotune")``: inductor fuses the element-wise tails
  into the convolutions, benchmarks Triton/cuBLAS variants per shape and replays the whole
  forward as a CUDA graph. Compiled (and autotuned) at build time, which takes far longer
  than the other builds.
- ``"cudagraph"``: the eager model captured once into a ``torch.cuda.CUDAGraph`` for the static
  input shape (warm-up on a side stream, then capture into a static input and output buffer);
  a call copies the input into the static buffer and replays every kernel with one launch.

An ``"fp32"`` candidate computes in true float32: TF32 tensor-core math (PyTorch's default for
cuDNN convolutions) is switched off while it runs, so that it meets the same tolerance as on the
CPU; bf16 and fp16 candidates are the whole model cast to that type (no autocast), checked with
their own tolerance by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import torch
from torch import nn

from sepconv.deploy.compiled import Runner, Target
from sepconv.deploy.fuse import fuse

__all__ = [
    "CUDA_PRECISIONS",
    "build_compiled",
    "build_eager",
    "build_graphed",
    "capture_graph",
    "cuda_flags",
]

DTYPES: Final[dict[str, torch.dtype]] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: What every CUDA backend computes in: the whole model cast to that type.
CUDA_PRECISIONS: Final[tuple[str, ...]] = tuple(DTYPES)
# Eager warm-up calls before a CUDA graph is captured: cuDNN's algorithm search (benchmark
# mode) and the caching allocator must have settled, or the capture records their side effects.
_GRAPH_WARMUP = 3


def build_eager(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """The CUDA ``"eager"`` backend: the BatchNorm-folded model cast to ``target.precision``,
    channels-last, cuDNN autotuned for the static shape."""
    prepared = _prepared(model, target.device, target.precision)
    return _eager(prepared, target.device, target.precision), target.precision


def build_compiled(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """The CUDA ``"compile"`` backend: ``torch.compile(mode=target.compile_mode)`` of the eager
    backend's model, compiled (and autotuned) now on ``example``."""
    prepared = _prepared(model, target.device, target.precision)
    run = _compiled(prepared, example, target.device, target.precision, target.compile_mode)
    return run, target.precision


def build_graphed(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """The ``"cudagraph"`` backend: the eager backend's model captured once into a CUDA graph
    for the static shape; a call copies the input in and replays it.

    Example:
        >>> target = Target((1, 3, 224, 224), "fp16", 1, torch.device("cuda"))
        >>> run, precision = build_graphed(net, x, target)  # doctest: +SKIP
        >>> run(x).dtype  # doctest: +SKIP
        torch.float32
    """
    prepared = _prepared(model, target.device, target.precision)
    return capture_graph(prepared, example, target.device, target.precision), target.precision


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


def capture_graph(
    model: nn.Module, example: torch.Tensor, device: torch.device, precision: str
) -> Runner:
    """A runner that replays ``model`` (on ``device``, in ``precision``) on ``example``'s shape
    from one CUDA graph: a call copies its input into the graph's static input (cast and made
    channels-last on the way) and returns a float32 copy of the static output."""
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
