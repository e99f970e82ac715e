"""A model as the kernels a runtime executes: its ops after BatchNorm folding and the backend's
fusions, each with the shapes and settings that decide its latency.

:func:`extract_kernels` reads the op graph of :func:`~sepconv.predict.trace.trace_ops`:

1. A BatchNorm right after a convolution (the conv's only reader) is folded into it, as
   :func:`sepconv.fuse` does before any backend sees the model.
2. The ops of a composite block (a squeeze-excite, a ``LayerNorm2d``) become one kernel.
3. A convolution absorbs the activation after it, and a linear convolution the residual add
   after it, where the backend's fusion rules (:class:`~sepconv.predict.fusion.Fusions`, found
   by measurement) say that the runtime fuses them.
4. Every other op is a kernel of its own; an op with no kernel kind raises
   :class:`UnpredictableKernelError`: a latency is never a silent zero.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Literal, get_args

from torch import nn

from sepconv.predict.trace import MODEL_INPUT, OpNode, trace_ops

__all__ = [
    "ACTS",
    "KINDS",
    "Kernel",
    "KernelKind",
    "UnpredictableKernelError",
    "extract_kernels",
    "kernels_of_ops",
]

Shape = tuple[int, ...]
KernelKind = Literal["conv", "act", "add", "mul", "scale", "se", "layernorm", "pool", "linear"]
KINDS: Final[tuple[str, ...]] = get_args(KernelKind)
#: The activations a kernel may have, by op name (a ReLU6 is ``hardtanh(0, 6)``).
ACTS: Final[tuple[str, ...]] = (
    "relu",
    "relu6",
    "silu",
    "hardswish",
    "hardsigmoid",
    "sigmoid",
    "gelu",
)


class UnpredictableKernelError(ValueError):
    """A model runs an op that no kernel kind covers, or a kernel the profile has no
    measurements near."""


@dataclass(frozen=True)
class Kernel:
    """One kernel the runtime executes.

    Attributes:
        kind: ``"conv"`` (any convolution: standard, grouped, depthwise, pointwise, with its
            fused activation and residual add), ``"act"``, ``"add"`` (two tensors), ``"mul"``
            (two tensors, the second possibly ``(N, C, 1, 1)``), ``"scale"`` (by a weight,
            LayerScale), ``"se"`` (squeeze-excite: mean, two 1x1 convs, gate, multiply),
            ``"layernorm"``, ``"pool"`` (global average), ``"linear"``.
        inputs: Shapes of its activation inputs, ``(N, C, H, W)`` (``(N, C)`` for linear);
            a conv with a fused residual add has the residual as its second input.
        output: Shape of its output.
        kernel_size, stride, padding, dilation, groups: Of a conv (square).
        act: A conv's fused activation, an ``act`` kernel's activation, an SE's inner one
            (``""``: none).
        gate: An SE's gate.
        add: Whether a conv has the residual add fused.
        hidden: An SE's reduced channels.
        transposed: A layernorm over the channels of an ``(N, C, H, W)`` map (run in PyTorch
            as permute, ``layer_norm``, permute; in ONNX as Transpose, LayerNormalization,
            Transpose).
        layer: The module it comes from (for reports; not part of its identity).
    """

    kind: KernelKind
    inputs: tuple[Shape, ...]
    output: Shape
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    act: str = ""
    gate: str = ""
    add: bool = False
    hidden: int = 0
    transposed: bool = False
    layer: str = field(default="", compare=False)

    @property
    def conv_type(self) -> str:
        """``"depthwise"``, ``"pointwise"``, ``"grouped"`` or ``"standard"`` (``""``: no conv)."""
        if self.kind != "conv":
            return ""
        cin = self.inputs[0][1]
        if self.groups == cin and cin > 1:
            return "depthwise"
        if self.groups == 1 and self.kernel_size == 1:
            return "pointwise"
        return "grouped" if self.groups > 1 else "standard"

    @property
    def macs(self) -> int:
        """Multiply-adds (convs and linear layers; 0 for the others): one MAC is one
        multiply-add, FLOPs are 2x MACs."""
        out = math.prod(self.output)
        if self.kind == "conv":
            cin = self.inputs[0][1]
            return out * (cin // self.groups) * self.kernel_size**2
        if self.kind == "linear":
            return out * self.inputs[0][-1]
        if self.kind == "se":
            n, c = self.inputs[0][:2]
            return 2 * n * c * self.hidden
        return 0

    @property
    def bytes(self) -> int:
        """fp32 bytes moved: activations read and written plus weights, each once."""
        moved = sum(math.prod(s) for s in self.inputs) + math.prod(self.output)
        if self.kind == "conv":
            cin, cout = self.inputs[0][1], self.output[1]
            moved += cout * (cin // self.groups) * self.kernel_size**2 + cout
        elif self.kind == "linear":
            moved += self.inputs[0][-1] * self.output[-1] + self.output[-1]
        elif self.kind == "se":
            moved += 2 * self.inputs[0][1] * self.hidden
        return 4 * moved

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (shapes as lists); :meth:`from_dict` reads it back."""
        out = asdict(self)
        out["inputs"] = [list(s) for s in self.inputs]
        out["output"] = list(self.output)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Kernel:
        """The kernel a :meth:`to_dict` dict describes (checked by the profile reader)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["inputs"] = tuple(tuple(int(d) for d in s) for s in data["inputs"])
        values["output"] = tuple(int(d) for d in data["output"])
        return cls(**values)


def _act_name(node: OpNode) -> str | None:
    if node.op == "hardtanh":
        if (node.attrs.get("min_val"), node.attrs.get("max_val")) == (0.0, 6.0):
            return "relu6"
        return None
    return node.op if node.op in ACTS else None


def _unpredictable(node: OpNode, why: str) -> UnpredictableKernelError:
    return UnpredictableKernelError(
        f"Cannot predict op `{node.op}` in layer `{node.module or '(model)'}` "
        f"(input {_shapes(node.input_shapes)}): {why}."
    )


def _shapes(shapes: Sequence[Shape]) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes) or "none"


def _square(node: OpNode, name: str) -> int:
    value = node.attrs.get(name, 1)
    values = tuple(value) if isinstance(value, tuple) else (value, value)
    if isinstance(value, str) or len(set(values)) != 1:
        raise _unpredictable(node, f"only square convolutions are covered, {name} is {value}")
    return int(values[0])


def _conv(node: OpNode) -> Kernel:
    weight = node.weight_shapes[0]
    if len(weight) != 4 or weight[2] != weight[3]:
        raise _unpredictable(node, f"only square 2-D kernels are covered, weight {weight}")
    return Kernel(
        kind="conv",
        inputs=node.input_shapes[:1],
        output=node.output_shape,
        kernel_size=weight[2],
        stride=_square(node, "stride"),
        padding=_square(node, "padding"),
        dilation=_square(node, "dilation"),
        groups=int(node.attrs.get("groups", 1)),
        layer=node.module,
    )


def _composite(nodes: Sequence[OpNode], kind: str) -> Kernel:
    first, last = nodes[0], nodes[-1]
    if kind == "se":
        acts = [a for a in (_act_name(n) for n in nodes) if a is not None]
        convs = [n for n in nodes if n.op == "conv2d"]
        if len(acts) != 2 or len(convs) != 2:
            raise _unpredictable(first, "a squeeze-excite that is not mean, conv, act, conv, gate")
        return Kernel(
            kind="se",
            inputs=first.input_shapes[:1],
            output=last.output_shape,
            act=acts[0],
            gate=acts[1],
            hidden=convs[0].output_shape[1],
            layer=first.module,
        )
    shape = first.input_shapes[0]
    # LayerNorm2d normalises an (N, H, W, C) view of an (N, C, H, W) map.
    transposed = len(shape) == 4
    inputs = ((shape[0], shape[3], shape[1], shape[2]),) if transposed else (shape,)
    return Kernel(
        kind="layernorm",
        inputs=inputs,
        output=inputs[0],
        transposed=transposed,
        layer=first.module,
    )


def _single(node: OpNode) -> Kernel:
    op, shapes = node.op, node.input_shapes
    if op == "conv2d":
        return _conv(node)
    act = _act_name(node)
    if act is not None:
        return Kernel("act", shapes[:1], node.output_shape, act=act, layer=node.module)
    if op in ("add", "mul") and len(shapes) == 2:
        if op == "add" and shapes[0] != shapes[1]:
            raise _unpredictable(node, "an add of two tensors of different shapes")
        kind: KernelKind = "add" if op == "add" else "mul"
        return Kernel(kind, shapes, node.output_shape, layer=node.module)
    if op == "mul" and len(shapes) == 1 and len(node.weight_shapes) == 1:
        return Kernel("scale", shapes, node.output_shape, layer=node.module)
    global_pool = op == "adaptive_avg_pool2d" and node.output_shape[2:] == (1, 1)
    if global_pool or (op == "mean" and set(node.attrs.get("dim", ())) == {2, 3}):
        return Kernel("pool", shapes[:1], node.output_shape, layer=node.module)
    if op == "linear" and len(shapes[0]) == 2:
        return Kernel("linear", shapes[:1], node.output_shape, layer=node.module)
    if op == "layer_norm":
        return Kernel("layernorm", shapes[:1], node.output_shape, layer=node.module)
    if op == "batch_norm":
        raise _unpredictable(node, "a BatchNorm that does not follow a conv cannot be folded")
    raise _unpredictable(node, f"no kernel kind covers it (kinds: {', '.join(KINDS)})")


def kernels_of_ops(nodes: Sequence[OpNode], fusions: Collection[str]) -> list[Kernel]:
    """Group traced ops into the kernels a backend with ``fusions`` executes.

    Args:
        nodes: :func:`~sepconv.predict.trace.trace_ops` output.
        fusions: The backend's fused pairs, ``"conv+<act>"`` and ``"conv+add"``
            (:class:`~sepconv.predict.fusion.Fusions`).

    Raises:
        UnpredictableKernelError: an op no kernel kind covers.
    """
    readers: dict[int, int] = {}
    for node in nodes:
        for source in node.inputs:
            readers[source] = readers.get(source, 0) + 1
    kernels: list[Kernel] = []
    # index of a node -> index of the kernel that produces its output
    made_by: dict[int, int] = {}
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node.composite is not None:
            j = i
            while j < len(nodes) and nodes[j].composite == node.composite:
                j += 1
            kernels.append(_composite(nodes[i:j], node.composite[1]))
            for k in range(i, j):
                made_by[k] = len(kernels) - 1
            i = j
            continue
        producer = node.inputs[0] if node.inputs else MODEL_INPUT
        previous = kernels[made_by[producer]] if producer in made_by else None
        sole = producer != MODEL_INPUT and readers.get(producer, 0) == 1
        last_op = producer == i - 1
        if (
            node.op == "batch_norm"
            and previous is not None
            and sole
            and last_op
            and previous.kind == "conv"
            and not previous.act
            and not previous.add
        ):
            made_by[i] = made_by[producer]  # folded into the conv (sepconv.fuse)
            i += 1
            continue
        act = _act_name(node)
        fusable = previous is not None and previous.kind == "conv" and sole and last_op
        if (
            fusable
            and act is not None
            and previous is not None
            and not previous.act
            and f"conv+{act}" in fusions
            and not previous.add
        ):
            kernels[made_by[producer]] = _replace(previous, act=act)
            made_by[i] = made_by[producer]
            i += 1
            continue
        if node.op == "add" and "conv+add" in fusions and len(node.inputs) == 2:
            fused_from = _fuse_add(node, kernels, made_by, readers)
            if fused_from is not None:
                made_by[i] = made_by[fused_from]
                i += 1
                continue
        kernels.append(_single(node))
        made_by[i] = len(kernels) - 1
        i += 1
    return kernels


def _fuse_add(
    node: OpNode, kernels: list[Kernel], made_by: dict[int, int], readers: dict[int, int]
) -> int | None:
    """Fold a residual add into the linear conv that made one of its inputs (the op just
    before it, read by nothing else); the producer's index, or ``None`` when it cannot."""
    if node.input_shapes[0] != node.input_shapes[1]:
        return None
    for source in node.inputs:
        if source not in made_by or readers.get(source, 0) != 1 or source != node.index - 1:
            continue
        conv = kernels[made_by[source]]
        if conv.kind == "conv" and not conv.act and not conv.add:
            kernels[made_by[source]] = _replace(conv, add=True, inputs=(*conv.inputs, conv.output))
            return source
    return None


def _replace(kernel: Kernel, **changes: Any) -> Kernel:
    values = {f.name: getattr(kernel, f.name) for f in fields(kernel)}
    values.update(changes)
    return Kernel(**values)


def extract_kernels(
    model: nn.Module, input_shape: Sequence[int], fusions: Collection[str] = ()
) -> list[Kernel]:
    """The kernels a backend with ``fusions`` runs for ``model`` on inputs of ``input_shape``.

    Args:
        model: The model (not run: traced on the meta device).
        input_shape: ``(N, C, H, W)``.
        fusions: The backend's fused pairs (``"conv+relu6"``, ``"conv+add"``...); none for a
            runtime that runs every op on its own.

    Returns:
        The kernels in execution order.

    Raises:
        UnpredictableKernelError: an op no kernel kind covers.

    Example:
        >>> from sepconv.layers import ConvNormAct
        >>> [k.act for k in extract_kernels(ConvNormAct(3, 8, 3), (1, 3, 8, 8), {"conv+relu"})]
        ['relu']
    """
    return kernels_of_ops(trace_ops(model, input_shape).nodes, fusions)
