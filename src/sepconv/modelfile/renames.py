"""What every key map of :mod:`sepconv.modelfile.interop` is made of: prefix renames and the
layout of a sepconv model's stages and blocks."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sepconv.models.backbone import Backbone

Renames = tuple[tuple[str, str], ...]
"""(their prefix, our prefix) pairs: the first that matches the start of a key wins."""

KeyMap = Callable[[str, Backbone], "str | None"]
"""Their key and our model -> our key, or ``None`` when the key has no counterpart."""

CNA: Renames = (("0", "conv"), ("1", "bn"))
"""A conv-norm-act written as a ``Sequential`` (torchvision's ``Conv2dNormActivation``)."""

# The sub-modules of sepconv's residual blocks, in the order their forward runs them.
BLOCK_PARTS = ("conv_dw_start", "conv_exp", "conv_pw", "conv_dw", "se", "conv_pwl", "conv_dw_end")


def rename(rest: str, table: Renames, prefix: str = "") -> str | None:
    """Rewrite the first matching prefix of ``rest`` (a whole dotted component, or the whole
    key) and prepend ``prefix``; ``None`` if none matches.

    Example:
        >>> rename("1.running_var", CNA, "stem.")
        'stem.bn.running_var'
    """
    for theirs, ours in table:
        if rest == theirs:
            return prefix + ours
        if rest.startswith(theirs + "."):
            return f"{prefix}{ours}{rest[len(theirs) :]}"
    return None


def stage_blocks(model: Backbone) -> list[list[nn.Module]]:
    """The blocks of each stage of ``model``."""
    return [list(stage.children()) for stage in model.stages.children()]


def block_at(model: Backbone, stage: int, block: int) -> nn.Module | None:
    """Return ``model.stages[stage][block]``, or ``None`` when out of range."""
    stages = stage_blocks(model)
    if stage >= len(stages) or block >= len(stages[stage]):
        return None
    return stages[stage][block]


def present(block: nn.Module, name: str) -> bool:
    """Whether ``block`` has a sub-module ``name`` that is not an ``nn.Identity`` placeholder."""
    part = getattr(block, name, None)
    return isinstance(part, nn.Module) and not isinstance(part, nn.Identity)


def block_parts(block: nn.Module) -> list[str]:
    """The sub-modules ``block`` really has, in forward order: the ``i``-th entry of a reference
    that writes the block as a ``Sequential`` of them (torchvision) is the ``i``-th name here.

    Example:
        >>> from sepconv.layers import MBConv
        >>> block_parts(MBConv(16, 24, expand_ratio=1))
        ['conv_dw', 'se', 'conv_pwl']
    """
    return [name for name in BLOCK_PARTS if present(block, name)]
