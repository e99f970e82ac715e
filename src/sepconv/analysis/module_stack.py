"""Which modules are in their forward right now: forward hooks on every submodule.

Both tracers of the package (the cost analyzer, :mod:`sepconv.analysis.analyzer`, and the latency
predictor's op trace, :mod:`sepconv.predict.trace`) attribute each op to the innermost module
running it; this is where that stack is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["module_stack"]


@contextmanager
def module_stack(
    model: nn.Module,
    enter: Callable[[str, nn.Module, tuple[Any, ...]], None],
    leave: Callable[[], object],
) -> Iterator[None]:
    """Call ``enter(name, module, inputs)`` as each submodule of ``model`` (itself included,
    named ``""``) starts its forward and ``leave()`` as it returns, while the block runs; the
    hooks are removed on leaving it, whatever happened.

    Example:
        >>> import torch
        >>> names = []
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> with module_stack(net, lambda name, m, x: names.append(name), lambda: None):
        ...     _ = net(torch.zeros(1, 2))
        >>> names
        ['', '0']
    """
    handles = []
    for module_name, module in model.named_modules():

        def push(mod: nn.Module, inputs: tuple[Any, ...], name: str = module_name) -> None:
            enter(name, mod, inputs)

        def pop(_mod: nn.Module, _inputs: Any, _output: Any) -> None:
            leave()

        handles.append(module.register_forward_pre_hook(push))
        handles.append(module.register_forward_hook(pop))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
