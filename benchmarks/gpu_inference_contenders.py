"""Who ``gpu_inference.py`` times, and how each is built: the plan as a table of rows.

Every contender gets the same treatment: ``cudnn.benchmark`` on (set once for the process),
channels_last weights and inputs, ``torch.compile(..., dynamic=False)`` after
``torch._dynamo.reset()``, and a timed call that takes the user's fp32 NCHW batch on the device,
prepares it (cast, layout), runs the model and returns fp32 logits in a fresh tensor (a CUDA
graph's output buffer is overwritten by its next replay). Precisions:

- ``bf16``: the whole model cast to bfloat16 (weights and activations), as sepconv's CUDA
  backends compute;
- ``autocast-bf16``: fp32 weights under ``torch.autocast(dtype=torch.bfloat16)``, as timm's
  ``benchmark.py --amp`` and ``train.py`` run (here with bf16 rather than fp16).

The peers are timm's models (``timm eager ...``), captured in a plain CUDA graph
(``timm graph ...``: warm-up on a side stream, capture, replay; what a CUDA graph alone gives,
without sepconv's BatchNorm folding or choice), and ``torch.compile`` in each mode that a GPU
user would pick, named by it. sepconv's row is what
``compile_for_inference(model, device="cuda", precision="bf16")`` returns: BatchNorm folded,
its eager, ``torch.compile`` and CUDA-graph candidates built, checked and timed, the fastest
kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sepconv.deploy import compile_for_inference

LATENCY, THROUGHPUT = "batch 1", "batch > 1"
BOTH = (LATENCY, THROUGHPUT)


@dataclass(frozen=True)
class Contender:
    """One row of the plan.

    Attributes:
        name: What the results call it; spells the compile mode, ``graph`` for a CUDA graph.
        kind: ``eager``, ``graph``, ``compile`` or ``sepconv``.
        precision: ``bf16`` (model cast) or ``autocast-bf16`` (fp32 weights, autocast).
        mode: The ``torch.compile`` mode of a ``compile`` row (sepconv's: its compile candidate).
        regimes: Where it runs: ``batch 1`` and/or ``batch > 1``.
        estimate_s: A cold build plus its measurement on an H100 or H200, in seconds, for
            ``--budget-s``: a row is started only if this fits the time left. Written before
            any such run (scaled from the first H200 run's default-mode builds, 10-20 s); once
            a row of the same kind and mode has run, its time is used instead.
        note: Why it runs only where it runs.
    """

    name: str
    kind: str
    precision: str
    mode: str | None = None
    regimes: tuple[str, ...] = BOTH
    estimate_s: float = 15.0
    note: str = ""

    @property
    def needs_cuda(self) -> bool:
        return self.kind == "graph" or (self.kind == "compile" and self.mode != "default")


def _compile(mode: str, precision: str, **kwargs: Any) -> Contender:
    return Contender(f"timm compile {mode} {precision}", "compile", precision, mode, **kwargs)


# In priority order: with --budget-s a row that no longer fits is recorded as not measured, so
# the rows that matter most come first. Cold max-autotune builds take minutes; later ones reuse
# the autotuning results of the same convolutions (inductor's cache within one machine).
PLAN: tuple[Contender, ...] = (
    Contender("timm eager bf16", "eager", "bf16"),
    Contender("timm graph bf16", "graph", "bf16"),
    Contender(
        "sepconv auto bf16 (max-autotune)", "sepconv", "bf16", "max-autotune", estimate_s=180
    ),
    _compile("max-autotune", "bf16", estimate_s=120),
    Contender("timm eager autocast-bf16", "eager", "autocast-bf16"),
    Contender("timm graph autocast-bf16", "graph", "autocast-bf16"),
    _compile("reduce-overhead", "bf16", estimate_s=45),
    _compile("default", "bf16", estimate_s=45),
    _compile(
        "max-autotune-no-cudagraphs", "bf16", regimes=(THROUGHPUT,), estimate_s=60,
        note="at batch 1 it is max-autotune's kernels launched one by one: launch-bound",
    ),
    _compile("max-autotune", "autocast-bf16", estimate_s=90),
    _compile(
        "reduce-overhead", "autocast-bf16", regimes=(LATENCY,), estimate_s=45,
        note="the autocast peer for single requests (CUDA graphs)",
    ),
    _compile(
        "default", "autocast-bf16", regimes=(THROUGHPUT,), estimate_s=45,
        note="as timm's benchmark.py --torchcompile --amp runs at serving batch (its published "
        "tables: fp16 AMP, NCHW, batch 1024)",
    ),
)  # fmt: skip
#: The row timed first and, for drift, once more at the end of each model and batch.
ANCHOR = PLAN[0]


def plan_for(batch: int) -> list[Contender]:
    """The rows that run at ``batch``, in priority order."""
    regime = LATENCY if batch == 1 else THROUGHPUT
    return [c for c in PLAN if regime in c.regimes]


Call = Callable[[torch.Tensor], torch.Tensor]


def build(
    contender: Contender,
    ours: nn.Module,
    theirs: nn.Module,
    x: torch.Tensor,
    device: torch.device,
) -> tuple[Call, dict[str, Any]]:
    """``contender``'s timed call (fp32 NCHW batch on ``device`` -> fp32 logits) and the facts
    its build reports; ``ours``/``theirs`` are the calibrated fp32 CPU models, ``x`` the input
    (CPU) every candidate is checked on."""
    torch._dynamo.reset()
    if contender.kind == "sepconv":
        return _sepconv(contender, ours, x, device)
    autocast = contender.precision == "autocast-bf16"
    dtype = torch.float32 if autocast else torch.bfloat16
    net = copy.deepcopy(theirs).to(device=device, dtype=dtype, memory_format=torch.channels_last)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        # no cache of cast weights: inside a CUDA graph it would outlive the capture
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=autocast, cache_enabled=False
        ):
            return net(batch)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return batch.to(dtype=dtype, memory_format=torch.channels_last)

    if contender.kind == "graph":
        return _graphed(forward, prepare(x.to(device)), device), {}
    if contender.kind == "compile":
        forward = torch.compile(forward, mode=contender.mode, dynamic=False)

    def call(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return forward(prepare(batch)).to(torch.float32, copy=True)

    return call, {}


def _graphed(forward: Call, static_in: torch.Tensor, device: torch.device) -> tuple[Call, dict]:
    """``forward`` captured once into a ``torch.cuda.CUDAGraph`` for ``static_in``'s shape."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    # Warm-up on a side stream, as capture requires: cuDNN's algorithm search, lazy
    # initialisation and the allocator settle outside the graph.
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            forward(static_in)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = forward(static_in)

    def call(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            static_in.copy_(batch)  # cast and layout conversion on the way in
            graph.replay()
            return static_out.to(torch.float32, copy=True)

    return call, {}


def _sepconv(
    contender: Contender, ours: nn.Module, x: torch.Tensor, device: torch.device
) -> tuple[Call, dict[str, Any]]:
    cuda = device.type == "cuda"
    fast = compile_for_inference(
        ours,
        input_size=tuple(x.shape),
        device=device,
        precision=contender.precision,  # type: ignore[arg-type]
        candidates=("eager", "compile", "cudagraph") if cuda else ("eager",),
        example=x,
        compile_mode=contender.mode or "max-autotune",
    )
    facts = {
        # the key of fast.timings: "backend/precision" on CUDA, the backend on a CPU
        "picked": f"{fast.backend}/{fast.precision}" if cuda else fast.backend,
        "why": fast.why,
        "timings_ms": dict(fast.timings),
        "skipped_candidates": dict(fast.skipped),
        "library_rel_error": fast.max_rel_error,
    }
    return fast, facts
