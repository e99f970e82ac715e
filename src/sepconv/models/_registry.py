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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from torch import nn

from sepconv.models.options import check_option_types
from sepconv.utils.validation import invalid

__all__ = [
    "ModelInfo",
    "create_model",
    "get_model_info",
    "list_models",
    "published_model_info",
    "register_model",
]

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])
ModelT = TypeVar("ModelT", bound=nn.Module)


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
# Per variant name: its family (the builder of the variant table) and the builder arguments that
# table varies, resolved to their values in this variant (defaults included).
_VARIANTS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


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
            owner = _REGISTRY[key].builder.__module__
            raise invalid(
                "name", "a name not yet registered", key, note=f" (already registered by {owner})"
            )

        @functools.wraps(builder)
        def build(**kwargs: Any) -> nn.Module:
            check_option_types(builder, kwargs)
            model = builder(**kwargs)
            # setattr: plain attributes on an nn.Module, invisible to state_dict()
            setattr(model, "arch_name", key)  # noqa: B010
            setattr(model, "arch_kwargs", dict(kwargs))  # noqa: B010
            return model

        _REGISTRY[key] = ModelInfo(key, build, input_size, top1, source)
        return cast(BuilderT, build)

    return decorator


@dataclass(frozen=True)
class Variant:
    """One registered variant of a model family: a row of that family's variant table.

    Attributes:
        name: Registered name, e.g. ``"mobilenet_v1_050"``.
        kwargs: Builder arguments the variant fixes (``{"width_mult": 0.5}``); they are not
            arguments of the variant's builder.
        input_size: Default square input resolution in pixels.
        top1: Published ImageNet-1k top-1 accuracy (%).
        source: Citation for ``top1``.
        defaults: Builder arguments the variant keeps but gives another default
            (``{"drop_rate": 0.3}``).
        doc: The builder's docstring; the family's ``describe`` writes it when omitted.
    """

    name: str
    kwargs: Mapping[str, Any]
    input_size: int
    top1: float
    source: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    doc: str | None = None


def register_variants(
    model: Callable[..., ModelT],
    variants: Iterable[Variant],
    *,
    module: str,
    describe: Callable[[Variant], str],
) -> dict[str, Callable[..., ModelT]]:
    """Register one keyword-only builder per row of a family's variant table.

    Each builder takes the keyword arguments of ``model`` (a model class or function) except the
    row's fixed ``kwargs``, with the row's ``defaults``; its signature, name, docstring and module
    are those a hand-written ``def`` in ``module`` would have, so ``help()`` and
    :func:`create_model`'s argument check see them.

    Args:
        model: Builds the model from keyword arguments, e.g. the class ``MobileNetV1``.
        variants: The family's variant table.
        module: The module the builders belong to (``__name__`` of the family's module).
        describe: Writes the docstring of a row without ``doc``.

    Returns:
        The registered builders by name, in table order.

    Example:
        >>> class Tiny(nn.Linear):
        ...     def __init__(self, *, width: int = 4, num_classes: int = 10) -> None:
        ...         super().__init__(width, num_classes)
        >>> rows = [Variant("tiny_w8", {"width": 8}, 32, float("nan"), "untrained")]
        >>> builders = register_variants(Tiny, rows, module=__name__, describe=lambda v: v.name)
        >>> builders["tiny_w8"](num_classes=3).in_features
        8
    """
    rows = list(variants)
    base = inspect.signature(model)
    varied = sorted({key for row in rows for key in row.kwargs})
    builders = {}
    for row in rows:
        builders[row.name] = _variant_builder(model, row, module, describe)
        _VARIANTS[row.name] = (
            model,
            {key: row.kwargs.get(key, base.parameters[key].default) for key in varied},
        )
    return builders


def _variant_builder(
    model: Callable[..., ModelT],
    row: Variant,
    module: str,
    describe: Callable[[Variant], str],
) -> Callable[..., ModelT]:
    base = inspect.signature(model)
    unknown = sorted(set(row.kwargs).union(row.defaults) - set(base.parameters))
    if unknown:
        raise invalid("variants", f"builder arguments of {model.__name__}", unknown)
    parameters = [
        p.replace(default=row.defaults.get(p.name, p.default))
        for p in base.parameters.values()
        if p.name not in row.kwargs
    ]
    # A class's signature has no return annotation; name the class as a hand-written def would.
    returns = model.__name__ if isinstance(model, type) else base.return_annotation
    signature = base.replace(parameters=parameters, return_annotation=returns)

    def builder(**kwargs: Any) -> ModelT:
        bound = signature.bind(**kwargs)  # TypeError for an unknown keyword, as a def raises
        bound.apply_defaults()
        return model(**row.kwargs, **bound.arguments)

    builder.__signature__ = signature  # type: ignore[attr-defined]
    builder.__name__ = builder.__qualname__ = row.name
    builder.__module__ = module
    builder.__doc__ = row.doc if row.doc is not None else describe(row)
    register = register_model(input_size=row.input_size, top1=row.top1, source=row.source)
    return register(builder)


def published_model_info(name: str, kwargs: Mapping[str, Any]) -> ModelInfo | None:
    """The :class:`ModelInfo` whose published figures describe ``name`` built with ``kwargs``.

    A builder argument that its family's variant table varies (``width_mult`` for MobileNet)
    selects the variant: ``mobilenet_v1`` with ``width_mult=0.25`` is published as
    ``mobilenet_v1_025``. Arguments no table varies (``zero_init_residual``, ``drop_rate``)
    keep the model's own entry.

    Returns:
        That variant's info, or ``None`` when ``kwargs`` build a variant nobody published
        (``width_mult=0.3``): then no published figure applies.

    Example:
        >>> published_model_info("mobilenet_v1", {"width_mult": 0.25}).name
        'mobilenet_v1_025'
        >>> published_model_info("mobilenet_v1", {"width_mult": 0.3}) is None
        True
    """
    info = get_model_info(name)
    if name not in _VARIANTS:
        return info
    family, fixed = _VARIANTS[name]
    wanted = {key: kwargs.get(key, value) for key, value in fixed.items()}
    for variant, (other_family, values) in _VARIANTS.items():
        if other_family is family and values == wanted:
            return _REGISTRY[variant]
    return None


def get_model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of a registered model.

    Raises:
        ValueError: naming ``name`` and suggesting close registered names.
    """
    if not isinstance(name, str):
        raise invalid("name", "a registered model name such as 'mobilenet_v2'", name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        # Worded for both audiences: `sepconv zoo` and list_models print the same names.
        raise ValueError(
            f"Unknown model name {name!r}: expected one of the {len(_REGISTRY)} registered "
            f"models (`sepconv zoo` lists them).{hint}"
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
