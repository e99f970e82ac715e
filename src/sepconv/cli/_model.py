"""The ``MODEL`` argument shared by the sub-commands: a registry name or ``module:attr``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def resolve_model(spec: str) -> tuple[nn.Module, int | None]:
    """Build the model ``spec`` names: a registry name, or ``module:attr``.

    ``attr`` (dotted paths allowed) may be an ``nn.Module`` instance or a callable returning one;
    ``module`` is looked up from the working directory too. Returns the model and its registered
    input side (``None`` for user models).
    """
    from torch import nn

    from sepconv.models import create_model, get_model_info

    if ":" not in spec:
        return create_model(spec), get_model_info(spec).input_size
    module_name, _, attr = spec.partition(":")
    # A console script does not put the working directory on sys.path; users expect
    # `mynet:Net` to find ./mynet.py, as `python -m` would.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"Invalid value for argument `model`: expected 'module:attr' naming an importable "
            f"module; cannot import module {module_name!r} from {spec!r} ({err})."
        ) from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"Invalid value for argument `model`: module {module_name!r} has no attribute "
                f"{attr!r} (from {spec!r})."
            )
        target = getattr(target, part)
    model = target if isinstance(target, nn.Module) else target() if callable(target) else None
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"Invalid value for argument `model`: expected {spec!r} to be an nn.Module or a "
            f"callable returning one, received {type(model).__name__}."
        )
    return model, None
