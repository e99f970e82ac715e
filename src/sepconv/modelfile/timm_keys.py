"""timm's state-dict key names in sepconv's, one key map per architecture.

==========================  ===========================================================
sepconv model               timm
==========================  ===========================================================
stem.conv / stem.bn         conv_stem / bn1
stages.S.B                  blocks.S.B, by the kind of sepconv block there:
 InvertedResidual           conv_pw / bn1, conv_dw / bn2, se, conv_pwl / bn3 (without
                            expansion: conv_dw / bn1, se, conv_pw / bn2 -> conv_pwl)
 DepthwiseSeparableConv2d   conv_dw / bn1 -> conv_dw.conv / .bn; conv_pw / bn2 -> conv_pw
 FusedMBConv                conv_exp / bn1 -> conv_exp.conv / .bn; se; conv_pwl / bn2
 UniversalInvertedResidual  dw_start, pw_exp, dw_mid, se, pw_proj, dw_end, layer_scale ->
                            conv_dw_start, conv_pw, conv_dw, se, conv_pwl, conv_dw_end,
                            layer_scale
 ConvNormAct                conv / bn1 -> conv / bn
final                       conv_head / bn2 (EfficientNet); blocks.<last stage>.0
                            (MobileNetV3, MobileNetV4: conv / bn1)
pre_logits                  conv_head (MobileNetV3), conv_head / norm_head (MobileNetV4)
classifier                  classifier
stem.0 / stem.1 (Xception)  conv1, bn1 / conv2, bn2
stages.S.B (Xception)       block<k>: rep.<3j+1|3j> (sep conv: conv1 -> conv_dw.conv,
                            pointwise -> conv_pw.conv), following BN -> rep.j.conv_pw.bn;
                            skip, skipbn -> skip.conv, skip.bn
final.0 / final.1           conv3, bn3 / conv4, bn4; fc
stem (ConvNeXt)             stem.0 / stem.1 -> stem.conv / stem.bn (a LayerNorm2d)
stages.S.downsample         stages.S.downsample.0 / .1 -> .norm / .conv.conv
stages.S.blocks.B           conv_dw -> conv_dw.conv, norm -> conv_dw.bn, mlp.fc1 / .fc2
                            (Linear, reshaped) -> conv_pw.conv / conv_pwl.conv, gamma (C,)
                            -> layer_scale.gamma (C, 1, 1)
pre_logits / classifier     head.norm / head.fc (ConvNeXt)
==========================  ===========================================================
"""

from __future__ import annotations

import re

from torch import nn

from sepconv.layers import (
    ConvNormAct,
    DepthwiseSeparableConv2d,
    FusedMBConv,
    UniversalInvertedResidual,
)
from sepconv.modelfile.renames import KeyMap, Renames, block_at, present, rename, stage_blocks
from sepconv.models.backbone import Backbone
from sepconv.models.convnext import ConvNeXt
from sepconv.models.efficientnet import EfficientNet
from sepconv.models.mobilenet_v1 import MobileNetV1
from sepconv.models.mobilenet_v2 import MobileNetV2
from sepconv.models.mobilenet_v3 import MobileNetV3
from sepconv.models.mobilenet_v4 import MobileNetV4
from sepconv.models.xception import Xception

_IR: Renames = (
    ("conv_pw", "conv_pw.conv"),
    ("bn1", "conv_pw.bn"),
    ("conv_dw", "conv_dw.conv"),
    ("bn2", "conv_dw.bn"),
    ("se", "se"),
    ("conv_pwl", "conv_pwl.conv"),
    ("bn3", "conv_pwl.bn"),
)
_DS_LINEAR: Renames = (
    ("conv_dw", "conv_dw.conv"),
    ("bn1", "conv_dw.bn"),
    ("se", "se"),
    ("conv_pw", "conv_pwl.conv"),
    ("bn2", "conv_pwl.bn"),
)
_DS: Renames = (
    ("conv_dw", "conv_dw.conv"),
    ("bn1", "conv_dw.bn"),
    ("conv_pw", "conv_pw.conv"),
    ("bn2", "conv_pw.bn"),
)
_EDGE: Renames = (
    ("conv_exp", "conv_exp.conv"),
    ("bn1", "conv_exp.bn"),
    ("se", "se"),
    ("conv_pwl", "conv_pwl.conv"),
    ("bn2", "conv_pwl.bn"),
)
_UIB: Renames = (
    ("dw_start", "conv_dw_start"),
    ("pw_exp", "conv_pw"),
    ("dw_mid", "conv_dw"),
    ("se", "se"),
    ("pw_proj", "conv_pwl"),
    ("dw_end", "conv_dw_end"),
    ("layer_scale", "layer_scale"),
)
_CONV: Renames = (("conv", "conv"), ("bn1", "bn"))
_EFFNET_TOP: Renames = (
    ("conv_stem", "stem.conv"),
    ("bn1", "stem.bn"),
    ("conv_head", "final.conv"),
    ("bn2", "final.bn"),
    ("classifier", "classifier"),
)
_MOBILENET_V3_TOP: Renames = (
    ("conv_stem", "stem.conv"),
    ("bn1", "stem.bn"),
    ("conv_head", "pre_logits.conv"),
    ("norm_head", "pre_logits.bn"),
    ("classifier", "classifier"),
)
_XCEPTION_TOP: Renames = (
    ("conv1", "stem.0.conv"),
    ("bn1", "stem.0.bn"),
    ("conv2", "stem.1.conv"),
    ("bn2", "stem.1.bn"),
    ("conv3.conv1", "final.0.conv_dw.conv"),
    ("conv3.pointwise", "final.0.conv_pw.conv"),
    ("bn3", "final.0.conv_pw.bn"),
    ("conv4.conv1", "final.1.conv_dw.conv"),
    ("conv4.pointwise", "final.1.conv_pw.conv"),
    ("bn4", "final.1.conv_pw.bn"),
    ("fc", "classifier"),
)
_CONVNEXT_BLOCK: Renames = (
    ("conv_dw", "conv_dw.conv"),
    ("norm", "conv_dw.bn"),
    ("mlp.fc1", "conv_pw.conv"),
    ("mlp.fc2", "conv_pwl.conv"),
    ("gamma", "layer_scale.gamma"),
)
_CONVNEXT_TOP: Renames = (
    ("stem.0", "stem.conv"),
    ("stem.1", "stem.bn"),
    ("head.norm", "pre_logits"),
    ("head.fc", "classifier"),
)


def _block_renames(block: nn.Module) -> Renames:
    """How timm names the parts of the timm block that ``block`` corresponds to."""
    if isinstance(block, DepthwiseSeparableConv2d):
        return _DS
    if isinstance(block, FusedMBConv):
        return _EDGE
    if isinstance(block, UniversalInvertedResidual):
        return _UIB
    if isinstance(block, ConvNormAct):
        return _CONV
    return _IR if present(block, "conv_pw") else _DS_LINEAR


def _efficientnet(key: str, model: Backbone) -> str | None:
    """timm's ``EfficientNet`` / ``MobileNetV3`` classes, which hold every family built of
    inverted residuals (MobileNetV1-V4, EfficientNet)."""
    match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(.+)", key)
    if match is None:
        top = _MOBILENET_V3_TOP if present(model, "pre_logits") else _EFFNET_TOP
        return rename(key, top)
    stage, index, rest = int(match[1]), int(match[2]), match[3]
    if stage == len(stage_blocks(model)) and index == 0:
        return rename(rest, _CONV, "final.")  # MobileNetV3/V4's last 1x1 conv is a timm stage
    block = block_at(model, stage, index)
    if block is None:
        return None
    return rename(rest, _block_renames(block), f"stages.{stage}.{index}.")


def _convnext(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"stages\.(\d+)\.(downsample|blocks)\.(.+)", key)
    if match is None:
        return rename(key, _CONVNEXT_TOP)
    prefix = f"stages.{match[1]}.{match[2]}."
    if match[2] == "downsample":
        return rename(match[3], (("0", "norm"), ("1", "conv.conv")), prefix)
    inner = re.fullmatch(r"(\d+)\.(.+)", match[3])
    return None if inner is None else rename(inner[2], _CONVNEXT_BLOCK, f"{prefix}{inner[1]}.")


def _xception(key: str, model: Backbone) -> str | None:
    match = re.fullmatch(r"block(\d+)\.(.+)", key)
    if match is None:
        return rename(key, _XCEPTION_TOP)
    # blocks 1-3: one stage each (entry flow); 4-11: stage 3 (middle flow); 12: stage 4 (exit)
    number, rest = int(match[1]), match[2]
    stage, block = (number - 1, 0) if number <= 3 else (3, number - 4) if number <= 11 else (4, 0)
    prefix = f"stages.{stage}.{block}."
    rep = re.fullmatch(r"rep\.(\d+)\.(.+)", rest)
    if rep is None:
        return rename(rest, (("skipbn", "skip.bn"), ("skip", "skip.conv")), prefix)
    # timm's rep is [ReLU,] SepConv, BN, ReLU, SepConv, BN, ...: three entries per conv, the
    # first ReLU absent in block 1
    position = int(rep[1]) + (1 if number == 1 else 0)
    unit, part = divmod(position, 3)
    if part == 1:
        return rename(
            rep[2],
            (("conv1", "conv_dw.conv"), ("pointwise", "conv_pw.conv")),
            f"{prefix}rep.{unit}.",
        )
    return f"{prefix}rep.{unit}.conv_pw.bn.{rep[2]}" if part == 2 else None


TIMM_KEY_MAPS: dict[type[Backbone], KeyMap] = {
    MobileNetV1: _efficientnet,
    MobileNetV2: _efficientnet,
    MobileNetV3: _efficientnet,
    MobileNetV4: _efficientnet,
    EfficientNet: _efficientnet,
    Xception: _xception,
    ConvNeXt: _convnext,
}
"""The architectures whose timm state dicts sepconv reads, and how."""
