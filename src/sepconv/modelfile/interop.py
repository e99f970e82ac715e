"""State dicts of other sources in sepconv's key names: torchvision, timm and earlier sepconv.

Each architecture reads a source through a key map, a function from their key to sepconv's:
:mod:`~sepconv.modelfile.torchvision_keys` and :mod:`~sepconv.modelfile.timm_keys` hold them,
each with the table of names it maps, and :data:`KEY_MAPS` lists every (architecture, source)
pair. Where a reference computes a 1x1 conv as an ``nn.Linear`` (ConvNeXt's MLP, MobileNetV3's
post-pool layer in torchvision) or keeps a layer scale as a ``(C,)`` vector, its tensor holds the
same values in another shape; :func:`convert_state_dict` reshapes it to the model's.

Earlier sepconv versions named the parts of a depthwise separable block (MobileNetV1's blocks,
Xception's separable convs, a decoupled convolution) as direct children: ``conv_dw``, ``bn_dw``,
``conv_pw``, ``bn_pw`` and, in Xception, ``bn``. Those blocks are now built from two
:class:`~sepconv.layers.ConvNormAct`, so the same tensors are ``conv_dw.conv``, ``conv_dw.bn``,
``conv_pw.conv`` and ``conv_pw.bn``; the ``"sepconv"`` format reads both spellings
(:func:`upgrade_keys`), so files written by earlier versions load to the same outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sepconv.modelfile.renames import KeyMap
from sepconv.modelfile.timm_keys import TIMM_KEY_MAPS
from sepconv.modelfile.torchvision_keys import TORCHVISION_KEY_MAPS
from sepconv.models.backbone import Backbone
from sepconv.utils.validation import invalid

StateDict = Mapping[str, torch.Tensor]

KEY_MAPS: dict[tuple[type[Backbone], str], KeyMap] = {
    **{(cls, "torchvision"): key_map for cls, key_map in TORCHVISION_KEY_MAPS.items()},
    **{(cls, "timm"): key_map for cls, key_map in TIMM_KEY_MAPS.items()},
}
"""Which third-party state dicts each architecture reads: (model class, format) -> key map."""


# Children of a depthwise separable block in earlier sepconv versions -> their names now. Such a
# block is recognised by its depthwise conv holding its weight directly: "<block>.conv_dw.weight".
_EARLIER_NAMES = {
    "conv_dw": "conv_dw.conv",
    "bn_dw": "conv_dw.bn",
    "conv_pw": "conv_pw.conv",
    "bn_pw": "conv_pw.bn",
    "bn": "conv_pw.bn",  # Xception's separable conv: its norm followed the pointwise conv
}


def _split(key: str) -> tuple[str, str, str]:
    """``"a.b.conv_dw.weight"`` -> ``("a.b", "conv_dw", "weight")``."""
    module, _, leaf = key.rpartition(".")
    parent, _, child = module.rpartition(".")
    return parent, child, leaf


def upgrade_keys(
    state_dict: StateDict, expected: Mapping[str, object] | None = None
) -> dict[str, torch.Tensor]:
    """Rename the keys of separable blocks written by earlier sepconv versions to today's.

    A block of the earlier layout holds its depthwise conv's weight as ``<block>.conv_dw.weight``
    (today: ``<block>.conv_dw.conv.weight``); its keys are renamed by ``_EARLIER_NAMES``
    (``stages.1.0.bn_dw.weight`` -> ``stages.1.0.conv_dw.bn.weight``). Keys of the current
    layout pass through unchanged, with any prefix (a checkpoint's ``model.``, ``ema.``).

    Args:
        state_dict: Tensors under sepconv key names of any version.
        expected: The model's ``state_dict()`` when known: then a key is renamed only when the
            model lacks it and has the new name, so a model whose own modules are called
            ``conv_dw`` (timm's) keeps its keys.

    Example:
        >>> old = {"conv_dw.weight": torch.zeros(4, 1, 3, 3), "bn_pw.bias": torch.zeros(8)}
        >>> sorted(upgrade_keys(old))
        ['conv_dw.conv.weight', 'conv_pw.bn.bias']
    """
    blocks = {
        p for p, child, leaf in map(_split, state_dict) if (child, leaf) == ("conv_dw", "weight")
    }
    upgraded: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        parent, child, leaf = _split(key)
        now = key
        if parent in blocks and child in _EARLIER_NAMES:
            now = ".".join(part for part in (parent, _EARLIER_NAMES[child], leaf) if part)
        if expected is not None and (key in expected or now not in expected):
            now = key
        upgraded[now] = tensor
    return upgraded


def convert_state_dict(
    model: nn.Module, state_dict: StateDict, format: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a torchvision / timm / sepconv state dict to ``model``'s keys.

    A ``"sepconv"`` state dict may hold the key names of earlier sepconv versions
    (:func:`upgrade_keys`). A torchvision or timm tensor that holds the model's values in another
    shape (a linear layer's ``(C_out, C_in)`` weight for a 1x1 conv's ``(C_out, C_in, 1, 1)``, a
    ``(C,)`` layer scale for ``(C, 1, 1)``: the same sizes once the 1s are dropped) is reshaped
    to the model's; any other shape is left for the caller to report.

    Returns:
        The renamed state dict and the source keys that have no counterpart.

    Raises:
        ValueError: when ``format`` has no key map for this architecture.
    """
    if format == "sepconv":
        return upgrade_keys(state_dict, model.state_dict()), []
    key_map = next(
        (fn for (cls, fmt), fn in KEY_MAPS.items() if fmt == format and isinstance(model, cls)),
        None,
    )
    if key_map is None or not isinstance(model, Backbone):
        supported = sorted(f"{cls.__name__} from {fmt}" for cls, fmt in KEY_MAPS)
        name = type(model).__name__
        raise invalid(
            "format",
            f"a source with a key map for {name}",
            format,
            note=f": no {format!r} key map for {name}; supported: {', '.join(supported)}",
        )
    expected = model.state_dict()
    converted, unmapped = {}, []
    for key, tensor in state_dict.items():
        ours = key_map(key, model)
        if ours is None:
            unmapped.append(key)
        elif ours in expected and _same_but_for_ones(tensor.shape, expected[ours].shape):
            converted[ours] = tensor.reshape(expected[ours].shape)
        else:
            converted[ours] = tensor
    return converted, unmapped


def _same_but_for_ones(theirs: torch.Size, ours: torch.Size) -> bool:
    """Whether two shapes differ only by dimensions of size 1 (the values line up unchanged)."""
    return theirs != ours and [d for d in theirs if d != 1] == [d for d in ours if d != 1]
