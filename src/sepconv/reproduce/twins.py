"""Standard twins against their separable rows: cost and latency ratios, the accuracy gap and
the verdicts against the tolerances below.

A :class:`TwinSummary` pairs two :class:`~sepconv.reproduce.summary.RowSummary` rows built by
:func:`sepconv.reproduce.table.summarize` from the same model, arguments, recipe and data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sepconv.reproduce.summary import RowSummary

__all__ = ["HOWARD_TABLE_4", "TWIN_ACCURACY_TOLERANCE", "TWIN_MIN_RATIO", "TwinSummary"]

# Howard et al., "MobileNets" (arXiv:1704.04861), Table 4: the same network with standard
# convolutions ("Conv MobileNet") against depthwise separable ones, ImageNet top-1.
HOWARD_TABLE_4 = (
    "Howard et al. 2017, Table 4 (ImageNet): Conv MobileNet 71.7% top-1, 4866M mult-adds, "
    "29.3M params; MobileNet 70.6%, 569M, 4.2M."
)
TWIN_ACCURACY_TOLERANCE = 0.5  # points of test accuracy
TWIN_MIN_RATIO = 7.0  # standard / separable params and MACs


@dataclass(frozen=True)
class TwinSummary:
    """A separable row against its standard twin (same model, arguments, recipe and data)."""

    separable: RowSummary
    standard: RowSummary

    @property
    def param_ratio(self) -> float:
        """Standard params / separable params."""
        return self.standard.cost.params / self.separable.cost.params

    @property
    def mac_ratio(self) -> float:
        """Standard MACs / separable MACs."""
        return self.standard.cost.macs / self.separable.cost.macs

    def latency_ratio(self, batch: int) -> float | None:
        """Standard median latency / separable median latency at ``batch``."""
        if batch not in self.separable.latency or batch not in self.standard.latency:
            return None
        return self.standard.latency[batch].median_s / self.separable.latency[batch].median_s

    @property
    def acc_gap(self) -> float | None:
        """Separable mean minus standard mean test accuracy, in points."""
        a, b = self.separable.acc_mean, self.standard.acc_mean
        return None if a is None or b is None else a - b

    @property
    def cost_verdict(self) -> str:
        """Whether the separable twin has at least 7x fewer params and MACs."""
        ok = min(self.param_ratio, self.mac_ratio) >= TWIN_MIN_RATIO
        return (
            f"{self.param_ratio:.1f}x fewer params, {self.mac_ratio:.1f}x fewer MACs "
            f"({'at least' if ok else 'below'} {TWIN_MIN_RATIO:g}x)"
        )

    @property
    def accuracy_verdict(self) -> str:
        """How the mean accuracies compare against the 0.5-point tolerance, in words."""
        gap = self.acc_gap
        if gap is None:
            return "not run"
        if abs(gap) <= TWIN_ACCURACY_TOLERANCE:
            return f"within {TWIN_ACCURACY_TOLERANCE} points ({gap:+.2f})"
        side = "lower" if gap < 0 else "higher"
        return (
            f"not within {TWIN_ACCURACY_TOLERANCE} points: the separable twin is "
            f"{abs(gap):.2f} points {side}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "separable": self.separable.name,
            "standard": self.standard.name,
            "param_ratio": self.param_ratio,
            "mac_ratio": self.mac_ratio,
            "latency_ratio": {
                str(b): self.latency_ratio(b) for b in sorted(self.separable.latency)
            },
            "acc_gap_points": self.acc_gap,
            "cost_verdict": self.cost_verdict,
            "accuracy_verdict": self.accuracy_verdict,
        }
