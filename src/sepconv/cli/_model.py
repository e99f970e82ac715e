"""The ``MODEL`` argument shared by the sub-commands (a registry name or ``module:attr``), and
the models that sepconv's files record."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from sepconv.modelfile.record import ModelRecord


def resolve_model(spec: str) -> tuple[nn.Module, int | None]:
    """Build the model ``spec`` names: a registry name, or ``module:attr``.

    ``attr`` (dotted paths allowed) may be an ``nn.Module`` instance or a callable returning one;
    ``module`` is looked up from the working directory too. Returns the model and its registered
    input side (``None`` for user models).
    """
    from torch import nn

    from sepconv.models import create_model, get_model_info
    from sepconv.utils.validation import invalid

    if ":" not in spec:
        return create_model(spec), get_model_info(spec).input_size
    module_name, _, attr = spec.partition(":")
    # A console script does not put the working directory on sys.path; users expect
    # `mynet:Net` to find ./mynet.py, as `python -m` would.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except Exception as err:  # the user's module ran: any error of theirs, shown as theirs
        raise invalid(
            "model",
            "'module:attr' naming an importable module",
            spec,
            note=f"; cannot import module {module_name!r}: {_user_error(err)}",
        ) from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise invalid(
                "model",
                "'module:attr' naming an attribute of the module",
                spec,
                note=f"; module {module_name!r} has no attribute {attr!r}",
            )
        target = getattr(target, part)
    model: object = target
    if not isinstance(target, nn.Module) and callable(target):
        try:
            model = target()
        except Exception as err:
            raise invalid(
                "model",
                f"{spec!r} to be an nn.Module or a callable returning one, with no arguments",
                spec,
                note=f"; calling {attr}() raised {_user_error(err, target)}",
            ) from err
    if not isinstance(model, nn.Module):
        raise invalid(
            "model",
            f"{spec!r} to be an nn.Module or a callable returning one",
            type(model).__name__,
        )
    return model, None


def is_model_file(path: Path | None) -> bool:
    """Whether ``path`` is a ``.safetensors`` file that sepconv wrote (it records its model)."""
    if path is None or path.suffix != ".safetensors" or not path.is_file():
        return False
    from sepconv.modelfile.format import LEGACY_CONVERT_KEY, METADATA_KEY, read_safetensors

    _, metadata = read_safetensors(path)
    return METADATA_KEY in metadata or LEGACY_CONVERT_KEY in metadata


def trained_model(
    spec: str, weights: Path, default_kwargs: Callable[[], dict[str, Any]] | None = None
) -> tuple[nn.Module, ModelRecord]:
    """Rebuild the model a sepconv file records, checked against the ``MODEL`` argument.

    Args:
        spec: The ``MODEL`` argument: must name the file's architecture when it records one;
            for a file of a user-built model, a registry name or ``module:attr`` to build.
        weights: A model file (:mod:`sepconv.modelfile.format`): weights or a checkpoint, whose
            EMA weights are used when present.
        default_kwargs: Called for the builder arguments of a file that records none (only
            then, so that its work, e.g. loading data, is done only when needed).

    Returns:
        The model with the file's weights, and the file's record (normalisation, classes...).
    """
    from dataclasses import replace

    from sepconv.modelfile.format import read_model_file
    from sepconv.modelfile.weights import load_weights
    from sepconv.utils.validation import invalid

    file = read_model_file(weights)
    record = file.record
    if record.arch is not None and record.arch != spec:
        raise invalid(
            "model",
            f"the architecture the weights {weights} were trained for {record.arch!r}",
            spec,
        )
    if record.arch is None and ":" in spec:
        model, _ = resolve_model(spec)
    else:
        if record.arch is None:
            fallback = default_kwargs() if default_kwargs is not None else {}
            record = replace(record, arch=spec, kwargs=record.kwargs or fallback)
        model = record.build(origin=str(weights))
    load_weights(model, file.model_tensors(), format="sepconv")
    return model, record


def _user_error(err: BaseException, called: object = None) -> str:
    """``err`` with where it happened in the user's code: ``"Name: message (file.py, line 3)"``.

    The innermost traceback frame outside sepconv and importlib, or, when the error is raised
    at the call itself (a missing argument), the definition of ``called``.
    """
    import inspect
    import traceback

    text = f"{type(err).__name__}: {err}"
    if isinstance(err, SyntaxError):
        return text  # its message already says "(file.py, line N)"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not f.filename.startswith((here, "<frozen"))
        and os.sep + "importlib" + os.sep not in f.filename
    ]
    if frames:
        return f"{text} ({frames[-1].filename}, line {frames[-1].lineno})"
    try:
        source = inspect.getsourcefile(called)  # type: ignore[arg-type]
        line = inspect.getsourcelines(called)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return text
    return f"{text} ({source}, line {line})"


def trained_side(record: ModelRecord, weights: Path, asked: int | None) -> int | None:
    """The image side to read data at for these weights: ``asked`` (``--image-size``) when
    given, else the side their file records they were trained at (``sepconv train`` writes
    it), else ``None`` (the data's own size)."""
    from sepconv.utils.validation import MAX_SIDE, invalid

    if asked is not None:
        return asked
    side = record.provenance.get("image_size")
    if side is None:
        return None
    if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
        raise invalid(
            "--weights",
            f"a file recording an image side from 1 to {MAX_SIDE}",
            str(weights),
            note=f", which records {side!r}; pass --image-size",
        )
    return side
