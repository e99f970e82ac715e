"""The model registry: one name per architecture, with its builder and published metadata.

A strict registry in the spirit of torchvision's ``models/_api.py``: registering a name twice
raises, an unknown name raises ``ValueError`` suggesting the closest registered names, and an
unknown keyword argument raises ``ValueError`` naming it before anything is built.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from torch import nn

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one registered model.

    Attributes:
        name: Registered name, e.g. ``"efficientnet_b0"``.
        builder: The keyword-only function that builds the model.
        input_size: Default (training/evaluation) input resolution in pixels, square.
        top1: Published ImageNet-1k top-1 accuracy in percent, single crop.
        source: Where ``top1`` was published.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    top1: float
    source: str


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *, input_size: int, top1: float, source: str, name: str | None = None
) -> Callable[[BuilderT], BuilderT]:
    """Register a keyword-only model builder under ``name`` (default: the function's name).

    The returned builder records its name and keyword arguments on the model it builds
    (``model.arch_name``, ``model.arch_kwargs``), which is what :func:`sepconv.save_model` writes
    so that a checkpoint can rebuild its model alone.

    Args:
        input_size: Default square input resolution in pixels.
        top1: Published ImageNet-1k top-1 accuracy (%).
        source: Citation for ``top1``.
        name: Registered name; defaults to ``builder.__name__``.

    Raises:
        ValueError: if the name is already registered.

    Example:
        >>> @register_model(input_size=32, top1=float("nan"), source="untrained", name="tiny")
        ... def tiny(*, num_classes: int = 10) -> nn.Module:
        ...     return nn.Linear(4, num_classes)
    """

    def decorator(builder: BuilderT) -> BuilderT:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(
                f"Invalid value for argument `name`: expected a name not yet registered, "
                f"received {key!r} (already registered by {_REGISTRY[key].builder.__module__})."
            )

        @functools.wraps(builder)
        def build(**kwargs: Any) -> nn.Module:
            model = builder(**kwargs)
            # setattr: plain attributes on an nn.Module, invisible to state_dict()
            setattr(model, "arch_name", key)  # noqa: B010
            setattr(model, "arch_kwargs", dict(kwargs))  # noqa: B010
            return model

        _REGISTRY[key] = ModelInfo(key, build, input_size, top1, source)
        return cast(BuilderT, build)

    return decorator


def get_model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model.

    Raises:
        ValueError: naming ``name`` and suggesting close registered names.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}: expected one of list_models() "
            f"({len(_REGISTRY)} registered).{hint}"
        )
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: A name from :func:`list_models`, e.g. ``"mobilenet_v2"``.
        **kwargs: Keyword arguments of that model's builder (``num_classes``, ``in_chans``,
            ``small_input``, ``drop_rate``, ``features_only``, ...).

    Returns:
        The model, in training mode, randomly initialised.

    Raises:
        ValueError: unknown ``name`` (with the closest names suggested).
        ValueError: a keyword the builder does not take (naming it and listing the valid ones).

    Example:
        >>> model = create_model("mobilenet_v2", num_classes=10, in_chans=1, small_input=True)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    info = get_model_info(name)
    valid = inspect.signature(info.builder).parameters
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"create_model({name!r}) received unknown keyword argument(s) "
            f"{', '.join(unknown)}; expected some of: {', '.join(valid)}."
        )
    return info.builder(**kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Return the registered model names, sorted, optionally filtered by a shell-style pattern.

    Example:
        >>> list_models("efficientnet_b[01]")
        ['efficientnet_b0', 'efficientnet_b1']
    """
    names = sorted(_REGISTRY)
    return names if pattern is None else fnmatch.filter(names, pattern)
