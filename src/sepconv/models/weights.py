"""Weights in and out: sepconv's safetensors checkpoints, and torchvision / timm state dicts.

sepconv checkpoints are safetensors files whose metadata holds the registered architecture name
and its keyword arguments as JSON, so :func:`load_model` rebuilds a model from the file alone.
Third-party ``.pth`` files are read with ``torch.load(..., weights_only=True)``, which refuses
to unpickle arbitrary objects.

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

import json
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sepconv.layers import DepthwiseSeparableConv2d
from sepconv.models._registry import create_model
from sepconv.models.backbone import Backbone
from sepconv.models.efficientnet import EfficientNet
from sepconv.models.mobilenet_v1 import MobileNetV1
from sepconv.models.mobilenet_v2 import MobileNetV2
from sepconv.models.resnet import ResNet
from sepconv.models.vgg import VGG
from sepconv.models.xception import Xception
from sepconv.utils.files import write_atomic

WeightFormat = Literal["auto", "torchvision", "timm", "sepconv"]
StateDict = Mapping[str, torch.Tensor]
PathLike = str | os.PathLike[str]
_METADATA_KEY = "sepconv"

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


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors or ``.pth`` file into (state dict, safetensors metadata)."""
    if not path.is_file():
        raise FileNotFoundError(f"Weight file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            return load_file(str(path)), metadata
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(
                f"Weight file {str(path)!r} is not a readable safetensors file ({err}); "
                "it may be truncated or corrupted: save or download it again."
            ) from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(
            f"Weight file {str(path)!r} is not a readable PyTorch state dict ({err}); "
            "it may be truncated, corrupted or contain pickled objects other than tensors."
        ) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    return _check_state_dict(loaded, str(path)), {}


def _check_state_dict(obj: object, origin: str) -> dict[str, torch.Tensor]:
    """Return ``obj`` as a ``{str: Tensor}`` dict, or raise naming ``origin``."""
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"Invalid weights in {origin}: expected a mapping of str to torch.Tensor, "
            f"received {type(obj).__name__}."
        )
    return dict(obj)


def _detect_format(keys: set[str], metadata: Mapping[str, str]) -> str:
    """Guess where a state dict comes from by its key names."""
    if _METADATA_KEY in metadata or any(k.startswith("stages.") for k in keys):
        return "sepconv"
    if {"conv_stem.weight", "block1.skip.weight"} & keys:
        return "timm"
    if {"features.0.0.weight", "features.0.weight", "layer1.0.conv1.weight"} & keys:
        return "torchvision"
    raise ValueError(
        "Invalid value for argument `format`: could not detect the source of the weights from "
        f"their keys (first: {sorted(keys)[:3]}); pass format='torchvision', 'timm' or 'sepconv'."
    )


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
        raise ValueError(
            f"Invalid value for argument `format`: no {format!r} key map for "
            f"{type(model).__name__}; supported: {', '.join(supported)}."
        )
    converted, unmapped = {}, []
    for key, tensor in state_dict.items():
        ours = key_map(key, model)
        if ours is None:
            unmapped.append(key)
        else:
            converted[ours] = tensor
    return converted, unmapped


def load_weights(
    model: nn.Module,
    source: PathLike | StateDict,
    format: WeightFormat = "auto",
) -> nn.Module:
    """Load weights into ``model`` in place, mapping torchvision / timm key names.

    Args:
        model: A sepconv model (from :func:`create_model` or a builder).
        source: A state dict, a ``.pth`` / ``.pt`` file (read with ``weights_only=True``) or a
            ``.safetensors`` file.
        format: ``"torchvision"``, ``"timm"``, ``"sepconv"``, or ``"auto"`` to detect it from the
            keys. The supported pairs are listed in :data:`KEY_MAPS`.

    Returns:
        ``model``, for chaining.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: an unreadable file (naming it), or weights that do not fit: the message lists
            every missing, unexpected and mis-shaped key.

    Example:
        >>> import torchvision
        >>> model = load_weights(mobilenet_v2(), torchvision.models.mobilenet_v2().state_dict())
    """
    if format not in ("auto", "torchvision", "timm", "sepconv"):
        raise ValueError(
            "Invalid value for argument `format`: expected 'auto', 'torchvision', 'timm' or "
            f"'sepconv', received {format!r}."
        )
    metadata: dict[str, str]
    if isinstance(source, Mapping):
        state_dict, metadata, origin = _check_state_dict(source, "`source`"), {}, "`source`"
    else:
        state_dict, metadata = _read_file(Path(source))
        origin = repr(str(source))
    fmt = _detect_format(set(state_dict), metadata) if format == "auto" else format
    return _load_into(model, state_dict, fmt, origin)


def _load_into(model: nn.Module, state_dict: StateDict, fmt: str, origin: str) -> nn.Module:
    """Convert ``state_dict`` from ``fmt``, check every key and shape, then load it."""
    converted, unmapped = convert_state_dict(model, state_dict, fmt)
    expected = model.state_dict()
    problems = [f"unexpected key {k!r}" for k in unmapped]
    problems += [f"unexpected key {k!r}" for k in converted if k not in expected]
    problems += [f"missing key {k!r}" for k in expected if k not in converted]
    problems += [
        f"mis-shaped key {k!r}: expected {tuple(expected[k].shape)}, received {tuple(v.shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        raise ValueError(
            f"Weights from {origin} ({fmt} format) do not fit {type(model).__name__}: "
            + "; ".join(problems)
            + "."
        )
    model.load_state_dict(converted)
    return model


def save_model(model: nn.Module, path: PathLike) -> None:
    """Save ``model``'s state dict as safetensors, with its architecture in the metadata.

    The file is written to a temporary name and moved into place, so a crash never leaves a
    half-written checkpoint at ``path``.

    Raises:
        ValueError: ``model`` was not built by a registered builder (no architecture to record).

    Example:
        >>> save_model(create_model("mobilenet_v2", num_classes=10), "mnv2.safetensors")
        >>> model = load_model("mnv2.safetensors")
    """
    name, kwargs = getattr(model, "arch_name", None), getattr(model, "arch_kwargs", None)
    if name is None or kwargs is None:
        raise ValueError(
            f"Invalid value for argument `model`: expected a model built by create_model() or a "
            f"registered builder, received a {type(model).__name__} without architecture metadata."
        )
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {_METADATA_KEY: json.dumps({"arch": name, "kwargs": kwargs})}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_model(path: PathLike) -> nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, and load its weights.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is unreadable or lacks sepconv's architecture metadata.
    """
    state_dict, metadata = _read_file(Path(path))
    if _METADATA_KEY not in metadata:
        raise ValueError(
            f"Checkpoint {str(path)!r} has no sepconv architecture metadata: expected a "
            ".safetensors file written by sepconv.save_model(); use load_weights() with a model "
            "you build yourself for other files."
        )
    try:
        spec = json.loads(metadata[_METADATA_KEY])
        name, kwargs = spec["arch"], spec["kwargs"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"Checkpoint {str(path)!r} has malformed sepconv metadata ({err})."
        ) from err
    return _load_into(create_model(name, **kwargs), state_dict, "sepconv", repr(str(path)))
