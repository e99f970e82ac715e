"""Record what a model really executes: every module call, its order and its real inputs.

One forward pass with hooks gives, for each module, the tensors it received and the shape it
returned. Per-layer timing replays a leaf on its captured inputs in isolation (so the hooks never
sit inside a timed region), and the standard-conv twin uses the call order to find each
depthwise conv and the pointwise conv that consumes its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class ModuleCall:
    """The first call of one named module during a captured forward pass.

    Attributes:
        name: Qualified name in ``model.named_modules()`` (e.g. ``"features.3.conv_dw"``).
        module: The module itself.
        start: Position of the call's entry among all hook events of the pass.
        end: Position of the call's exit; ``start < end``, and a call nested inside another
            has both positions inside the outer call's ``[start, end]``.
        is_leaf: Whether the module has no child modules (it does its own compute).
        args: Positional inputs, detached; kept only for leaves when inputs are kept.
        kwargs: Keyword inputs, likewise.
        input_shapes: Shapes of the tensor positional inputs.
        output_shape: Shape of the output when it is a tensor, else ``None``.
        calls: How many times the module ran in the pass (shared modules run more than once).
        input_ptr: ``data_ptr()`` of the first tensor input: two calls with the same pointer
            read the same tensor (used to follow a tensor from module to module).
    """

    name: str
    module: nn.Module
    start: int
    end: int = -1
    is_leaf: bool = False
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shape: tuple[int, ...] | None = None
    calls: int = 0
    input_ptr: int | None = None


def _detach(value: Any) -> Any:
    # A copy, because an in-place op later in the pass (ReLU(inplace=True)) would rewrite it.
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def capture(model: nn.Module, *inputs: torch.Tensor, keep_inputs: bool = True) -> list[ModuleCall]:
    """Run ``model(*inputs)`` once with hooks and return its module calls in execution order.

    Only the first call of each module is described (``calls`` counts them all). The root module
    itself is not listed. Kept inputs are copies, so memory grows with the sum
    of the leaves' input activations: capture at a modest batch size.

    Args:
        model: Any module; it runs under :func:`torch.inference_mode` in its current mode
            (call ``model.eval()`` first for inference behaviour).
        inputs: The example input(s).
        keep_inputs: Keep each leaf's real inputs for replay (``False`` keeps only shapes).

    Returns:
        One :class:`ModuleCall` per module that ran, ordered by ``start``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> [(c.name, c.input_shapes) for c in capture(net, torch.randn(1, 3, 8, 8))]
        [('0', ((1, 3, 8, 8),)), ('1', ((1, 8, 6, 6),))]
    """
    events = 0
    seen: dict[nn.Module, ModuleCall] = {}

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal events
        call = seen.get(module)
        if call is None:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            is_leaf = next(module.children(), None) is None
            keep = keep_inputs and is_leaf
            call = seen[module] = ModuleCall(
                name=names[module],
                module=module,
                start=events,
                is_leaf=is_leaf,
                args=tuple(_detach(a) for a in args) if keep else (),
                kwargs={k: _detach(v) for k, v in kwargs.items()} if keep else {},
                input_shapes=tuple(tuple(a.shape) for a in tensors),
                input_ptr=tensors[0].data_ptr() if tensors else None,
            )
        call.calls += 1
        events += 1

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal events
        call = seen[module]
        if call.end < 0:
            call.end = events
            if isinstance(output, torch.Tensor):
                call.output_shape = tuple(output.shape)
        events += 1

    names = {module: name for name, module in model.named_modules() if name}
    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(seen.values(), key=lambda call: call.start)
