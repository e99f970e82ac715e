"""Per-op cost formulas: what one call of a tensor function costs, in MACs.

One MAC is one multiply-add; FLOPs are always ``2 * MACs``. Convolutions and dense linear
algebra (``linear``, ``matmul`` and attention) are the *headline* kinds, counted as torchvision,
fvcore and the papers count them (bias additions excluded). Norms, activations, pooling and
elementwise ops are costed at one MAC-equivalent per output element (per window element for
windowed pooling) and reported separately, never added to the headline total.

Every formula reads only the shapes of the tensors an op actually received and returned, so it
holds for any module that reaches the op, including user-defined ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, get_args

import torch

Kind = Literal[
    "standard_conv",
    "depthwise_conv",
    "pointwise_conv",
    "grouped_conv",
    "linear",
    "norm",
    "activation",
    "pooling",
    "elementwise",
    "other",
]

KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
HEADLINE_KINDS: Final[frozenset[Kind]] = frozenset(
    {"standard_conv", "depthwise_conv", "pointwise_conv", "grouped_conv", "linear"}
)

CONVENTIONS: Final[tuple[str, ...]] = (
    "1 MAC = one multiply-add; FLOPs = 2 x MACs.",
    "Headline MACs = convolutions (standard, depthwise, pointwise, grouped) + linear/matmul, "
    "bias excluded, as torchvision and the papers count them.",
    "Listed separately, not in the headline: norm, activation, pooling and elementwise ops, "
    "at one MAC-equivalent per output element (per window element for windowed pooling).",
    "Bytes: weights (parameters and buffers read) + activations read + activations written, "
    "each tensor touched once (no cache reuse, no fusion); arithmetic intensity = FLOPs / bytes.",
    "Ops the analyzer does not know are listed as unknown with their count and costed at 0.",
)

Formula = Callable[[Sequence[Any], Mapping[str, Any], Sequence[torch.Tensor]], int]


def conv_kind(in_channels: int, groups: int, kernel_size: Sequence[int]) -> Kind:
    """Classify a convolution by its grouping and kernel.

    Args:
        in_channels: channels of the input, C_in.
        groups: number of groups, g.
        kernel_size: spatial kernel extent, one entry per spatial dimension.

    Returns:
        ``"pointwise_conv"`` for g = 1 and a 1x1 kernel, ``"depthwise_conv"`` for g = C_in > 1,
        ``"grouped_conv"`` for 1 < g < C_in, else ``"standard_conv"``.

    Example:
        >>> conv_kind(32, 32, (3, 3))
        'depthwise_conv'
    """
    if groups == 1 and all(k == 1 for k in kernel_size):
        return "pointwise_conv"
    if groups == in_channels and in_channels > 1:
        return "depthwise_conv"
    if 1 < groups < in_channels:
        return "grouped_conv"
    return "standard_conv"


def conv_macs(
    out_channels: int, in_channels: int, groups: int, kernel_size: Sequence[int], out_size: int
) -> int:
    """MACs of one convolution: ``out_size * C_out * (C_in / g) * prod(K)``.

    Args:
        out_channels: C_out.
        in_channels: C_in.
        groups: g; each output channel sees ``C_in / g`` input channels.
        kernel_size: kernel extent per spatial dimension.
        out_size: number of output positions, ``N * H_out * W_out`` for a 2-D convolution.

    Example:
        >>> conv_macs(128, 64, 1, (3, 3), 56 * 56)
        231211008
    """
    return out_size * out_channels * (in_channels // groups) * math.prod(kernel_size)


def _tensor_arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _conv(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    # weight is (C_out, C_in / g, *K): each output element costs prod(weight.shape[1:]) MACs.
    weight = _tensor_arg(args, kwargs, 1, "weight")
    return out[0].numel() * math.prod(weight.shape[1:])


def _conv_transpose(
    args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]
) -> int:
    # weight is (C_in, C_out / g, *K): every input element is scattered into prod(...) outputs.
    inp = _tensor_arg(args, kwargs, 0, "input")
    weight = _tensor_arg(args, kwargs, 1, "weight")
    return inp.numel() * math.prod(weight.shape[1:])


def _linear(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    weight = _tensor_arg(args, kwargs, 1, "weight")
    return out[0].numel() * weight.shape[-1]


def _matmul(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    # Every output element is a dot product over the last dimension of the left operand.
    return out[0].numel() * _tensor_arg(args, kwargs, 0, "input").shape[-1]


def _addmm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    # addmm(bias, a, b) / baddbmm(bias, a, b): the bias add is excluded, as for linear.
    return out[0].numel() * _tensor_arg(args, kwargs, 1, "mat1").shape[-1]


def _attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    # softmax(Q K^T) V: (L x E) @ (E x S), then (L x S) @ (S x E_v), per batch and head.
    query = _tensor_arg(args, kwargs, 0, "query")
    key = _tensor_arg(args, kwargs, 1, "key")
    value = _tensor_arg(args, kwargs, 2, "value")
    rows = query.numel() // query.shape[-1]
    return rows * key.shape[-2] * (query.shape[-1] + value.shape[-1])


def _per_output(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() for t in out)


def _per_input(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    inp = _tensor_arg(args, kwargs, 0, "input")
    return int(inp.numel()) if isinstance(inp, torch.Tensor) else _per_output(args, kwargs, out)


def _windowed_pool(
    args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]
) -> int:
    kernel = _tensor_arg(args, kwargs, 1, "kernel_size")
    spatial = out[0].dim() - 2
    area = kernel**spatial if isinstance(kernel, int) else math.prod(kernel)
    return out[0].numel() * area


def _free(args: Sequence[Any], kwargs: Mapping[str, Any], out: Sequence[torch.Tensor]) -> int:
    return 0


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _table(kind: Kind, formula: Formula, names: str) -> dict[str, tuple[Kind, Formula]]:
    return {name: (kind, formula) for name in names.split()}


# Op name (``func.__name__`` with dunder and in-place spellings folded, see ``op_name``) ->
# (kind, MAC formula). Conv kinds are refined per call by ``conv_kind``.
KNOWN_OPS: Final[dict[str, tuple[Kind, Formula]]] = {
    **_table("standard_conv", _conv, "conv1d conv2d conv3d convolution"),
    **_table(
        "standard_conv", _conv_transpose, "conv_transpose1d conv_transpose2d conv_transpose3d"
    ),
    **_table("linear", _linear, "linear"),
    **_table("linear", _matmul, "matmul mm bmm"),
    **_table("linear", _addmm, "addmm baddbmm"),
    **_table("linear", _attention, "scaled_dot_product_attention"),
    **_table(
        "norm",
        _per_output,
        "batch_norm layer_norm group_norm instance_norm rms_norm local_response_norm",
    ),
    **_table(
        "activation",
        _per_output,
        "relu relu6 hardtanh leaky_relu elu selu celu gelu silu mish sigmoid hardsigmoid "
        "hardswish tanh softplus softmax log_softmax prelu glu logsigmoid tanhshrink softsign",
    ),
    **_table(
        "pooling",
        _windowed_pool,
        "avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d lp_pool1d lp_pool2d",
    ),
    **_table(
        "pooling",
        _per_input,
        "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d "
        "adaptive_max_pool2d adaptive_max_pool3d mean sum amax amin logsumexp var std",
    ),
    **_table(
        "elementwise",
        _per_output,
        "add sub rsub mul div true_divide neg abs pow sqrt rsqrt exp log reciprocal clamp clip "
        "clamp_min clamp_max where addcmul addcdiv lerp maximum minimum square",
    ),
    **_table(
        "other",
        _free,
        "cat concat concatenate stack pad interpolate upsample pixel_shuffle pixel_unshuffle "
        "channel_shuffle roll clone copy",
    ),
}

# Ops that only re-describe memory, read metadata, or are identity at inference (dropout in
# eval mode): executing them moves no data worth counting, so they get no row.
IGNORED_OPS: Final[frozenset[str]] = _words(
    "view view_as reshape reshape_as flatten unflatten squeeze unsqueeze permute transpose t "
    "contiguous expand expand_as broadcast_to size dim numel shape get getitem len chunk "
    "split unbind narrow select movedim flip detach to type float half double bfloat16 "
    "is_floating_point is_complex is_contiguous bool item assert format repr "
    "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout "
    "requires_grad element_size data_ptr stride storage_offset device dtype ndim ndimension "
    "new_zeros new_ones new_empty new_full zeros ones empty full zeros_like ones_like "
    "empty_like full_like arange randn rand"
)

# Ops whose output has exactly the shape and dtype of their first argument. On the meta device
# their output is made with ``empty_like`` instead of dispatching: PyTorch's meta batch_norm
# runs a Python decomposition that would be half of the time of analyzing an EfficientNet.
SHAPE_PRESERVING_OPS: Final[frozenset[str]] = _words(
    "batch_norm layer_norm group_norm instance_norm relu relu6 hardtanh leaky_relu elu selu "
    "celu gelu silu mish sigmoid hardsigmoid hardswish tanh softplus"
)

_DUNDER_ALIASES: Final[dict[str, str]] = {
    "radd": "add",
    "iadd": "add",
    "rsub": "rsub",
    "isub": "sub",
    "rmul": "mul",
    "imul": "mul",
    "truediv": "div",
    "rtruediv": "div",
    "itruediv": "div",
    "rmatmul": "matmul",
    "imatmul": "matmul",
    "ipow": "pow",
    "rpow": "pow",
}


def op_name(func: Callable[..., Any]) -> str:
    """Canonical op name of a torch function: ``Tensor.__iadd__`` and ``Tensor.add_`` -> ``add``.

    Example:
        >>> op_name(torch.Tensor.relu_)
        'relu'
    """
    name = getattr(func, "__name__", type(func).__name__)
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        core = name[2:-2]
        return _DUNDER_ALIASES.get(core, core)
    # A single trailing underscore marks the in-place variant; a leading one a private alias.
    return name.strip("_")


def op_cost(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], outputs: Sequence[torch.Tensor]
) -> tuple[Kind, int] | None:
    """Kind and MACs of one call of op ``name``; ``None`` when the op has no formula.

    Args:
        name: canonical op name, see :func:`op_name`.
        args, kwargs: the arguments the op was called with.
        outputs: the tensors it returned, flattened.

    Example:
        >>> x, w = torch.zeros(1, 8, 4, 4), torch.zeros(8, 1, 3, 3)
        >>> op_cost("conv2d", (x, w), {"padding": 1, "groups": 8}, [torch.zeros(1, 8, 4, 4)])
        ('depthwise_conv', 1152)
    """
    entry = KNOWN_OPS.get(name)
    if entry is None or not outputs:
        return None
    kind, formula = entry
    macs = formula(args, kwargs, outputs)
    if formula is _conv:
        inp = _tensor_arg(args, kwargs, 0, "input")
        weight = _tensor_arg(args, kwargs, 1, "weight")
        kernel = tuple(weight.shape[2:])
        # The channel dimension sits just before the spatial ones (batched or not).
        in_channels = inp.shape[-len(kernel) - 1]
        kind = conv_kind(in_channels, in_channels // weight.shape[1], kernel)
    elif formula is _conv_transpose:
        weight = _tensor_arg(args, kwargs, 1, "weight")
        kernel = tuple(weight.shape[2:])
        out_channels = outputs[0].shape[-len(kernel) - 1]
        kind = conv_kind(weight.shape[0], out_channels // weight.shape[1], kernel)
    return kind, macs
