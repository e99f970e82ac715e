"""Which ops a backend fuses, found by test cases as nn-Meter finds them.

A fusion cannot be read off a runtime's documentation reliably (ONNX Runtime fuses a conv with
ReLU, ReLU6, hard-swish or a sigmoid but runs SiLU's ``Sigmoid, Mul`` as a kernel of its own;
eager PyTorch fuses nothing). So each candidate pair ``A -> B`` (a conv and the activation after
it; a linear conv and the residual add after it) is timed three ways, each op alone and the
two in one graph, all without the calibration's sandwich and less the cost of an empty call:
the pair is *fused* when running it together saves at least half of ``B``'s own time,
``T(A) + T(B) - T(A -> B) >= T(B) / 2`` (Zhang et al., "nn-Meter", MobiSys 2021, Section 4.1).
Each time is the median of :data:`ROUNDS` interleaved rounds, and each candidate is tested on a
pointwise and a depthwise conv: it counts as fused only when both say so. The verdicts and
their times go into the profile.

Where the runtime shows the graph it will execute (ONNX Runtime writes its optimised graph:
:meth:`sepconv.predict.timers.OnnxTimer.plan_fuses`), the same test cases are read from that
plan instead of timed: the pair is fused when none of the second op's nodes is left beside the
convs. On a host whose speed changes within seconds, the timed verdicts of two calibrations
disagreed (one found only ``conv+relu``, the next only ``conv+hardsigmoid``), while the plan
says the same every time: between convs in its blocked layout (NCHWc, as inside a model) ONNX
Runtime fuses ReLU, ReLU6, hard-swish, hard-sigmoid, sigmoid and the residual add into the
conv, and runs SiLU (as ``QuickGelu``) and GELU as kernels of their own.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sepconv.predict.kernels import ACTS, Kernel

__all__ = ["FUSION_CASES", "FusionCase", "FusionVerdict", "detect_fusions"]

#: Interleaved rounds each test case is timed in.
ROUNDS = 3
# Convs of an early MobileNet layer, whose few MACs per output make the activation after them
# a large share of the pair, so that its fusion shows well above the timing noise.
_PW = Kernel("conv", ((1, 16, 56, 56),), (1, 32, 56, 56))
_DW = Kernel("conv", ((1, 64, 56, 56),), (1, 64, 56, 56), kernel_size=3, padding=1, groups=64)
_PWL = Kernel("conv", ((1, 64, 56, 56),), (1, 16, 56, 56))


@dataclass(frozen=True)
class FusionCase:
    """One test: does the backend fuse ``second`` into ``first``? ``name`` is the rule the
    kernel extraction reads (``"conv+relu6"``, ``"conv+add"``)."""

    name: str
    first: Kernel
    second: Kernel


def _act_cases(act: str) -> list[FusionCase]:
    return [
        FusionCase(f"conv+{act}", conv, Kernel("act", (conv.output,), conv.output, act=act))
        for conv in (_PW, _DW)
    ]


FUSION_CASES: tuple[FusionCase, ...] = (
    *(case for act in ACTS for case in _act_cases(act)),
    FusionCase("conv+add", _PWL, Kernel("add", (_PWL.output, _PWL.output), _PWL.output)),
    FusionCase("conv+add", _PW, Kernel("add", (_PW.output, _PW.output), _PW.output)),
)


@dataclass(frozen=True)
class FusionVerdict:
    """One test case's verdict: from its times (seconds, less an empty call) or, where the
    runtime shows its plan, from that (``planned``; no times)."""

    name: str
    first_s: float | None = None
    second_s: float | None = None
    pair_s: float | None = None
    planned: bool | None = None

    @property
    def saved_share(self) -> float | None:
        """The share of ``second``'s own time that running the pair together saved."""
        if self.first_s is None or self.second_s is None or self.pair_s is None:
            return None
        return (self.first_s + self.second_s - self.pair_s) / max(self.second_s, 1e-9)

    @property
    def fused(self) -> bool:
        if self.planned is not None:
            return self.planned
        share = self.saved_share
        return share is not None and share >= 0.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": "plan" if self.planned is not None else "timing",
            "first_s": self.first_s,
            "second_s": self.second_s,
            "pair_s": self.pair_s,
            "saved_share": self.saved_share,
            "fused": self.fused,
        }


def detect_fusions(
    time_isolated: Callable[[Sequence[Kernel]], float],
    cases: Sequence[FusionCase] = FUSION_CASES,
    deadline: float = float("inf"),
    plan_fuses: Callable[[Sequence[Kernel]], bool | None] | None = None,
) -> tuple[list[str], list[FusionVerdict]]:
    """Run the test cases; the names of the fused pairs, and every case's verdict.

    Args:
        time_isolated: Seconds of a chain of kernels run on its own (no sandwich), less an
            empty call.
        cases: The tests (default: every activation after a pointwise and a depthwise conv,
            and the residual add after a linear conv).
        deadline: ``time.perf_counter()`` past which no further round starts (at least one
            round always runs); a pair is then judged on the rounds it had.
        plan_fuses: Whether the runtime's plan of a chain runs it as its convs alone (``None``
            where the runtime does not show it). Given, every case is judged by it and
            nothing is timed.

    Example:
        >>> fake = lambda ks: 1.0 if len(ks) == 2 else 1.0 if ks[0].kind == "conv" else 0.3
        >>> fused, _ = detect_fusions(fake)
        >>> fused[:2]
        ['conv+relu', 'conv+relu6']
    """
    if plan_fuses is not None:
        planned = [plan_fuses([case.first, case.second]) for case in cases]
        if all(p is not None for p in planned):
            verdicts = [
                FusionVerdict(c.name, planned=p) for c, p in zip(cases, planned, strict=True)
            ]
            return _fused_names(verdicts), verdicts
    times: list[list[list[float]]] = [[[], [], []] for _ in cases]
    for round_index in range(ROUNDS):
        if round_index and time.perf_counter() > deadline:
            break
        for case, (first, second, pair) in zip(cases, times, strict=True):
            first.append(time_isolated([case.first]))
            second.append(time_isolated([case.second]))
            pair.append(time_isolated([case.first, case.second]))
    verdicts = [
        FusionVerdict(
            case.name, statistics.median(first), statistics.median(second), statistics.median(pair)
        )
        for case, (first, second, pair) in zip(cases, times, strict=True)
    ]
    return _fused_names(verdicts), verdicts


def _fused_names(verdicts: Sequence[FusionVerdict]) -> list[str]:
    """The rules whose every case was judged fused."""
    names = list(dict.fromkeys(v.name for v in verdicts))
    return [n for n in names if all(v.fused for v in verdicts if v.name == n)]
