"""Kernels as ONNX graphs, written node by node as :func:`sepconv.export_onnx` writes them.

Exporting a one-kernel PyTorch module takes seconds (``torch.export`` and the checks); writing
the same nodes with ``onnx.helper`` takes a millisecond, which is what lets a calibration time
thousands of kernels. Each kernel is translated to the nodes the exporter emits for it
(opset 18): a BatchNorm-folded conv is ``Conv`` with a bias; ReLU6 is ``Clip(0, 6)``; SiLU is
``Sigmoid`` then ``Mul``; exact GELU is ``Div, Erf, Add, Mul, Mul``; ``LayerNorm2d`` is
``Transpose, LayerNormalization, Transpose``; a global average pool is ``ReduceMean``; a
linear layer after it ``Reshape, Gemm``. ``tests/test_predict_kernels.py`` checks the
translation against the exporter's own output for each block kind.

A graph can *sandwich* its kernels (:func:`kernel_graph`): every input first goes through a
per-channel 1x1 depthwise conv and every output through another. The runtime then sees the
kernel between two of its own conv kernels, as it does inside a model: in the layout it keeps
between convs (ONNX Runtime's NCHWc blocks, OpenVINO's blocked formats), with the layout
conversions a non-conv kernel needs, and with the fusions a conv neighbour allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepconv.predict.kernels import Kernel

__all__ = [
    "OPSET",
    "SANDWICH",
    "as_map",
    "kernel_graph",
    "plan_settings",
    "read_plan",
    "sandwich_graph",
    "sandwich_nodes",
]

OPSET = 18
#: What the names of a sandwich's convs start with (``sandwich_3``); a runtime that renames a
#: node it rewrites keeps the name as a prefix (ONNX Runtime: ``sandwich_3_nchwc``).
SANDWICH = "sandwich"
Shape = tuple[int, ...]


class _Builder:
    """Collects the nodes, initializers and names of one graph."""

    def __init__(self, seed: int) -> None:
        try:
            import onnx
        except ImportError as err:
            raise ImportError(
                "Timing kernels in an ONNX runtime needs the `onnx` package, which is not "
                "installed: run `pip install 'sepconv[onnx]'`."
            ) from err
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, values: np.ndarray, stem: str = "w") -> str:
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(values, name))
        return name

    def weight(self, shape: Sequence[int]) -> str:
        # Small values: random weights must not overflow or underflow to denormals.
        values = (0.1 * self.rng.standard_normal(tuple(shape))).astype(np.float32)
        return self.const(values)

    def node(self, op: str, inputs: Sequence[str], stem: str = "", **attrs: Any) -> str:
        """A node of ``op`` named as its output, ``stem`` (default: the op) and a number."""
        out = self.name(stem or op.lower())
        node = self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs)
        self.nodes.append(node)
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int,
        pad: int,
        dil: int,
        groups: int,
        stem: str = "",
    ) -> str:
        w = self.weight((cout, cin // groups, k, k))
        b = self.weight((cout,))
        return self.node(
            "Conv",
            [x, w, b],
            stem,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            dilations=[dil, dil],
            group=groups,
        )

    def act(self, x: str, act: str) -> str:
        if act == "relu":
            return self.node("Relu", [x])
        if act == "relu6":
            low = self.const(np.array(0.0, np.float32), "min")
            high = self.const(np.array(6.0, np.float32), "max")
            return self.node("Clip", [x, low, high])
        if act == "silu":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if act == "sigmoid":
            return self.node("Sigmoid", [x])
        if act == "hardswish":
            return self.node("HardSwish", [x])
        if act == "hardsigmoid":
            return self.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
        if act == "gelu":
            root2 = self.const(np.array(np.sqrt(2.0), np.float32), "c")
            one = self.const(np.array(1.0, np.float32), "c")
            half = self.const(np.array(0.5, np.float32), "c")
            erf = self.node("Erf", [self.node("Div", [x, root2])])
            return self.node("Mul", [self.node("Mul", [x, self.node("Add", [erf, one])]), half])
        raise ValueError(
            f"Invalid value for argument `act`: expected a known activation, received {act!r}."
        )

    def mean_hw(self, x: str) -> str:
        axes = self.const(np.array([-1, -2], np.int64), "axes")
        return self.node("ReduceMean", [x, axes], keepdims=1)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        return self.node("Reshape", [x, self.const(np.array(shape, np.int64), "shape")])

    def kernel(self, kernel: Kernel, inputs: Sequence[str]) -> str:
        """The nodes of ``kernel`` reading ``inputs``; the name of its output."""
        x = inputs[0]
        shape = kernel.inputs[0]
        if kernel.kind == "conv":
            y = self.conv(
                x,
                shape[1],
                kernel.output[1],
                kernel.kernel_size,
                kernel.stride,
                kernel.padding,
                kernel.dilation,
                kernel.groups,
            )
            if kernel.act:
                y = self.act(y, kernel.act)
            return self.node("Add", [y, inputs[1]]) if kernel.add else y
        if kernel.kind == "act":
            return self.act(x, kernel.act)
        if kernel.kind in ("add", "mul"):
            return self.node(kernel.kind.capitalize(), [x, inputs[1]])
        if kernel.kind == "scale":
            return self.node("Mul", [x, self.weight((shape[1], 1, 1))])
        if kernel.kind == "se":
            c, hidden = shape[1], kernel.hidden
            s = self.mean_hw(x)
            s = self.act(self.conv(s, c, hidden, 1, 1, 0, 1, 1), kernel.act)
            s = self.act(self.conv(s, hidden, c, 1, 1, 0, 1, 1), kernel.gate)
            return self.node("Mul", [x, s])
        if kernel.kind == "layernorm":
            c = shape[1]
            if kernel.transposed:
                x = self.node("Transpose", [x], perm=[0, 2, 3, 1])
            y = self.node(
                "LayerNormalization",
                [x, self.weight((c,)), self.weight((c,))],
                axis=-1,
                epsilon=1e-6,
                stash_type=1,
            )
            return self.node("Transpose", [y], perm=[0, 3, 1, 2]) if kernel.transposed else y
        if kernel.kind == "pool":
            return self.mean_hw(x)
        if kernel.kind == "linear":
            cin, cout = shape[-1], kernel.output[-1]
            w, b = self.weight((cout, cin)), self.weight((cout,))
            return self.node("Gemm", [x, w, b], transB=1)
        raise ValueError(
            f"Invalid value for argument `kernel`: expected a kernel kind, "
            f"received {kernel.kind!r}."
        )


def as_map(shape: Shape) -> Shape:
    """A 2-D ``(N, C)`` shape as the ``(N, C, 1, 1)`` map a sandwich conv can read."""
    return shape if len(shape) == 4 else (*shape, 1, 1)


def kernel_graph(
    kernels: Sequence[Kernel], *, sandwich: bool = True, seed: int = 0
) -> tuple[Any, list[Shape]]:
    """An ONNX model running ``kernels`` one after the other, and the shapes of its inputs.

    The first kernel reads the graph's inputs (its residual, for a conv with a fused add, is
    a second input); each next kernel reads the previous one's output (and, for an add, a
    further graph input of its shape). With ``sandwich`` every input and the output pass through
    a per-channel 1x1 depthwise conv (see the module doc).

    Example:
        >>> k = Kernel("act", ((1, 8, 4, 4),), (1, 8, 4, 4), act="relu6")
        >>> model, shapes = kernel_graph([k])
        >>> [n.op_type for n in model.graph.node], shapes
        (['Conv', 'Clip', 'Conv'], [(1, 8, 4, 4)])
    """
    b = _Builder(seed)
    helper, tensor = b.onnx.helper, b.onnx.TensorProto
    graph_inputs: list[Any] = []
    shapes: list[Shape] = []

    def new_input(shape: Shape) -> str:
        name = f"input_{len(graph_inputs)}"
        fed = as_map(shape) if sandwich else shape
        graph_inputs.append(helper.make_tensor_value_info(name, tensor.FLOAT, list(fed)))
        shapes.append(fed)
        if not sandwich:
            return name
        y = b.conv(name, fed[1], fed[1], 1, 1, 0, 1, fed[1], stem=SANDWICH)
        return y if len(shape) == 4 else b.reshape(y, shape)

    current = new_input(kernels[0].inputs[0])
    for kernel in kernels:
        extra = [new_input(shape) for shape in kernel.inputs[1:]]
        current = b.kernel(kernel, [current, *extra])
    out_shape = kernels[-1].output
    if sandwich:
        if len(out_shape) != 4:
            current = b.reshape(current, as_map(out_shape))
        c = as_map(out_shape)[1]
        current = b.conv(current, c, c, 1, 1, 0, 1, c, stem=SANDWICH)
        out_shape = as_map(out_shape)
    output = helper.make_tensor_value_info(current, tensor.FLOAT, list(out_shape))
    graph = helper.make_graph(b.nodes, "kernels", graph_inputs, [output], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 10)
    return model, shapes


def sandwich_graph(shape: Shape) -> tuple[Any, list[Shape]]:
    """The sandwich of :func:`kernel_graph` around nothing: its two convs on ``shape``, the
    second reading the first (what a sandwiched kernel's time is measured against)."""
    marker = Kernel("scale", (shape,), shape)
    model, shapes = kernel_graph([marker], sandwich=True)
    first, scale, last = list(model.graph.node)
    last.input[0] = first.output[0]  # the scale's node taken out again
    model.graph.node.remove(scale)
    used = {name for node in model.graph.node for name in node.input}
    for init in list(model.graph.initializer):
        if init.name not in used:
            model.graph.initializer.remove(init)
    return model, shapes


def plan_settings(plan: Path) -> dict[str, object]:
    """ONNX Runtime session settings under which it writes its plan of a graph (the optimised
    graph it will run) to ``plan``, without its warning that the plan holds for this CPU only."""
    return {"optimized_model_filepath": str(plan), "log_severity_level": 3}


def read_plan(plan: Path) -> Any:
    """The plan ONNX Runtime wrote under :func:`plan_settings`, read as an ONNX model."""
    import onnx

    return onnx.load(str(plan), load_external_data=False)


def sandwich_nodes(planned: Any) -> set[str] | None:
    """The names of the nodes of ``planned`` (an ONNX model: the plan ONNX Runtime made of a
    :func:`kernel_graph` with a sandwich) that belong to the sandwich, not to the kernels: its
    convs, and the layout conversions that read a graph input or write the graph output.

    ``None`` when a sandwich conv was fused with a kernel's op, so that the node running both
    cannot be split between them: the conv renamed after the op (``clip_6_nchwc``), or still
    named as the sandwich's but carrying the op (an ``activation`` attribute, or a fourth input
    that it adds to its output).
    """
    graph = planned.graph
    ends = {v.name for v in graph.input} | {v.name for v in graph.output}
    convs = [n for n in graph.node if n.name.startswith(SANDWICH + "_")]
    fused = any(len(n.input) > 3 or any(a.name == "activation" for a in n.attribute) for n in convs)
    if fused or len(convs) < len(graph.input) + len(graph.output):
        return None
    layout = {
        n.name
        for n in graph.node
        if n.op_type.startswith("Reorder") and ends & {*n.input, *n.output}
    }
    return {n.name for n in convs} | layout
