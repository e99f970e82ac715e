"""The cost report of one model: rows per executed op, totals, breakdown by kind, and renderings.

Every rendering (rich table, JSON, CSV, Markdown) states the counting conventions of
:data:`sepconv.analysis.counting.CONVENTIONS`, so a number never travels without its unit.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from sepconv.analysis.counting import CONVENTIONS, HEADLINE_KINDS, KINDS, Kind
from sepconv.utils.tables import Column, FitTable

Shape = tuple[int, ...]


def format_count(value: float, unit: str = "") -> str:
    """Format a count in SI steps: 1.8M, 231.2M, 1.85G (one decimal below 1G, two above).

    Example:
        >>> format_count(231_211_008)
        '231.2M'
    """
    for scale, suffix, digits in ((1e9, "G", 2), (1e6, "M", 1), (1e3, "K", 1)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def _format_shapes(shapes: tuple[Shape, ...]) -> str:
    return " ".join("x".join(map(str, s)) for s in shapes)


@dataclass(frozen=True)
class LayerCost:
    """Cost of one executed op, attributed to the innermost module that ran it.

    Attributes:
        name: qualified module name (``features.3.conv.1``); ``""`` for the model itself.
        module_type: class name of that module.
        op: canonical op name (``conv2d``, ``add``, ``batch_norm``).
        kind: one of :data:`sepconv.analysis.counting.KINDS`.
        input_shapes, output_shapes: shapes of the activation tensors read and written.
        params: parameters first used by this op (a shared parameter is counted once).
        macs: multiply-adds; flops is ``2 * macs``.
        weight_bytes: bytes of parameters and buffers read.
        read_bytes, write_bytes: bytes of activations read and written.
        known: False when the analyzer has no formula for the op (costed at 0, listed).
    """

    name: str
    module_type: str
    op: str
    kind: Kind
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    params: int
    macs: int
    weight_bytes: int
    read_bytes: int
    write_bytes: int
    known: bool = True

    @property
    def flops(self) -> int:
        """``2 * macs``."""
        return 2 * self.macs

    @property
    def bytes_moved(self) -> int:
        """Weights + activations read + activations written, each touched once."""
        return self.weight_bytes + self.read_bytes + self.write_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOPs per byte moved (0 when nothing moves)."""
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict with the derived columns included."""
        row = asdict(self)
        row["input_shapes"] = [list(s) for s in self.input_shapes]
        row["output_shapes"] = [list(s) for s in self.output_shapes]
        row.update(flops=self.flops, bytes_moved=self.bytes_moved, intensity=self.intensity)
        return row


@dataclass(frozen=True)
class KindTotals:
    """Totals of one op kind, with its shares of the model's parameters and headline MACs.

    ``macs_share`` is ``None`` for kinds outside the headline (norm, activation, ...).
    """

    kind: Kind
    count: int
    params: int
    macs: int
    bytes_moved: int
    params_share: float
    macs_share: float | None


@dataclass(frozen=True)
class CostReport:
    """Per-op cost of one forward pass of a model; returned by :func:`sepconv.analyze`.

    Attributes:
        model: class name of the analyzed model.
        input_size: the input tensor shape used, ``(N, C, H, W)`` for images.
        dtype: element type the byte columns are computed for.
        rows: one :class:`LayerCost` per executed op, in execution order.
        total_params: all parameters of the model (``model.parameters()``, shared ones once).
        uncounted_params: parameters no counted op read, by owning module name; a custom op
            the analyzer cannot see through shows up here instead of vanishing.
        unknown_ops: op name -> number of calls the analyzer has no formula for.
    """

    model: str
    input_size: Shape
    dtype: str
    rows: list[LayerCost]
    total_params: int
    uncounted_params: dict[str, int] = field(default_factory=dict)
    unknown_ops: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """Headline MACs: convolutions + linear/matmul (see the conventions)."""
        return sum(r.macs for r in self.rows if r.kind in HEADLINE_KINDS)

    @property
    def flops(self) -> int:
        """Headline FLOPs, ``2 * macs``."""
        return 2 * self.macs

    @property
    def other_macs(self) -> int:
        """MAC-equivalents of the kinds listed outside the headline."""
        return sum(r.macs for r in self.rows if r.kind not in HEADLINE_KINDS)

    @property
    def bytes_moved(self) -> int:
        """Sum of every row's bytes moved (an unfused, no-reuse estimate)."""
        return sum(r.bytes_moved for r in self.rows)

    def by_kind(self) -> dict[Kind, KindTotals]:
        """Totals per op kind, in :data:`KINDS` order, kinds with no rows left out.

        Example:
            >>> shares = report.by_kind()  # doctest: +SKIP
            >>> shares["pointwise_conv"].macs_share  # MobileNetV1: ~0.95  # doctest: +SKIP
        """
        headline = self.macs
        totals: dict[Kind, KindTotals] = {}
        for kind in KINDS:
            rows = [r for r in self.rows if r.kind == kind]
            if not rows:
                continue
            macs = sum(r.macs for r in rows)
            params = sum(r.params for r in rows)
            totals[kind] = KindTotals(
                kind=kind,
                count=len(rows),
                params=params,
                macs=macs,
                bytes_moved=sum(r.bytes_moved for r in rows),
                params_share=params / self.total_params if self.total_params else 0.0,
                macs_share=(macs / headline if headline else 0.0)
                if kind in HEADLINE_KINDS
                else None,
            )
        return totals

    def summary(self) -> dict[str, Any]:
        """The totals as a flat dict (what ``to_json`` puts under ``"totals"``)."""
        return {
            "params": self.total_params,
            "macs": self.macs,
            "flops": self.flops,
            "other_macs": self.other_macs,
            "bytes_moved": self.bytes_moved,
            "intensity": self.flops / self.bytes_moved if self.bytes_moved else 0.0,
            "rows": len(self.rows),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as plain JSON types, conventions first."""
        return {
            "conventions": list(CONVENTIONS),
            "model": self.model,
            "input_size": list(self.input_size),
            "dtype": self.dtype,
            "totals": self.summary(),
            "by_kind": {k: asdict(v) for k, v in self.by_kind().items()},
            "unknown_ops": dict(self.unknown_ops),
            "uncounted_params": dict(self.uncounted_params),
            "rows": [r.as_dict() for r in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (keys in a fixed order, integers exact)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One CSV line per row under ``#``-prefixed lines that state the conventions.

        Read it back with ``csv.DictReader(line for line in f if not line.startswith("#"))``.
        """
        buffer = io.StringIO()
        for line in (*CONVENTIONS, *self._warnings()):
            buffer.write(f"# {line}\n")
        columns = [f.name for f in fields(LayerCost)] + ["flops", "bytes_moved", "intensity"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            flat = row.as_dict()
            for key in ("input_shapes", "output_shapes"):
                flat[key] = _format_shapes(getattr(row, key))
            writer.writerow(flat)
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """Conventions, totals, breakdown by kind and the per-op table as Markdown."""
        lines = [f"# Cost of {self.model} at input {'x'.join(map(str, self.input_size))}", ""]
        lines += [f"- {c}" for c in CONVENTIONS] + [f"- **{w}**" for w in self._warnings()]
        lines += ["", *_markdown_table(*self._summary_table())]
        lines += ["", *_markdown_table(*self._kind_table())]
        lines += ["", *_markdown_table(*self._row_table())]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Group:
        """Rich renderable: per-op table, breakdown by kind, totals, conventions, warnings."""
        parts: list[Any] = [
            _rich_table(f"{self.model}: cost per op", *self._row_table()),
            _rich_table("By kind", *self._kind_table()),
            _rich_table("Totals", *self._summary_table()),
        ]
        parts += [Text(c, style="dim") for c in CONVENTIONS]
        parts += [Text(w, style="bold red") for w in self._warnings()]
        return Group(*parts)

    def print(self, console: Console | None = None) -> None:
        """Print the rich rendering to ``console`` (a fresh stdout console by default)."""
        (console or Console()).print(self.to_rich())

    def _warnings(self) -> list[str]:
        warnings = [
            f"UNKNOWN op `{name}` called {count}x: no formula, costed at 0 (not in any total)."
            for name, count in self.unknown_ops.items()
        ]
        warnings += [
            f"UNCOUNTED parameters in `{name or self.model}`: {count} read by no counted op."
            for name, count in self.uncounted_params.items()
        ]
        return warnings

    def _row_table(self) -> tuple[list[str], list[list[str]]]:
        header = ["layer", "module", "op", "kind", "input", "output", "params", "MACs"]
        header += ["bytes moved", "FLOP/B"]
        body = [
            [
                r.name or "(model)",
                r.module_type,
                r.op if r.known else f"{r.op} (UNKNOWN)",
                r.kind,
                _format_shapes(r.input_shapes),
                _format_shapes(r.output_shapes),
                format_count(r.params),
                format_count(r.macs),
                format_count(r.bytes_moved, "B"),
                f"{r.intensity:.1f}",
            ]
            for r in self.rows
        ]
        return header, body

    def _kind_table(self) -> tuple[list[str], list[list[str]]]:
        header = ["kind", "ops", "params", "% params", "MACs", "% headline MACs", "bytes moved"]
        body = [
            [
                t.kind + ("" if t.kind in HEADLINE_KINDS else " (not in headline)"),
                str(t.count),
                format_count(t.params),
                f"{100 * t.params_share:.2f}",
                format_count(t.macs),
                "-" if t.macs_share is None else f"{100 * t.macs_share:.2f}",
                format_count(t.bytes_moved, "B"),
            ]
            for t in self.by_kind().values()
        ]
        return header, body

    def _summary_table(self) -> tuple[list[str], list[list[str]]]:
        s = self.summary()
        header = ["params", "MACs (conv+linear)", "FLOPs (2 x MACs)", "other MAC-equiv."]
        header += ["bytes moved", "FLOP/B", "dtype"]
        body = [
            [
                format_count(s["params"]),
                format_count(s["macs"]),
                format_count(s["flops"]),
                format_count(s["other_macs"]),
                format_count(s["bytes_moved"], "B"),
                f"{s['intensity']:.1f}",
                self.dtype,
            ]
        ]
        return header, body


# How each column shows in a terminal: text left, numbers right (so digits line up), the short
# header of a narrow layout, and which columns give way first when the terminal is narrow.
_COLUMNS = {
    column.header: column
    for column in (
        Column("layer", "left"),
        Column("module", "left", drop=5),
        Column("op", "left", drop=6),
        Column("kind", "left", drop=2),
        Column("input", "left", drop=4),
        Column("output", "left", drop=3),
        Column("params"),
        Column("MACs"),
        Column("bytes moved", short="bytes"),
        Column("FLOP/B", drop=1),
        Column("ops"),
        Column("% params", short="%P", drop=7),
        Column("% headline MACs", short="%MACs"),
        Column("MACs (conv+linear)", short="MACs"),
        Column("FLOPs (2 x MACs)", short="FLOPs"),
        Column("other MAC-equiv.", short="other"),
        Column("dtype", "left", drop=8),
    )
}


def _rich_table(title: str, header: list[str], body: list[list[str]]) -> FitTable:
    return FitTable(title, [_COLUMNS[name] for name in header], body)


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]
