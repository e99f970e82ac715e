"""The CUDA ``"fused"`` backend: sepconv's blocks on the fused Triton kernels of
:mod:`sepconv.kernels`, the whole forward replayed from one CUDA graph.

The model is BatchNorm-folded, cast to the target precision and converted block by block
(:func:`sepconv.kernels.to_triton`): each inverted residual's expansion and depthwise conv in one
kernel, the projection with its bias and residual add in another, squeeze-excite gates applied
inside the projection's loads; blocks the kernels do not compute keep PyTorch. The kernels are
autotuned on the warm-up calls, then the forward is captured in a CUDA graph (at batch 1 a
Python launch of each kernel would cost more than the kernel). Its candidate is kept only where
it is measured faster and agrees with fp32, like every candidate of
:func:`~sepconv.deploy.runtime.compile_for_inference`.
"""

from __future__ import annotations

import torch
from torch import nn

from sepconv.deploy.compiled import Runner, Target
from sepconv.deploy.cuda_backends import DTYPES, capture_graph
from sepconv.deploy.fuse import fuse

__all__ = ["build_fused"]


def build_fused(model: nn.Module, example: torch.Tensor, target: Target) -> tuple[Runner, str]:
    """Build the ``"fused"`` backend of ``model`` for ``target``.

    Raises:
        ValueError: when no block of ``model`` runs on the fused kernels (the vendor path is
            then all there is, and the candidate race reports this one as skipped).
    """
    from sepconv.kernels import to_triton  # imports triton: only when this backend is built

    folded = fuse(model).eval().to(target.device)
    fast, converted = to_triton(folded, dtype=DTYPES[target.precision])
    if not converted:
        raise ValueError(
            f"no block of {type(model).__name__} runs on the fused kernels (sepconv's "
            "inverted residual, separable and 1x1/depthwise conv blocks do)"
        )
    return capture_graph(fast, example, target.device, target.precision), target.precision
