"""torchvision's state-dict key names in sepconv's, one key map per architecture.

=========================  ==========================================================
sepconv model              torchvision
=========================  ==========================================================
stem.conv / stem.bn        features.0.0 / features.0.1
stages.S.B (MobileNetV2)   features.<flat block index + 1>: (.conv).0.0 / .0.1 ->
                           conv_pw, .1.0 / .1.1 -> conv_dw, .2 / .3 -> conv_pwl
stages.S.B (MobileNetV3)   features.<flat block index + 1>.block.<i>
stages.S.B (EfficientNet,  features.<S + 1>.B.block.<i>
EfficientNetV2)
 .block.<i>                the i-th part the block has, in forward order (conv_exp,
                           conv_pw, conv_dw, se, conv_pwl): .0 / .1 -> .conv / .bn,
                           se.fc1 / .fc2 -> se.conv_reduce / .conv_expand
final.conv / final.bn      features.<last>.0 / .1
pre_logits.conv            classifier.0 (MobileNetV3: a Linear, reshaped to 1x1)
classifier                 classifier.1 (classifier.3 in MobileNetV3)
stages.S.J.conv (VGG-16)   features.<flat conv index>
stages.S.B (ResNet-50)     layer<S + 1>.B: convN/bnN -> convN.conv/.bn, downsample.0/1
                           -> downsample.conv/.bn; fc
stem (ConvNeXt)            features.0.0 / .1 -> stem.conv / stem.bn (a LayerNorm2d)
stages.S.downsample        features.<2S>.0 / .1 -> .norm / .conv.conv
stages.S.blocks.B          features.<2S + 1>.B: block.0 -> conv_dw.conv, block.2 ->
                           conv_dw.bn, block.3 / .5 (Linear, reshaped) -> conv_pw.conv /
                           conv_pwl.conv, layer_scale (C, 1, 1) -> layer_scale.gamma
pre_logits / classifier    classifier.0 (LayerNorm2d) / classifier.2 (ConvNeXt)
=========================  ==========================================================

In MobileNetV2, MobileNetV3 and EfficientNet a block without expansion (the first one) has no
``conv_pw`` on either side, and a MobileNetV3 block without squeeze-excite no ``se``: the
indices shift down, and the mapping reads that from the sepconv model.
"""

from __future__ import annotations

import re

from torch import nn

from sepconv.modelfile.renames import (
    CNA,
    KeyMap,
    Renames,
    block_at,
    block_parts,
    present,
    rename,
    stage_blocks,
)
from sepconv.models.backbone import Backbone
from sepconv.models.convnext import ConvNeXt
from sepconv.models.efficientnet import EfficientNet
from sepconv.models.efficientnet_v2 import EfficientNetV2
from sepconv.models.mobilenet_v2 import MobileNetV2
from sepconv.models.mobilenet_v3 import MobileNetV3
from sepconv.models.resnet import ResNet
from sepconv.models.vgg import VGG

_IR_EXPAND: Renames = (
    ("conv.0.0", "conv_pw.conv"),
    ("conv.0.1", "conv_pw.bn"),
    ("conv.1.0", "conv_dw.conv"),
    ("conv.1.1", "conv_dw.bn"),
    ("conv.2", "conv_pwl.conv"),
    ("conv.3", "conv_pwl.bn"),
)
_IR_DW: Renames = (
    ("conv.0.0", "conv_dw.conv"),
    ("conv.0.1", "conv_dw.bn"),
    ("conv.1", "conv_pwl.conv"),
    ("conv.2", "conv_pwl.bn"),
)
_SE: Renames = (("fc1", "conv_reduce"), ("fc2", "conv_expand"))
_RESNET_BLOCK: Renames = (
    ("conv1", "conv1.conv"),
    ("bn1", "conv1.bn"),
    ("conv2", "conv2.conv"),
    ("bn2", "conv2.bn"),
    ("conv3", "conv3.conv"),
    ("bn3", "conv3.bn"),
    ("downsample.0", "downsample.conv"),
    ("downsample.1", "downsample.bn"),
)
_RESNET_TOP: Renames = (("conv1", "stem.0.conv"), ("bn1", "stem.0.bn"), ("fc", "classifier"))
_CONVNEXT_BLOCK: Renames = (
    ("block.0", "conv_dw.conv"),
    ("block.2", "conv_dw.bn"),
    ("block.3", "conv_pw.conv"),
    ("block.5", "conv_pwl.conv"),
    ("layer_scale", "layer_scale.gamma"),
)
_CONVNEXT_TOP: Renames = (("classifier.0", "pre_logits"), ("classifier.2", "classifier"))


def _sequential_block(rest: str, block: nn.Module, prefix: str) -> str | None:
    """``block.<i>.<rest>`` of a block torchvision writes as a ``Sequential`` of its parts."""
    match = re.fullmatch(r"block\.(\d+)\.(.+)", rest)
    parts = block_parts(block)
    if match is None or int(match[1]) >= len(parts):
        return None
    part = parts[int(match[1])]
    return rename(match[2], _SE if part == "se" else CNA, f"{prefix}{part}.")


def _flat_blocks(key: str, model: Backbone, head: Renames) -> tuple[str, str] | str | None:
    """Split ``features.<i>.<rest>`` of a flat block list: ``(our block prefix, rest)``, or the
    renamed key for the stem, the final conv and the head."""
    flat = [(s, b) for s, stage in enumerate(stage_blocks(model)) for b in range(len(stage))]
    match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if match is None:
        return rename(key, head)
    index, rest = int(match[1]), match[2]
    if index == 0:
        return rename(rest, CNA, "stem.")
    if index == len(flat) + 1:
        return rename(rest, CNA, "final.")
    if index > len(flat):
        return None
    s, b = flat[index - 1]
    return f"stages.{s}.{b}.", rest


def _mobilenet_v2(key: str, model: Backbone) -> str | None:
    split = _flat_blocks(key, model, (("classifier.1", "classifier"),))
    if not isinstance(split, tuple):
        return split
    prefix, rest = split
    block = model.get_submodule(prefix.rstrip("."))
    return rename(rest, _IR_EXPAND if present(block, "conv_pw") else _IR_DW, prefix)


def _mobilenet_v3(key: str, model: Backbone) -> str | None:
    head = (("classifier.0", "pre_logits.conv"), ("classifier.3", "classifier"))
    split = _flat_blocks(key, model, head)
    if not isinstance(split, tuple):
        return split
    prefix, rest = split
    return _sequential_block(rest, model.get_submodule(prefix.rstrip(".")), prefix)


def _efficientnet(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if match is None:
        return rename(key, (("classifier.1", "classifier"),))
    index, rest = int(match[1]), match[2]
    if index == 0:
        return rename(rest, CNA, "stem.")
    if index == len(stage_blocks(model)) + 1:
        return rename(rest, CNA, "final.")
    inner = re.fullmatch(r"(\d+)\.(.+)", rest)
    block = block_at(model, index - 1, int(inner[1])) if inner else None
    if inner is None or block is None:
        return None
    return _sequential_block(inner[2], block, f"stages.{index - 1}.{inner[1]}.")


def _convnext(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
    if match is None:
        return rename(key, _CONVNEXT_TOP)
    index, rest = int(match[1]), match[2]
    if index == 0:
        return rename(rest, CNA, "stem.")
    stage = index // 2
    if index % 2 == 0:  # the downsampling layer before stage index / 2
        return rename(rest, (("0", "norm"), ("1", "conv.conv")), f"stages.{stage}.downsample.")
    inner = re.fullmatch(r"(\d+)\.(.+)", rest)
    if inner is None:
        return None
    return rename(inner[2], _CONVNEXT_BLOCK, f"stages.{stage}.blocks.{inner[1]}.")


def _vgg(key: str, model: Backbone) -> str | None:
    # torchvision's flat `features` holds conv, ReLU per conv and a max pool per stage
    flat: dict[int, str] = {}
    index = 0
    for s, stage in enumerate(stage_blocks(model)):
        for j in range(len(stage) - 1):
            flat[index] = f"stages.{s}.{j}.conv."
            index += 2
        index += 1
    match = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
    if match is None:
        return key if key.startswith("classifier.") else None
    prefix = flat.get(int(match[1]))
    return None if prefix is None else prefix + match[2]


def _resnet(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", key)
    if match is None:
        return rename(key, _RESNET_TOP)
    return rename(match[3], _RESNET_BLOCK, f"stages.{int(match[1]) - 1}.{match[2]}.")


TORCHVISION_KEY_MAPS: dict[type[Backbone], KeyMap] = {
    MobileNetV2: _mobilenet_v2,
    MobileNetV3: _mobilenet_v3,
    EfficientNet: _efficientnet,
    EfficientNetV2: _efficientnet,
    ConvNeXt: _convnext,
    VGG: _vgg,
    ResNet: _resnet,
}
"""The architectures whose torchvision state dicts sepconv reads, and how."""
