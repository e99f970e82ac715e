"""TrainConfig refuses every bad numeric field, naming it: wrong type, NaN, inf, out of range."""

from __future__ import annotations

import math

import pytest

from sepconv.train.config import TrainConfig

NAN, INF = math.nan, math.inf

# field -> values that must be refused (wrong type, non-finite, out of range)
BAD = {
    "epochs": [0, -1, 2.0, True, "3", None],
    "batch_size": [0, -8, 16.0, "16"],
    "eval_batch_size": [0, 1.5],
    "seed": [-1, 0.5, "0"],
    "checkpoint_every": [-1, 2.0],
    "lr": [0, 0.0, -0.1, NAN, INF, -INF, "0.1", None, True],
    "momentum": [-0.1, 1.0, 1.5, NAN, INF, "0.9"],
    "weight_decay": [-1e-4, NAN, INF, "0"],
    "warmup_epochs": [-1, NAN, INF, None],
    "label_smoothing": [-0.1, 1.0, NAN, INF],
    "ema_decay": [-0.5, 1.0, NAN, INF, "0.9"],
    "clip_grad_norm": [-1.0, NAN, INF, "1"],
    "distill_temperature": [0, -1.0, NAN, INF],
    "distill_alpha": [-0.1, 1.01, NAN, INF],
    "channels_last": [1, "yes"],
    "optimizer": ["lamb", None],
    "amp": ["fp8"],
}

CASES = [(field, value) for field, values in BAD.items() for value in values]


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v!r}" for f, v in CASES])
def test_bad_field_is_refused_naming_it(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"Invalid value for argument `{field}`: expected .*"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("value", [NAN, INF])
def test_non_finite_value_is_called_out(value: float) -> None:
    with pytest.raises(ValueError, match=r"`lr`: expected > 0, received (nan|inf) \(not finite\)"):
        TrainConfig(lr=value)


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("momentum", r"`momentum`: expected a value in \[0, 1\), received 1.0\."),
        ("label_smoothing", r"`label_smoothing`: expected a value in \[0, 1\), received 1.0\."),
        ("ema_decay", r"`ema_decay`: expected a value in \[0, 1\), received 1.0\."),
    ],
)
def test_open_upper_bound(field: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: 1.0})


def test_weight_decay_wording() -> None:
    with pytest.raises(ValueError, match=r"`weight_decay`: expected >= 0, received -1\."):
        TrainConfig(weight_decay=-1)


def test_wrong_type_echoes_the_value() -> None:
    with pytest.raises(ValueError, match=r"`lr`: expected > 0, received '0.1'\."):
        TrainConfig(lr="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`epochs`: expected a positive integer, received 2.0"):
        TrainConfig(epochs=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"lr": 1, "momentum": 0, "weight_decay": 0, "warmup_epochs": 0, "clip_grad_norm": 0},
        {"label_smoothing": 0.0, "ema_decay": 0.999, "distill_alpha": 1.0},
        {"distill_alpha": 0.0, "distill_temperature": 0.5, "momentum": 0.99},
        {"epochs": 1, "batch_size": 1, "seed": 0, "checkpoint_every": 0, "clip_grad_norm": 5.0},
        {"optimizer": "adamw", "amp": "off", "channels_last": False, "warmup_epochs": 0.5},
    ],
)
def test_boundary_values_are_accepted(kwargs: dict[str, object]) -> None:
    config = TrainConfig(**kwargs)  # type: ignore[arg-type]
    assert TrainConfig.from_dict(config.to_dict()) == config
