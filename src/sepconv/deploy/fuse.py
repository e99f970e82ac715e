"""Batch-norm folding: an inference copy of a model with every BatchNorm2d merged into its conv.

In eval mode a BatchNorm is the per-channel affine map ``y = gamma * (x - mu) / sqrt(var + eps)
+ beta``; right after a convolution it can be absorbed into the conv's weight and bias (Jacob et
al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", section 3.2), which removes one pass over every activation of the layer.
"""

from __future__ import annotations

import copy
import sys
from typing import cast

import torch
from torch import fx, nn

from sepconv.utils.validation import check_input_channels, invalid_type

__all__ = ["fuse"]

# (conv name, batch-norm name), both as ``named_modules`` qualified names.
Pair = tuple[str, str]


class _ConvBnTracer(fx.Tracer):
    """Symbolic tracer that keeps every Conv2d and BatchNorm2d (subclasses included: sepconv's
    DepthwiseConv2d, timm's BatchNormAct2d) a single ``call_module`` node.

    sepconv blocks check their input's channel count with Python control flow, which fx cannot
    trace; ``check_input_channels`` is recorded as an opaque call instead (it only reads shapes).
    """

    def __init__(self) -> None:
        super().__init__(autowrap_functions=(check_input_channels,))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What a folded norm becomes: nothing, or the activation a fused norm-act layer applied.

    ``None`` for other BatchNorm2d subclasses, which may do more than normalise: those are kept.
    """
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    # Looked up, not imported: timm is optional, and only its own models contain its layers.
    timm_norm_act = getattr(sys.modules.get("timm.layers.norm_act"), "BatchNormAct2d", None)
    if timm_norm_act is not None and type(bn) is timm_norm_act:
        # timm's BatchNormAct2d is norm -> drop -> act in one module.
        return nn.Sequential(cast(nn.Module, bn.drop), cast(nn.Module, bn.act))
    return None


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        # without running statistics an eval-mode BN normalises with batch statistics
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
        and _replacement(bn) is not None
    )


def _graph_pairs(module: nn.Module, graph: fx.Graph, prefix: str) -> list[Pair]:
    """Conv -> BN pairs of a traced graph: the BN reads the conv output, nothing else reads it
    (another reader would see the normalised values after folding), and each of the two modules
    is called exactly once (a shared module cannot be folded for one call site only)."""
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs: list[Pair] = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module":
            continue
        conv_name, bn_name = str(source.target), str(node.target)
        # Input checks read only the shape, which folding keeps.
        readers = [
            user
            for user in source.users
            if not (user.op == "call_function" and user.target is check_input_channels)
        ]
        if (
            readers == [node]
            and calls[conv_name] == 1
            and calls[bn_name] == 1
            and _foldable(module.get_submodule(conv_name), module.get_submodule(bn_name))
        ):
            pairs.append((prefix + conv_name, prefix + bn_name))
    return pairs


def _find_pairs(module: nn.Module, prefix: str = "") -> list[Pair]:
    """Conv -> BN pairs of ``module``, read off the data flow that ``torch.fx`` traces.

    Where ``module`` does not trace (data-dependent control flow, unsupported Python), its
    children are searched one by one, so one untraceable block costs only the pairs its own
    ``forward`` wires together. Pairs are never guessed from registration order: a wrong guess
    would change the model's outputs.
    """
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or not any(
        isinstance(m, nn.BatchNorm2d) for m in module.modules()
    ):
        return []
    try:
        graph = _ConvBnTracer().trace(module)
    except Exception:  # fx fails in many ways on user code; the fallback above is safe
        return [
            pair
            for name, child in module.named_children()
            for pair in _find_pairs(child, f"{prefix}{name}.")
        ]
    return _graph_pairs(module, graph, prefix)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Absorb ``bn`` into ``conv`` in place, computing in float64 (float32 on MPS, which has no
    float64) and rounding once to the conv's dtype."""
    dtype = conv.weight.dtype
    acc = torch.float32 if conv.weight.device.type == "mps" else torch.float64
    mean = cast(torch.Tensor, bn.running_mean).to(acc)
    var = cast(torch.Tensor, bn.running_var).to(acc)
    gamma = bn.weight.to(acc) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.to(acc) if bn.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.to(acc) if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + bn.eps)  # (C_out,)
    # Conv2d weights are (C_out, C_in / groups, K, K): one scale per output channel.
    conv.weight = nn.Parameter((conv.weight.to(acc) * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype))


def fuse(model: nn.Module) -> nn.Module:
    """Return an eval-only copy of ``model`` with every BatchNorm2d folded into the conv before it.

    With ``s = gamma / sqrt(var + eps)`` per output channel, each folded conv gets
    ``W' = W * s`` and ``b' = (b - mu) * s + beta`` (Jacob et al. 2018, section 3.2), a bias being
    created where the conv had none; the BatchNorm becomes ``nn.Identity`` (timm's
    ``BatchNormAct2d`` becomes its dropout and activation). The input model is not modified.

    Conv -> BN pairs are read off the data flow traced by ``torch.fx``: a BatchNorm2d is folded
    when its input is the output of a Conv2d with the same channel count that nothing else reads.
    A module ``fx`` cannot trace is searched child by child, so a pair wired together directly in
    an untraceable ``forward`` is left unfolded (correct, only not faster). Also left alone:
    a BN not preceded by a conv, a BN without running statistics, and BatchNorm2d subclasses
    other than timm's ``BatchNormAct2d``. Every BN of the sepconv models and of torchvision's and
    timm's MobileNet / EfficientNet / ResNet models is folded (tested), MobileNetV4's BN after
    its post-pool 1x1 conv included. A LayerNorm (ConvNeXt) is never folded: it normalises each
    sample with its own statistics, which no fixed weights can absorb.

    The copy is in eval mode with ``requires_grad=False``: the batch statistics that training
    needs are gone, so it is for inference only. The parameter count drops by the BN parameters
    (``2 * C`` per affine BN) minus the biases created (``C`` per conv that had none).

    Args:
        model: Any ``nn.Module``; its BatchNorm running statistics are used.

    Returns:
        The folded copy, with the same input and output shapes as ``model``.

    Example:
        >>> import sepconv, torch
        >>> model = sepconv.mobilenet_v2(num_classes=10).eval()
        >>> folded = fuse(model)
        >>> x = torch.randn(1, 3, 64, 64)
        >>> torch.allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)
        True
    """
    if not isinstance(model, nn.Module):
        raise invalid_type("model", "an nn.Module", model)
    fused = copy.deepcopy(model).eval()
    # A module registered under two names may be called from two places: never fold it.
    seen: dict[int, int] = {}
    for _, m in fused.named_modules(remove_duplicate=False):
        seen[id(m)] = seen.get(id(m), 0) + 1
    for conv_name, bn_name in _find_pairs(fused):
        conv = cast(nn.Conv2d, fused.get_submodule(conv_name))
        bn = cast(nn.BatchNorm2d, fused.get_submodule(bn_name))
        if seen[id(conv)] > 1 or seen[id(bn)] > 1:
            continue
        _fold(conv, bn)
        fused.set_submodule(bn_name, cast(nn.Module, _replacement(bn)))
    return fused.requires_grad_(False)
