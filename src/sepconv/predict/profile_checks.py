"""Checks of a profile file's fields: the file is read as untrusted input, and every field is
checked for type and range before a :class:`~sepconv.predict.profile.Profile` is made of it."""

from __future__ import annotations

import json
import math
from typing import Any

from sepconv.predict.kernels import KINDS, Kernel

__all__ = ["MAX_DIM", "Checker", "ProfileError", "no_constant"]

#: The largest size a kernel's shape may hold.
MAX_DIM = 1 << 20


class ProfileError(ValueError):
    """A profile file that cannot be used: unreadable, malformed, modified, or made elsewhere."""


def no_constant(name: str) -> None:
    # NaN and Infinity are no measurement; json.loads would accept them.
    raise json.JSONDecodeError(f"{name} is not a number a profile may hold", name, 0)


class Checker:
    """Type and range checks of a profile's fields, raising :class:`ProfileError`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, what: str, expected: str, received: object) -> ProfileError:
        shown = repr(received)
        shown = shown if len(shown) < 80 else shown[:77] + "..."
        return ProfileError(
            f"{self.source}: {what} should be {expected}, found {shown}; the file is damaged: "
            "calibrate again."
        )

    def mapping(self, value: object, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(what, "an object", value)
        return value

    def sequence(self, value: object, what: str, limit: int = 10_000) -> list[Any]:
        if not isinstance(value, list) or len(value) > limit:
            raise self.fail(what, f"a list of at most {limit:,} items", value)
        return value

    def string(self, value: object, what: str) -> str:
        if not isinstance(value, str) or len(value) > 200:
            raise self.fail(what, "a short string", value)
        return value

    def integer(self, value: object, what: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(what, f"an integer from {low} to {high}", value)
        return value

    def seconds(self, value: object, what: str) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or not -1.0 < float(value) < 3600.0:  # type: ignore[arg-type]
            raise self.fail(what, "a finite number of seconds", value)
        return float(value)  # type: ignore[arg-type]

    def factor(self, value: object, what: str) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or not 0.0 <= float(value) <= 100.0:  # type: ignore[arg-type]
            raise self.fail(what, "a finite factor from 0 to 100", value)
        return float(value)  # type: ignore[arg-type]

    def shape(self, value: object, what: str) -> tuple[int, ...]:
        items = self.sequence(value, what, 4)
        if len(items) < 2:
            raise self.fail(what, "a shape of 2 to 4 sizes", value)
        return tuple(self.integer(d, what, 1, MAX_DIM) for d in items)

    def kernel(self, value: object) -> Kernel:
        data = self.mapping(value, "a sample's kernel")
        kind = data.get("kind")
        if kind not in KINDS:
            raise self.fail("a kernel's kind", f"one of {', '.join(KINDS)}", kind)
        inputs = [
            self.shape(s, "a kernel's input shape")
            for s in self.sequence(data.get("inputs"), "inputs", 4)
        ]
        if not inputs:
            raise self.fail("a kernel's inputs", "at least one shape", data.get("inputs"))
        checked: dict[str, Any] = {
            "kind": kind,
            "inputs": inputs,
            "output": self.shape(data.get("output"), "a kernel's output shape"),
        }
        for name in ("kernel_size", "stride", "dilation", "groups"):
            checked[name] = self.integer(data.get(name, 1), f"a kernel's {name}", 1, MAX_DIM)
        for name in ("padding", "hidden"):
            checked[name] = self.integer(data.get(name, 0), f"a kernel's {name}", 0, MAX_DIM)
        for name in ("act", "gate"):
            checked[name] = self.string(data.get(name, ""), f"a kernel's {name}")
        for name in ("add", "transposed"):
            if not isinstance(data.get(name, False), bool):
                raise self.fail(f"a kernel's {name}", "true or false", data.get(name))
            checked[name] = data.get(name, False)
        return Kernel.from_dict(checked)
