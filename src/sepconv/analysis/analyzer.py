"""``analyze``: run one forward pass and cost every op it executes.

Two mechanisms work together. Forward hooks on every submodule keep a stack of the modules
currently running, which names each op after the innermost module and, when a forward pass
fails, names the layer that failed. A :class:`torch.overrides.TorchFunctionMode` sees every
torch function call (``conv2d``, ``linear``, ``batch_norm``, the ``+`` of a residual, the ``*``
of a squeeze-excite gate) whatever module made it, so user modules and plain functional code
are costed exactly as ``nn.Conv2d`` is, and an op without a formula is listed, never dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from sepconv.analysis.counting import IGNORED_OPS, SHAPE_PRESERVING_OPS, op_cost, op_name
from sepconv.analysis.module_stack import module_stack
from sepconv.analysis.report import CostReport, LayerCost, Shape
from sepconv.utils.validation import invalid, invalid_type


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _shapes(tensors: Sequence[torch.Tensor]) -> tuple[Shape, ...]:
    return tuple(tuple(t.shape) for t in tensors)


class _Recorder(TorchFunctionMode):
    """Costs each torch function call and attributes it to the innermost running module."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        element_size: int,
    ) -> None:
        super().__init__()
        self.element_size = element_size
        self.params = params
        # id of a parameter or buffer -> id of the parameter/buffer it is (or is a view of).
        self.weights = {id(t): id(t) for t in (*params.values(), *buffers.values())}
        self.param_ids = {id(p) for p in params.values()}
        self.counted_params: set[int] = set()
        # Views of weights (``gamma.reshape(1, -1, 1, 1)``) stay alive so their ids stay unique.
        self._views: list[torch.Tensor] = []
        # (qualified name, module, positional inputs) of every module currently in forward.
        self.stack: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
        self.rows: list[LayerCost] = []
        self.unknown: Counter[str] = Counter()
        self.failed_op: str | None = None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        try:
            first = args[0] if args else None
            if name in SHAPE_PRESERVING_OPS and isinstance(first, torch.Tensor) and first.is_meta:
                out = torch.empty_like(first)
            else:
                out = func(*args, **kwargs)
        except Exception:
            self.failed_op = name
            raise
        if not self.stack:
            return out  # not part of the model's forward
        inputs = _tensors((args, kwargs))
        if name in IGNORED_OPS:
            self._track_views(inputs, out)
        else:
            self._record(name, args, kwargs, inputs, _tensors(out))
        return out

    def _track_views(self, inputs: list[torch.Tensor], out: Any) -> None:
        sources = [self.weights[id(t)] for t in inputs if id(t) in self.weights]
        if sources:
            for view in _tensors(out):
                self.weights.setdefault(id(view), sources[0])
                self._views.append(view)

    def _bytes(self, tensor: torch.Tensor) -> int:
        # Floating tensors are costed in the requested dtype; integer/bool ones as they are.
        size = self.element_size if tensor.is_floating_point() else tensor.element_size()
        return tensor.numel() * size

    def _record(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        inputs: list[torch.Tensor],
        outputs: list[torch.Tensor],
    ) -> None:
        weights = [t for t in inputs if id(t) in self.weights]
        activations = [t for t in inputs if id(t) not in self.weights]
        cost = op_cost(name, args, kwargs, outputs)
        if cost is None:
            self.unknown[name] += 1
        new_params = 0
        for tensor in weights:
            source = self.weights[id(tensor)]
            if source in self.param_ids and source not in self.counted_params:
                self.counted_params.add(source)
                new_params += tensor.numel()
        module_name, module, _ = self.stack[-1]
        self.rows.append(
            LayerCost(
                name=module_name,
                module_type=type(module).__name__,
                op=name,
                kind=cost[0] if cost else "other",
                input_shapes=_shapes(activations),
                output_shapes=_shapes(outputs),
                params=new_params,
                macs=cost[1] if cost else 0,
                weight_bytes=sum(self._bytes(t) for t in weights),
                read_bytes=sum(self._bytes(t) for t in activations),
                write_bytes=sum(self._bytes(t) for t in outputs),
                known=cost is not None,
            )
        )


def _check_input_size(input_size: Sequence[int]) -> tuple[int, ...]:
    if (
        isinstance(input_size, (str, bytes))
        or not isinstance(input_size, Sequence)
        or not input_size
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_size)
    ):
        expected = "a non-empty sequence of positive integers such as (1, 3, 224, 224)"
        raise invalid("input_size", expected, input_size)
    return tuple(input_size)


def _first_tensor(model: nn.Module) -> torch.Tensor | None:
    floating = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return floating[0] if floating else None


def analyze(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 224, 224),
    dtype: torch.dtype = torch.float32,
) -> CostReport:
    """Cost every op of one forward pass of ``model``: params, MACs, bytes, intensity.

    Runs ``model`` once in eval mode under ``torch.no_grad()`` on a random input of shape
    ``input_size`` (on the model's device, in its floating dtype), restores each module's
    train/eval flag afterwards, and returns one :class:`LayerCost` row per executed op.
    Convolutions are classified by groups and kernel (:func:`~sepconv.analysis.counting.conv_kind`):
    the split that makes depthwise separable networks cheap - Howard et al., "MobileNets",
    arXiv:1704.04861, Table 2 reports 95% of mult-adds and 75% of parameters in 1x1 convs -
    is ``report.by_kind()``. Works on any ``nn.Module`` whose forward takes one tensor.

    Args:
        model: the network to analyze (not modified).
        input_size: shape of the single input tensor, ``(N, C, H, W)`` for image models.
            MACs and bytes are for the whole batch of N.
        dtype: element type the byte columns assume (``torch.float16`` halves them); the
            forward pass itself runs in the model's own dtype.

    Returns:
        A :class:`CostReport`; ``report.macs`` is the headline (conv + linear) total.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``dtype`` not a ``torch.dtype``.
        ValueError: ``input_size`` is malformed, or the model fails to run at that size
            (the message names the failing layer and the shapes it received).

    Example:
        >>> import torchvision
        >>> report = analyze(torchvision.models.mobilenet_v2(), (1, 3, 224, 224))
        >>> round(report.macs / 1e6, 1)  # the paper's 300M
        300.8
    """
    if not isinstance(model, nn.Module):
        raise invalid_type("model", "a torch.nn.Module", model)
    if not isinstance(dtype, torch.dtype):
        expected = "a torch.dtype such as torch.float32"
        raise invalid_type("dtype", expected, dtype, show_type=False)
    size = _check_input_size(input_size)
    element_size = torch.empty((), dtype=dtype).element_size()
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        try:
            # Shapes alone decide every count, so the first try runs on the meta device: no
            # arithmetic, seconds even for EfficientNet-B7 at 600x600, the model untouched.
            recorder = _run(model, size, element_size, on_meta=True)
        except Exception:
            # Data-dependent code (``.item()``, CPU tensors made in forward) needs real data;
            # a model that is simply wrong for this size fails again here and is reported.
            recorder = _run(model, size, element_size, on_meta=False)
    finally:
        for module, training in modes.items():
            module.training = training
    return _report(model, size, dtype, recorder)


def _run(model: nn.Module, size: tuple[int, ...], element_size: int, *, on_meta: bool) -> _Recorder:
    """One forward pass of ``model`` under a recorder; ValueError naming the failing layer."""
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    buffers: dict[str, torch.Tensor] = dict(model.named_buffers())
    reference = _first_tensor(model)
    dtype = reference.dtype if reference is not None else torch.float32
    if on_meta:
        params = {name: p.to("meta") for name, p in params.items()}
        buffers = {name: b.to("meta") for name, b in buffers.items()}
        device: torch.device | None = torch.device("meta")
    else:
        device = reference.device if reference is not None else None
    recorder = _Recorder(params, buffers, element_size)

    def enter(name: str, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        recorder.stack.append((name, module, inputs))

    try:
        x = torch.randn(size, device=device, dtype=dtype)
        with module_stack(model, enter, recorder.stack.pop), torch.no_grad(), recorder:
            functional_call(model, {**params, **buffers}, (x,))
    except Exception as err:
        raise ValueError(_failure_message(model, size, recorder, err)) from err
    return recorder


def _failure_message(
    model: nn.Module, size: tuple[int, ...], recorder: _Recorder, err: Exception
) -> str:
    message = f"Model {type(model).__name__} failed to run at input_size {size}"
    if recorder.stack:
        name, module, inputs = recorder.stack[-1]
        shapes = " ".join("x".join(map(str, s)) for s in _shapes(_tensors(inputs)))
        message += (
            f": layer `{name or '(model)'}` ({type(module).__name__}) received input {shapes}"
        )
    if recorder.failed_op:
        message += f", op `{recorder.failed_op}`"
    return f"{message} raised {type(err).__name__}: {err}"


def _report(
    model: nn.Module, size: tuple[int, ...], dtype: torch.dtype, recorder: _Recorder
) -> CostReport:
    uncounted: Counter[str] = Counter()
    for name, param in recorder.params.items():
        if id(param) not in recorder.counted_params:
            uncounted[name.rpartition(".")[0]] += param.numel()
    return CostReport(
        model=type(model).__name__,
        input_size=size,
        dtype=str(dtype).removeprefix("torch."),
        rows=recorder.rows,
        total_params=sum(p.numel() for p in recorder.params.values()),
        uncounted_params=dict(uncounted),
        unknown_ops=dict(recorder.unknown),
    )
