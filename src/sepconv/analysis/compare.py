"""``compare_conv``: standard vs grouped vs depthwise separable cost of one layer, in closed form.

Every number comes from :func:`~sepconv.analysis.counting.conv_macs` and the tensor sizes, so
it can be checked against ``analyze`` or ``FlopCounterMode`` on real ``nn.Conv2d`` modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Group
from rich.text import Text

from sepconv.analysis.counting import CONVENTIONS, conv_kind, conv_macs
from sepconv.analysis.report import format_count
from sepconv.utils.tables import Column, FitTable
from sepconv.utils.validation import invalid, positive_int


@dataclass(frozen=True)
class ConvCost:
    """Cost of one convolution (bias-free, as when a norm follows it).

    Attributes:
        label: what the row is (``standard``, ``grouped g=4``, ``depthwise``, ...).
        kind: conv kind as :func:`sepconv.analysis.counting.conv_kind` classifies it.
        in_channels, out_channels, kernel_size, groups: the convolution.
        params, macs, flops: weights, multiply-adds and ``2 * macs`` for one image.
        bytes_moved: weights + input + output activations, each touched once.
        intensity: FLOPs per byte moved.
    """

    label: str
    kind: str
    in_channels: int
    out_channels: int
    kernel_size: int
    groups: int
    params: int
    macs: int
    flops: int
    bytes_moved: int
    intensity: float


@dataclass(frozen=True)
class ConvComparison:
    """Result of :func:`compare_conv`: one :class:`ConvCost` per variant plus the ratios.

    Attributes:
        rows: standard, each requested grouped variant, depthwise, pointwise, and the
            depthwise separable total (depthwise + pointwise, intermediate written and read).
        mac_ratio, param_ratio: separable / standard.
        closed_form: ``1 / C_out + 1 / K^2`` (Howard et al., arXiv:1704.04861, Sec. 3.1).
        reduction: ``1 / mac_ratio``, "8.4x fewer MACs".
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    height: int
    width: int
    stride: int
    dtype: str
    rows: list[ConvCost]
    mac_ratio: float
    param_ratio: float
    closed_form: float
    reduction: float

    def row(self, label: str) -> ConvCost:
        """The row called ``label``; ValueError listing the labels if there is none."""
        for row in self.rows:
            if row.label == label:
                return row
        raise invalid("label", f"one of {[r.label for r in self.rows]}", label)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON types, conventions first."""
        return {"conventions": self._notes(), **asdict(self)}

    def to_json(self, indent: int | None = 2) -> str:
        """The comparison as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One CSV line per variant, conventions and ratios as ``#`` lines on top."""
        names = list(ConvCost.__dataclass_fields__)
        lines = [f"# {line}" for line in self._notes()]
        lines.append(",".join(names))
        lines += [",".join(str(getattr(r, n)) for n in names) for r in self.rows]
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        """The comparison as a Markdown table with the conventions and ratios."""
        header, body = self._table()
        lines = [f"# {self._title()}", "", *(f"- {n}" for n in self._notes()), ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Group:
        """Rich renderable: the table, then ratios and conventions."""
        header, body = self._table()
        columns = {
            "variant": Column("variant", "left"),
            "kind": Column("kind", "left", drop=1),
            "groups": Column("groups", short="g"),
            "FLOPs": Column("FLOPs", drop=2),
            "bytes moved": Column("bytes moved", short="bytes"),
        }
        table = FitTable(self._title(), [columns.get(h, Column(h)) for h in header], body)
        return Group(table, *(Text(n) for n in self._notes()))

    def _title(self) -> str:
        return (
            f"{self.kernel_size}x{self.kernel_size} conv, {self.in_channels} -> "
            f"{self.out_channels} channels at {self.height}x{self.width}, stride {self.stride}"
        )

    def _notes(self) -> list[str]:
        return [
            f"separable / standard MACs = {self.mac_ratio:.4f} ({self.reduction:.1f}x fewer); "
            f"params {self.param_ratio:.4f}; closed form 1/C_out + 1/K^2 = "
            f"{self.closed_form:.4f}",
            CONVENTIONS[0],
            CONVENTIONS[3] + f" Bytes are for {self.dtype}; no bias.",
        ]

    def _table(self) -> tuple[list[str], list[list[str]]]:
        header = ["variant", "kind", "groups", "params", "MACs", "FLOPs", "bytes moved", "FLOP/B"]
        body = [
            [
                r.label,
                r.kind,
                str(r.groups),
                format_count(r.params),
                format_count(r.macs),
                format_count(r.flops),
                format_count(r.bytes_moved, "B"),
                f"{r.intensity:.1f}",
            ]
            for r in self.rows
        ]
        return header, body


def compare_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    height: int = 56,
    width: int | None = None,
    *,
    groups: Sequence[int] = (2, 4),
    stride: int = 1,
    dtype: torch.dtype = torch.float32,
) -> ConvComparison:
    """Compare a standard KxK convolution with grouped and depthwise separable ones.

    The separable layer is a KxK depthwise conv (``groups = C_in``) followed by a 1x1 pointwise
    conv; its MACs over the standard conv's are ``1/C_out + 1/K^2`` (Howard et al.,
    "MobileNets", arXiv:1704.04861, eq. 5). Padding is "same", ``(K - 1) // 2``.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: K (square kernel). Default 3.
        height: input height H. Default 56.
        width: input width W; defaults to ``height``.
        groups: grouped variants to add, each dividing C_in and C_out. Default (2, 4).
        stride: stride of the KxK convs (the pointwise conv runs at the output size).
        dtype: element type for the byte columns. Default ``torch.float32``.

    Returns:
        A :class:`ConvComparison` for one image (batch 1).

    Example:
        >>> c = compare_conv(64, 128, 3, 56)
        >>> round(c.row("standard").macs / 1e6, 1), round(c.row("separable").macs / 1e6, 1)
        (231.2, 27.5)
    """
    c_in = positive_int("in_channels", in_channels)
    c_out = positive_int("out_channels", out_channels)
    k = positive_int("kernel_size", kernel_size)
    h = positive_int("height", height)
    w = positive_int("width", height if width is None else width)
    s = positive_int("stride", stride)
    for g in groups:
        positive_int("groups", g)
        if c_in % g or c_out % g:
            expected = f"divisors of in_channels={c_in} and out_channels={c_out}"
            raise invalid("groups", expected, g)
    element_size = torch.empty((), dtype=dtype).element_size()
    pad = (k - 1) // 2
    h_out, w_out = ((n + 2 * pad - k) // s + 1 for n in (h, w))

    def cost(label: str, cin: int, cout: int, kk: int, g: int, size_in: int) -> ConvCost:
        params = cout * (cin // g) * kk * kk
        macs = conv_macs(cout, cin, g, (kk, kk), h_out * w_out)
        moved = (params + cin * size_in + cout * h_out * w_out) * element_size
        return ConvCost(
            label, conv_kind(cin, g, (kk, kk)), cin, cout, kk, g, params, macs, 2 * macs, moved,
            2 * macs / moved,
        )  # fmt: skip

    standard = cost("standard", c_in, c_out, k, 1, h * w)
    depthwise = cost("depthwise", c_in, c_in, k, c_in, h * w)
    # The pointwise conv reads the depthwise output, already at the strided size.
    pointwise = cost("pointwise", c_in, c_out, 1, 1, h_out * w_out)
    separable = ConvCost(
        "separable", "depthwise + pointwise", c_in, c_out, k, c_in,
        depthwise.params + pointwise.params, depthwise.macs + pointwise.macs,
        depthwise.flops + pointwise.flops, depthwise.bytes_moved + pointwise.bytes_moved,
        (depthwise.flops + pointwise.flops) / (depthwise.bytes_moved + pointwise.bytes_moved),
    )  # fmt: skip
    grouped = [cost(f"grouped g={g}", c_in, c_out, k, g, h * w) for g in groups]
    mac_ratio = separable.macs / standard.macs
    return ConvComparison(
        in_channels=c_in,
        out_channels=c_out,
        kernel_size=k,
        height=h,
        width=w,
        stride=s,
        dtype=str(dtype).removeprefix("torch."),
        rows=[standard, *grouped, depthwise, pointwise, separable],
        mac_ratio=mac_ratio,
        param_ratio=separable.params / standard.params,
        closed_form=1 / c_out + 1 / k**2,
        reduction=1 / mac_ratio,
    )
