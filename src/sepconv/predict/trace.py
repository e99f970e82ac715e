"""The ops a model executes, as a graph: who produces each op's inputs, and their shapes.

One forward pass on the meta device (shapes only, no arithmetic: milliseconds for a MobileNet)
under a :class:`torch.overrides.TorchFunctionMode` records every torch function the model
calls, whatever module calls it, with the op that produced each of its tensor inputs. Ops that
only re-describe memory (``view``, ``flatten``, ``dropout`` in eval mode) pass their producer
through. Forward hooks keep the stack of running modules, which names each op after its module
and marks the ops inside a composite block (:data:`COMPOSITES`: a squeeze-excite, a
``LayerNorm2d``) as one unit. :mod:`sepconv.predict.kernels` turns the graph into kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from sepconv.analysis.counting import IGNORED_OPS, op_name
from sepconv.analysis.module_stack import module_stack
from sepconv.layers import LayerNorm2d, SqueezeExcite
from sepconv.utils.validation import invalid_type

__all__ = ["COMPOSITES", "MODEL_INPUT", "OpNode", "Trace", "trace_ops"]

Shape = tuple[int, ...]

#: Producer index of the model's input tensor.
MODEL_INPUT = -1

#: Modules whose ops run as one kernel, by the kernel kind they become.
COMPOSITES: Mapping[type[nn.Module], str] = {SqueezeExcite: "se", LayerNorm2d: "layernorm"}

# Views that change the order of dimensions: free in eager PyTorch, a copy (Transpose) in an
# ONNX runtime. Outside a composite that accounts for them they are kernels of their own.
_PERMUTES = frozenset({"permute", "transpose", "t", "movedim"})
# Ops whose output has the shape of their first argument; on the meta device they are made with
# empty_like (PyTorch's meta batch_norm runs a slow Python decomposition).
_SAME_SHAPE = frozenset(
    [
        "batch_norm",
        "layer_norm",
        "relu",
        "relu6",
        "hardtanh",
        "silu",
        "hardswish",
        "hardsigmoid",
        "sigmoid",
        "gelu",
    ]
)


@dataclass(frozen=True)
class OpNode:
    """One op the model executed.

    Attributes:
        index: Position in execution order.
        op: Canonical op name (``"conv2d"``, ``"hardtanh"``, ``"add"``, ``"mean"``...).
        inputs: For each activation input, the index of the op that produced it
            (:data:`MODEL_INPUT` for the model's input).
        input_shapes: Shapes of the activation inputs, in the same order.
        weight_shapes: Shapes of the parameters and buffers it read.
        output_shape: Shape of its (first) output.
        attrs: The non-tensor arguments that matter for its cost (``stride``, ``padding``,
            ``dilation``, ``groups`` of a conv; ``min_val``, ``max_val`` of a hardtanh; ``dim``
            of a mean; ``output_size`` of an adaptive pool).
        module: Qualified name of the innermost module that called it (``""``: the model).
        composite: ``(module name, kernel kind)`` of the enclosing :data:`COMPOSITES` block,
            or ``None``.
    """

    index: int
    op: str
    inputs: tuple[int, ...]
    input_shapes: tuple[Shape, ...]
    weight_shapes: tuple[Shape, ...]
    output_shape: Shape
    attrs: Mapping[str, Any] = field(default_factory=dict)
    module: str = ""
    composite: tuple[str, str] | None = None


@dataclass(frozen=True)
class Trace:
    """The ops of one forward pass, and how many module calls made them (an eager runtime
    pays Python's cost of each call on top of its ops)."""

    nodes: list[OpNode]
    module_calls: int


# Positional parameter names of the ops whose attributes are recorded, after the tensor inputs.
_SIGNATURES: Mapping[str, tuple[str, ...]] = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "hardtanh": ("input", "min_val", "max_val"),
    "mean": ("input", "dim", "keepdim"),
    "adaptive_avg_pool2d": ("input", "output_size"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding"),
}
_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "conv2d": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    "hardtanh": {"min_val": -1.0, "max_val": 1.0},
}


def _attrs(op: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = _SIGNATURES.get(op, ())
    values = {**_DEFAULTS.get(op, {})}
    for name, value in zip(names, args, strict=False):
        values[name] = value
    values.update({k: v for k, v in kwargs.items() if k in names})
    return {
        k: (tuple(v) if isinstance(v, (list, tuple)) else v)
        for k, v in values.items()
        if not isinstance(v, torch.Tensor) and k not in ("input", "weight", "bias")
    }


class _Recorder(TorchFunctionMode):
    def __init__(self, weights: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.weight_ids = {id(t) for t in weights}
        self.producer: dict[int, int] = {}  # id(tensor) -> index of the op that made it
        self.keep: list[torch.Tensor] = []  # keeps ids unique while the trace runs
        self.nodes: list[OpNode] = []
        self.stack: list[tuple[str, nn.Module]] = []
        self.calls = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        first = args[0] if args else None
        if name in _SAME_SHAPE and isinstance(first, torch.Tensor) and first.is_meta:
            out = torch.empty_like(first)
        else:
            out = func(*args, **kwargs)
        if not self.stack:
            return out
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        weights = [t for t in tensors if id(t) in self.weight_ids]
        activations = [t for t in tensors if id(t) in self.producer]
        composite = self._composite()
        if name in IGNORED_OPS and not (name in _PERMUTES and composite is None):
            # A view of a weight is a weight; a view of an activation keeps its producer.
            for t in outputs:
                if weights and not activations:
                    self.weight_ids.add(id(t))
                elif activations:
                    self.producer[id(t)] = self.producer[id(activations[0])]
                self.keep.append(t)
            return out
        if not outputs:
            return out
        node = OpNode(
            index=len(self.nodes),
            op=name,
            inputs=tuple(self.producer[id(t)] for t in activations),
            input_shapes=tuple(tuple(t.shape) for t in activations),
            weight_shapes=tuple(tuple(t.shape) for t in weights),
            output_shape=tuple(outputs[0].shape),
            attrs=_attrs(name, args, kwargs),
            module=self.stack[-1][0],
            composite=composite,
        )
        self.nodes.append(node)
        for t in outputs:
            self.producer[id(t)] = node.index
            self.keep.append(t)
        return out

    def _composite(self) -> tuple[str, str] | None:
        for module_name, module in self.stack:  # outermost first
            kind = COMPOSITES.get(type(module))
            if kind is not None:
                return module_name, kind
        return None


def trace_ops(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """The ops of one eval-mode forward pass of ``model`` on an input of ``input_shape``.

    Runs on the meta device (the model itself is neither run nor modified; its train/eval
    flags are restored).

    Args:
        model: Any module whose forward takes one tensor.
        input_shape: ``(N, C, H, W)``.

    Returns:
        The executed ops in order, each with its producers (:class:`OpNode`), and the number
        of module calls.

    Raises:
        ValueError: the model fails at this input shape (the message says where).

    Example:
        >>> from sepconv.layers import ConvNormAct
        >>> trace = trace_ops(ConvNormAct(3, 8, 3), (1, 3, 8, 8))
        >>> [n.op for n in trace.nodes], trace.module_calls
        (['conv2d', 'batch_norm', 'relu'], 4)
    """
    if not isinstance(model, nn.Module):
        raise invalid_type("model", "a torch.nn.Module", model)
    params = {k: v.to("meta") for k, v in model.named_parameters()}
    buffers = {k: v.to("meta") for k, v in model.named_buffers()}
    recorder = _Recorder([*params.values(), *buffers.values()])

    def enter(name: str, module: nn.Module, _inputs: tuple[Any, ...]) -> None:
        recorder.stack.append((name, module))
        recorder.calls += 1

    modes = {m: m.training for m in model.modules()}
    model.eval()
    x = torch.empty(tuple(input_shape), device="meta")
    recorder.producer[id(x)] = MODEL_INPUT
    try:
        with module_stack(model, enter, recorder.stack.pop), torch.no_grad(), recorder:
            functional_call(model, {**params, **buffers}, (x,))
    except Exception as err:
        where = f" in `{recorder.stack[-1][0] or '(model)'}`" if recorder.stack else ""
        raise ValueError(
            f"Model {type(model).__name__} failed to run at input shape {list(input_shape)}"
            f"{where}: {type(err).__name__}: {err}"
        ) from err
    finally:
        for module, training in modes.items():
            module.training = training
    return Trace(recorder.nodes, recorder.calls)
