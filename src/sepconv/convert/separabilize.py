"""Replace every standard or grouped KxK convolution of a model with its decoupled form.

Works on any ``nn.Module`` (sepconv, torchvision, timm or your own): every eligible
``nn.Conv2d`` (see :func:`~sepconv.convert.decouple.ineligibility`) is swapped for the
:class:`~sepconv.layers.DepthwiseSeparableConv2d` that :func:`~sepconv.convert.decouple.decouple`
builds from its weights, and a :class:`ConversionReport` records what changed.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import nn

from sepconv.convert.decouple import (
    check_energy,
    decouple,
    full_rank,
    ineligibility,
    rank_for_energy,
)
from sepconv.utils.validation import invalid, positive_int

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class LayerConversion:
    """One converted convolution: its shape, the rank kept and what it costs before and after."""

    name: str
    """Qualified module name, as in ``model.named_modules()``."""
    in_channels: int
    out_channels: int
    kernel_size: int
    groups: int
    """Groups of the original convolution (and of the pointwise conv that replaces it)."""
    rank: int
    """Depth multiplier of the separable block (rank-1 terms kept per input channel)."""
    full_rank: int
    """``min(C_out / groups, K*K)``: the rank at which the conversion is exact."""
    relative_error: float
    """``||W - W_R||_F / ||W||_F`` of the kernel."""
    params_before: int
    params_after: int
    macs_before: int | None = None
    """Multiply-adds of one forward pass at the report's input size (``None`` without one)."""
    macs_after: int | None = None


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`separabilize` did, layer by layer, and the model's parameters before and after.

    Parameters are counted (weights and biases, every parameter of the model); MACs (one MAC is
    one multiply-add, FLOPs are twice that) come from :func:`sepconv.analysis.analyze` at
    ``input_size`` and are ``None`` when no input size was given.
    """

    layers: tuple[LayerConversion, ...]
    skipped: tuple[tuple[str, str], ...]
    """``(name, reason)`` for every ``nn.Conv2d`` left as it was."""
    params_before: int
    params_after: int
    input_size: tuple[int, ...] | None = None
    macs_before: int | None = None
    macs_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the whole report."""
        return asdict(self)

    def table(self) -> Table:
        """The per-layer report as a ``rich`` table, totals in the caption."""
        from rich.table import Table

        table = Table(title="Decoupled convolutions (Guo et al., BMVC 2018)")
        columns = ["layer", "C_in->C_out", "K", "rank", "rel. error", "params", "params'"]
        if self.input_size is not None:
            columns += ["MACs", "MACs'"]
        for column in columns:
            table.add_column(column, justify="left" if column == "layer" else "right")
        for layer in self.layers:
            row = [
                layer.name,
                f"{layer.in_channels}->{layer.out_channels}"
                + (f" (g={layer.groups})" if layer.groups > 1 else ""),
                str(layer.kernel_size),
                f"{layer.rank}/{layer.full_rank}",
                f"{layer.relative_error:.4f}",
                f"{layer.params_before:,}",
                f"{layer.params_after:,}",
            ]
            if self.input_size is not None:
                row += [f"{layer.macs_before:,}", f"{layer.macs_after:,}"]
            table.add_row(*row)
        caption = (
            f"model params {self.params_before:,} -> {self.params_after:,} "
            f"({_ratio(self.params_before, self.params_after)} fewer)"
        )
        if self.macs_before is not None and self.macs_after is not None:
            caption += (
                f"; MACs at {self.input_size}: {self.macs_before:,} -> {self.macs_after:,} "
                f"({_ratio(self.macs_before, self.macs_after)} fewer)"
            )
        table.caption = f"{caption}; {len(self.skipped)} conv(s) kept as they were"
        return table


class Separabilized(NamedTuple):
    """The result of :func:`separabilize`."""

    model: nn.Module
    """A converted copy; the model passed in is left untouched."""
    report: ConversionReport


def _ratio(before: int, after: int) -> str:
    return f"{before / after:.2f}x" if after else "n/a"


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _CostSplit(NamedTuple):
    """Headline MACs of a model and of some of its modules."""

    total: int
    per_layer: dict[str, int]


def _macs_by_layer(model: nn.Module, input_size: tuple[int, ...], names: list[str]) -> _CostSplit:
    """Headline MACs of the whole model and of each named module (itself and its children)."""
    from sepconv.analysis import HEADLINE_KINDS, analyze

    rows = [row for row in analyze(model, input_size).rows if row.kind in HEADLINE_KINDS]
    # A converted layer's ops run in its children (conv_dw, conv_pw); "" is the model itself.
    per_layer = {
        name: sum(r.macs for r in rows if r.name == name or r.name.startswith(f"{name}."))
        if name
        else sum(r.macs for r in rows)
        for name in names
    }
    return _CostSplit(sum(r.macs for r in rows), per_layer)


def _check_rank_choice(rank: int | None, energy: float | None) -> None:
    if rank is not None and energy is not None:
        raise ValueError(
            "Invalid combination of arguments `rank` and `energy`: expected at most one, "
            f"received rank={rank!r} and energy={energy!r}."
        )
    if rank is not None:
        positive_int("rank", rank)
    if energy is not None:
        check_energy(energy)


def separabilize(
    model: nn.Module,
    rank: int | None = None,
    energy: float | None = None,
    skip: Iterable[str] = (),
    input_size: Sequence[int] | None = None,
) -> Separabilized:
    """Convert every standard or grouped KxK convolution of ``model`` into a separable one.

    Each eligible ``nn.Conv2d`` (square kernel ``K > 1``, zero padding, standard or grouped but not
    depthwise) is replaced by ``decouple(conv, R)``; depthwise, pointwise, non-square and otherwise
    ineligible convolutions are kept and listed in the report with the reason. The rank ``R`` of
    each layer is chosen by one of:

    - ``rank``: the same ``R`` everywhere, capped at each layer's full rank
      ``min(C_out / groups, K*K)``;
    - ``energy``: per layer, the smallest ``R`` that keeps this fraction of the squared singular
      values (:func:`~sepconv.convert.decouple.rank_for_energy`);
    - neither: full rank, an exact (and larger) rewrite of the model.

    Args:
        model: Any module; it is deep-copied, not modified.
        rank: Fixed depth multiplier (>= 1), or ``None``.
        energy: Retained energy fraction in ``(0, 1]``, or ``None``.
        skip: ``fnmatch`` patterns of qualified module names to leave alone, e.g.
            ``("conv1", "layer4.*")``; each must match at least one module.
        input_size: Input shape, e.g. ``(1, 3, 224, 224)``, at which to count MACs of the model
            and of every converted layer with :func:`sepconv.analysis.analyze`; ``None`` counts
            parameters only.

    Returns:
        :class:`Separabilized` ``(model, report)``.

    Reference:
        Guo et al., "Network Decoupling: From Regular to Depthwise Separable Convolutions",
        BMVC 2018.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3))
        >>> converted, report = separabilize(net, rank=2)
        >>> [(layer.name, layer.rank) for layer in report.layers]
        [('0', 2), ('2', 2)]
    """
    _check_rank_choice(rank, energy)
    patterns = (skip,) if isinstance(skip, str) else tuple(skip)
    names = [name for name, _ in model.named_modules()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            expected = "patterns that match module names of the model"
            raise invalid("skip", expected, pattern, note=", which matches none")

    converted = copy.deepcopy(model)
    layers: list[LayerConversion] = []
    skipped: list[tuple[str, str]] = []
    # Materialise the list first: replacing children while iterating named_modules is unsafe.
    for name, module in list(converted.named_modules()):
        if not isinstance(module, nn.Conv2d):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            skipped.append((name, "matched by `skip`"))
            continue
        reason = ineligibility(module)
        if reason is not None:
            skipped.append((name, reason))
            continue
        most = full_rank(module)
        if energy is not None:
            layer_rank = rank_for_energy(module, energy)
        else:
            layer_rank = most if rank is None else min(rank, most)
        block, error = decouple(module, layer_rank)
        if name:
            parent_name, _, child_name = name.rpartition(".")
            setattr(converted.get_submodule(parent_name), child_name, block)
        else:  # the model is itself a convolution
            converted = block
        layers.append(
            LayerConversion(
                name=name,
                in_channels=module.in_channels,
                out_channels=module.out_channels,
                kernel_size=module.kernel_size[0],
                groups=module.groups,
                rank=layer_rank,
                full_rank=most,
                relative_error=error,
                params_before=_count(module),
                params_after=_count(block),
            )
        )
    if layers and getattr(converted, "arch_name", None) is not None:
        # The converted model's identity: its architecture plus what was decoupled, so a file
        # written from it says how to rebuild it (sepconv.modelfile.record.ModelRecord.of).
        decoupled = dict(getattr(converted, "arch_decoupled", {}) or {})
        decoupled.update({layer.name: layer.rank for layer in layers})
        setattr(converted, "arch_decoupled", decoupled)  # noqa: B010 (mypy: Module)
    report = ConversionReport(
        layers=tuple(layers),
        skipped=tuple(skipped),
        params_before=_count(model),
        params_after=_count(converted),
    )
    if input_size is not None:
        shape = tuple(input_size)
        names = [layer.name for layer in layers]
        before = _macs_by_layer(model, shape, names)
        after = _macs_by_layer(converted, shape, names)
        report = replace(
            report,
            input_size=shape,
            macs_before=before.total,
            macs_after=after.total,
            layers=tuple(
                replace(
                    layer,
                    macs_before=before.per_layer[layer.name],
                    macs_after=after.per_layer[layer.name],
                )
                for layer in layers
            ),
        )
    return Separabilized(converted, report)
