"""Third-party state dicts in sepconv's key names: torchvision and timm key renaming.

Key mapping (their state-dict key -> sepconv's), by architecture and source:

=========================  ===============================  =================================
sepconv model              torchvision                      timm
=========================  ===============================  =================================
stem.conv / stem.bn        features.0.0 / features.0.1      conv_stem / bn1
stages.S.B (MobileNetV2)   features.<flat block index + 1>  blocks.S.B
stages.S.B (EfficientNet)  features.<S + 1>.B               blocks.S.B
 .conv_pw.conv / .bn       (.conv|.block).0.0 / .0.1        .conv_pw / .bn1
 .conv_dw.conv / .bn       (.conv|.block).1.0 / .1.1        .conv_dw / .bn2
 .se.conv_reduce / expand  .block.2.fc1 / .fc2              .se.conv_reduce / .conv_expand
 .conv_pwl.conv / .bn      .conv.2 / .conv.3, .block.3.0/1  .conv_pwl / .bn3
final.conv / final.bn      features.<last>.0 / .1           conv_head / bn2
classifier                 classifier.1                     classifier
stages.S.B (MobileNetV1)   -                                blocks.S.B: conv_dw, bn1 -> bn_dw,
                                                            conv_pw, bn2 -> bn_pw
stages.S.J.conv (VGG-16)   features.<flat conv index>       -
stages.S.B (ResNet-50)     layer<S + 1>.B: convN/bnN ->     -
                           convN.conv/.bn, downsample.0/1
                           -> downsample.conv/.bn; fc
stem.0 / stem.1 (Xception) -                                conv1, bn1 / conv2, bn2
stages.S.B (Xception)      -                                block<k>: rep.<3j+1|3j> (sep conv:
                                                            conv1 -> conv_dw, pointwise ->
                                                            conv_pw), following BN -> rep.j.bn;
                                                            skip, skipbn -> skip.conv, skip.bn
final.0 / final.1          -                                conv3, bn3 / conv4, bn4; fc
=========================  ===============================  =================================

In MobileNetV2 and EfficientNet a block without expansion (the first one) has no ``conv_pw`` on
either side, and the indices shift down by one; the mapping reads that from the sepconv model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from sepconv.layers import DepthwiseSeparableConv2d
from sepconv.models.backbone import Backbone
from sepconv.models.efficientnet import EfficientNet
from sepconv.models.mobilenet_v1 import MobileNetV1
from sepconv.models.mobilenet_v2 import MobileNetV2
from sepconv.models.resnet import ResNet
from sepconv.models.vgg import VGG
from sepconv.models.xception import Xception
from sepconv.utils.validation import invalid

StateDict = Mapping[str, torch.Tensor]

# (their prefix, our prefix): the first prefix that matches the start of a key wins.
Renames = tuple[tuple[str, str], ...]
_CNA: Renames = (("0", "conv"), ("1", "bn"))
_TV_IR_EXPAND: Renames = (
    ("conv.0.0", "conv_pw.conv"),
    ("conv.0.1", "conv_pw.bn"),
    ("conv.1.0", "conv_dw.conv"),
    ("conv.1.1", "conv_dw.bn"),
    ("conv.2", "conv_pwl.conv"),
    ("conv.3", "conv_pwl.bn"),
)
_TV_IR_DW: Renames = (
    ("conv.0.0", "conv_dw.conv"),
    ("conv.0.1", "conv_dw.bn"),
    ("conv.1", "conv_pwl.conv"),
    ("conv.2", "conv_pwl.bn"),
)
_TV_MB_EXPAND: Renames = (
    ("block.0.0", "conv_pw.conv"),
    ("block.0.1", "conv_pw.bn"),
    ("block.1.0", "conv_dw.conv"),
    ("block.1.1", "conv_dw.bn"),
    ("block.2.fc1", "se.conv_reduce"),
    ("block.2.fc2", "se.conv_expand"),
    ("block.3.0", "conv_pwl.conv"),
    ("block.3.1", "conv_pwl.bn"),
)
_TV_MB_DW: Renames = (
    ("block.0.0", "conv_dw.conv"),
    ("block.0.1", "conv_dw.bn"),
    ("block.1.fc1", "se.conv_reduce"),
    ("block.1.fc2", "se.conv_expand"),
    ("block.2.0", "conv_pwl.conv"),
    ("block.2.1", "conv_pwl.bn"),
)
_TIMM_IR: Renames = (
    ("conv_pw", "conv_pw.conv"),
    ("bn1", "conv_pw.bn"),
    ("conv_dw", "conv_dw.conv"),
    ("bn2", "conv_dw.bn"),
    ("se", "se"),
    ("conv_pwl", "conv_pwl.conv"),
    ("bn3", "conv_pwl.bn"),
)
_TIMM_DS_LINEAR: Renames = (
    ("conv_dw", "conv_dw.conv"),
    ("bn1", "conv_dw.bn"),
    ("se", "se"),
    ("conv_pw", "conv_pwl.conv"),
    ("bn2", "conv_pwl.bn"),
)
_TIMM_DS: Renames = (
    ("conv_dw", "conv_dw"),
    ("bn1", "bn_dw"),
    ("conv_pw", "conv_pw"),
    ("bn2", "bn_pw"),
)
_TIMM_EFFNET_TOP: Renames = (
    ("conv_stem", "stem.conv"),
    ("bn1", "stem.bn"),
    ("conv_head", "final.conv"),
    ("bn2", "final.bn"),
    ("classifier", "classifier"),
)
_TV_RESNET_BLOCK: Renames = (
    ("conv1", "conv1.conv"),
    ("bn1", "conv1.bn"),
    ("conv2", "conv2.conv"),
    ("bn2", "conv2.bn"),
    ("conv3", "conv3.conv"),
    ("bn3", "conv3.bn"),
    ("downsample.0", "downsample.conv"),
    ("downsample.1", "downsample.bn"),
)
_TV_RESNET_TOP: Renames = (("conv1", "stem.0.conv"), ("bn1", "stem.0.bn"), ("fc", "classifier"))
_TIMM_XCEPTION_TOP: Renames = (
    ("conv1", "stem.0.conv"),
    ("bn1", "stem.0.bn"),
    ("conv2", "stem.1.conv"),
    ("bn2", "stem.1.bn"),
    ("conv3.conv1", "final.0.conv_dw"),
    ("conv3.pointwise", "final.0.conv_pw"),
    ("bn3", "final.0.bn"),
    ("conv4.conv1", "final.1.conv_dw"),
    ("conv4.pointwise", "final.1.conv_pw"),
    ("bn4", "final.1.bn"),
    ("fc", "classifier"),
)


def _rename(rest: str, table: Renames, prefix: str = "") -> str | None:
    """Rewrite the first matching prefix of ``rest`` and prepend ``prefix``; None if none."""
    for theirs, ours in table:
        if rest.startswith(theirs + "."):
            return f"{prefix}{ours}{rest[len(theirs) :]}"
    return None


def _stages(model: Backbone) -> list[list[nn.Module]]:
    """The blocks of each stage of ``model``."""
    return [list(stage.children()) for stage in model.stages.children()]


def _block(model: Backbone, stage: int, block: int) -> nn.Module | None:
    """Return ``model.stages[stage][block]`` or None when out of range."""
    stages = _stages(model)
    if stage >= len(stages) or block >= len(stages[stage]):
        return None
    return stages[stage][block]


def _expands(block: nn.Module) -> bool:
    """Whether an inverted residual block has a point-wise expansion conv."""
    return not isinstance(getattr(block, "conv_pw", None), nn.Identity)


def _tv_mobilenet_v2(key: str, model: Backbone) -> str | None:
    stages = _stages(model)
    flat = [(s, b) for s, stage in enumerate(stages) for b in range(len(stage))]
    match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if match is None:
        return _rename(key, (("classifier.1", "classifier"),))
    index, rest = int(match[1]), match[2]
    if index == 0:
        return _rename(rest, _CNA, "stem.")
    if index == len(flat) + 1:
        return _rename(rest, _CNA, "final.")
    if index > len(flat):
        return None
    s, b = flat[index - 1]
    table = _TV_IR_EXPAND if _expands(stages[s][b]) else _TV_IR_DW
    return _rename(rest, table, f"stages.{s}.{b}.")


def _tv_efficientnet(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if match is None:
        return _rename(key, (("classifier.1", "classifier"),))
    index, rest = int(match[1]), match[2]
    if index == 0:
        return _rename(rest, _CNA, "stem.")
    if index == len(_stages(model)) + 1:
        return _rename(rest, _CNA, "final.")
    inner = re.fullmatch(r"(\d+)\.(.+)", rest)
    block = _block(model, index - 1, int(inner[1])) if inner and index > 0 else None
    if inner is None or block is None:
        return None
    table = _TV_MB_EXPAND if _expands(block) else _TV_MB_DW
    return _rename(inner[2], table, f"stages.{index - 1}.{inner[1]}.")


def _timm_efficientnet(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(.+)", key)
    if match is None:
        return _rename(key, _TIMM_EFFNET_TOP)
    block = _block(model, int(match[1]), int(match[2]))
    if block is None:
        return None
    if isinstance(block, DepthwiseSeparableConv2d):
        table = _TIMM_DS
    else:
        table = _TIMM_IR if _expands(block) else _TIMM_DS_LINEAR
    return _rename(match[3], table, f"stages.{match[1]}.{match[2]}.")


def _tv_vgg(key: str, model: Backbone) -> str | None:
    # torchvision's flat `features` holds conv, ReLU per conv and a max pool per stage
    flat: dict[int, str] = {}
    index = 0
    for s, stage in enumerate(_stages(model)):
        for j in range(len(stage) - 1):
            flat[index] = f"stages.{s}.{j}.conv."
            index += 2
        index += 1
    match = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
    if match is None:
        return key if key.startswith("classifier.") else None
    prefix = flat.get(int(match[1]))
    return None if prefix is None else prefix + match[2]


def _tv_resnet(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", key)
    if match is None:
        return _rename(key, _TV_RESNET_TOP)
    return _rename(match[3], _TV_RESNET_BLOCK, f"stages.{int(match[1]) - 1}.{match[2]}.")


def _timm_xception(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"block(\d+)\.(.+)", key)
    if match is None:
        return _rename(key, _TIMM_XCEPTION_TOP)
    # blocks 1-3: one stage each (entry flow); 4-11: stage 3 (middle flow); 12: stage 4 (exit)
    number, rest = int(match[1]), match[2]
    stage, block = (number - 1, 0) if number <= 3 else (3, number - 4) if number <= 11 else (4, 0)
    prefix = f"stages.{stage}.{block}."
    rep = re.fullmatch(r"rep\.(\d+)\.(.+)", rest)
    if rep is None:
        return _rename(rest, (("skipbn", "skip.bn"), ("skip", "skip.conv")), prefix)
    # timm's rep is [ReLU,] SepConv, BN, ReLU, SepConv, BN, ...: three entries per conv, the
    # first ReLU absent in block 1
    position = int(rep[1]) + (1 if number == 1 else 0)
    unit, part = divmod(position, 3)
    if part == 1:
        return _rename(
            rep[2], (("conv1", "conv_dw"), ("pointwise", "conv_pw")), f"{prefix}rep.{unit}."
        )
    return f"{prefix}rep.{unit}.bn.{rep[2]}" if part == 2 else None


KeyMap = Callable[[str, Backbone], "str | None"]
KEY_MAPS: dict[tuple[type[Backbone], str], KeyMap] = {
    (MobileNetV2, "torchvision"): _tv_mobilenet_v2,
    (EfficientNet, "torchvision"): _tv_efficientnet,
    (VGG, "torchvision"): _tv_vgg,
    (ResNet, "torchvision"): _tv_resnet,
    (MobileNetV1, "timm"): _timm_efficientnet,
    (MobileNetV2, "timm"): _timm_efficientnet,
    (EfficientNet, "timm"): _timm_efficientnet,
    (Xception, "timm"): _timm_xception,
}
"""Which third-party state dicts each architecture reads: (model class, format) -> key map."""


def convert_state_dict(
    model: nn.Module, state_dict: StateDict, format: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a torchvision / timm / sepconv state dict to ``model``'s keys.

    Returns:
        The renamed state dict and the source keys that have no counterpart.

    Raises:
        ValueError: when ``format`` has no key map for this architecture.
    """
    if format == "sepconv":
        return dict(state_dict), []
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
    converted, unmapped = {}, []
    for key, tensor in state_dict.items():
        ours = key_map(key, model)
        if ours is None:
            unmapped.append(key)
        else:
            converted[ours] = tensor
    return converted, unmapped
