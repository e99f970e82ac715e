"""The checks of a sweep config's keys, in one wording: file, key, expected, received.

:class:`KeyChecker` checks single values; :func:`recipe_from` and :func:`model_kwargs_from`
check a row's recipe changes and builder arguments against what they apply to.

Unlike :func:`sepconv.utils.validation.invalid`, which names an argument, these errors name the
config file and the key in it, so that the fix is one edit away.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sepconv.models import get_model_info
from sepconv.train.config import TrainConfig

# Set by the sweep from the data, never by a row: the model must fit the dataset.
SWEEP_MODEL_ARGS = ("num_classes", "in_chans", "small_input", "features_only")


MAX_SEEDS = 1000
"""Most seeds a row may have: more is a typo, and each seed is a whole training run."""
_REQUIRED = object()  # KeyChecker.integer without a default: the key must be there


class KeyChecker:
    """Type and range checks of the keys of one config file, raising ``ValueError``.

    Args:
        path: The config file, named in every message.

    Example:
        >>> KeyChecker(Path("sweep.toml")).integer({"seeds": 3}, "seeds", "row[1].", minimum=1)
        3
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, expected: str, received: object) -> ValueError:
        return ValueError(
            f"{self.path}: invalid value for key `{key}`: expected {expected}, received "
            f"{received!r}. Fix the key in the config file."
        )

    def known(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            place = f" in {where}" if where else ""
            raise ValueError(
                f"{self.path}: unknown key(s) {', '.join(map(repr, unknown))}{place}; expected "
                f"some of: {', '.join(allowed)}."
            )

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        minimum: int,
        maximum: int | None = None,
        default: Any = _REQUIRED,
    ) -> Any:
        """``table[key]`` if an integer in range; ``default`` when absent (if given)."""
        if key not in table and default is not _REQUIRED:
            return default
        value = table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            too_large = maximum is not None and isinstance(value, int) and value > maximum
            expected = (
                f"an integer from {minimum} to {maximum}"
                if too_large
                else f"an integer >= {minimum}"
            )
            raise self.error(f"{where}{key}", expected, value)
        return value

    def number(self, table: Mapping[str, Any], key: str, where: str) -> float:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.error(f"{where}{key}", "a positive number", value)
        return float(value)

    def fraction(self, table: Mapping[str, Any], key: str, where: str) -> float:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise self.error(f"{where}{key}", "a number from 0 to 1", value)
        return float(value)

    def string(self, table: Mapping[str, Any], key: str, where: str) -> str:
        value = table[key]
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}{key}", "a non-empty string", value)
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: str) -> bool:
        value = table[key]
        if not isinstance(value, bool):
            raise self.error(f"{where}{key}", "true or false", value)
        return value

    def table(self, table: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"{where}{key}", "a table", value)
        return value


FIELD_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def recipe_from(
    check: KeyChecker, table: Mapping[str, Any], where: str, base: TrainConfig
) -> TrainConfig:
    """Return ``base`` with the keys of ``table`` applied, each type-checked against TrainConfig.

    Args:
        check: The checker of the config file.
        table: The ``[recipe]`` table, or a row's ``recipe = { ... }``.
        where: Prefix of the keys in messages, e.g. ``"row[2].recipe."``.
        base: The recipe the keys change.

    Example:
        >>> recipe_from(KeyChecker(Path("s.toml")), {"epochs": 2}, "recipe.", TrainConfig()).epochs
        2
    """
    # Fields of other types are left to TrainConfig's own checks.
    kinds = {f.name: FIELD_TYPES.get(str(f.type)) for f in fields(TrainConfig)}
    if "seed" in table:
        raise ValueError(
            f"{check.path}: key `{where}seed` is not allowed: each run's seed comes from the "
            "row's `seeds` (runs use seeds 0 .. seeds-1); remove the key."
        )
    check.known(table, tuple(k for k in kinds if k != "seed"), f"`{where.rstrip('.')}`")
    for key, value in table.items():
        kind = kinds[key]
        if kind is None:
            continue
        ok = (
            isinstance(value, bool)
            if kind is bool
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, kind) and not isinstance(value, bool)
        )
        if not ok:
            raise check.error(f"{where}{key}", f"a value of type {kind.__name__}", value)
    values: dict[str, Any] = {k: float(v) if kinds[k] is float else v for k, v in table.items()}
    try:
        return replace(base, **values)
    except ValueError as err:
        raise ValueError(f"{check.path}: in `{where.rstrip('.')}`: {err}") from err


def model_kwargs_from(
    check: KeyChecker, row: Mapping[str, Any], where: str, model: str
) -> dict[str, Any]:
    """Return the ``model_kwargs`` table of ``row``, each key an argument of ``model``'s builder.

    The sweep sets :data:`SWEEP_MODEL_ARGS` from the data, so a row may not.
    """
    kwargs = check.table(row, "model_kwargs", where)
    try:
        builder = get_model_info(model).builder
    except ValueError as err:
        raise ValueError(f"{check.path}: invalid value for key `{where}model`: {err}") from err
    valid = [p for p in inspect.signature(builder).parameters if p not in SWEEP_MODEL_ARGS]
    for key in kwargs:
        if key in SWEEP_MODEL_ARGS:
            raise ValueError(
                f"{check.path}: key `{where}model_kwargs.{key}` is not allowed: the sweep sets "
                f"{', '.join(SWEEP_MODEL_ARGS)} from the data; remove it."
            )
    check.known(kwargs, tuple(valid), f"`{where}model_kwargs` (arguments of {model})")
    return kwargs
