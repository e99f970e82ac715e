"""Fused depthwise-separable kernels in Triton, for inference on a GPU.

A MobileNet spends its GPU time moving activations, not multiplying: every depthwise and
pointwise conv is a separate vendor call whose output goes to memory and comes back. These
kernels keep more on chip (channels_last, bf16 or fp16 with fp32 accumulation; fp32 to check
them):

- :func:`~sepconv.kernels.pointwise.pointwise_conv`: a 1x1 conv as a GEMM with the bias, the
  activation (ReLU, ReLU6, SiLU, hard-swish, sigmoid), the residual add and a squeeze-excite
  gate in its loads and epilogue;
- :func:`~sepconv.kernels.depthwise.depthwise_conv`: a depthwise ``K x K`` conv, any odd ``K``
  and stride, bias and activation fused;
- :func:`~sepconv.kernels.expand_depthwise.expand_depthwise`: an inverted residual's expansion
  1x1 and depthwise conv in one kernel, the expanded tensor never in global memory;
- :func:`~sepconv.kernels.blocks.to_triton`: a BatchNorm-folded model with each of sepconv's
  blocks on these kernels.

Triton runs them on a CUDA GPU; with ``TRITON_INTERPRET=1`` set before this package is imported,
its interpreter runs them on CPU tensors (slowly: that is how they are tested without a GPU).
The package needs ``triton``, which PyTorch installs on Linux; nothing else in sepconv imports
it.
"""

from sepconv.kernels.activations import ACTIVATIONS, activation_code
from sepconv.kernels.blocks import ConvUnit, TritonInvertedResidual, TritonSeparable, to_triton
from sepconv.kernels.depthwise import depthwise_conv
from sepconv.kernels.expand_depthwise import expand_depthwise
from sepconv.kernels.launch import best_configs, interpreting
from sepconv.kernels.pointwise import pointwise_conv

__all__ = [
    "ACTIVATIONS",
    "ConvUnit",
    "TritonInvertedResidual",
    "TritonSeparable",
    "activation_code",
    "best_configs",
    "depthwise_conv",
    "expand_depthwise",
    "interpreting",
    "pointwise_conv",
    "to_triton",
]
