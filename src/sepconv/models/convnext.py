"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022): a patchify stem, four stages of
ConvNeXt blocks (7x7 depthwise conv, LayerNorm, inverted MLP) and LayerNorm-and-conv
downsampling between them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from torch import nn

from sepconv.layers import ConvNeXtBlock, ConvNormAct, LayerNorm2d
from sepconv.models._registry import Variant, register_variants
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_trunc_normal
from sepconv.models.options import check_arch, check_common
from sepconv.utils.validation import probability

__all__ = ["ConvNeXt", "convnext_small", "convnext_tiny"]


@dataclass(frozen=True)
class CNStage:
    """One stage of Liu et al. 2022, Section 3 / Table 9: ConvNeXt blocks at one resolution."""

    channels: int  # C_i
    repeats: int  # B_i


# Liu et al. 2022, Section 3: ConvNeXt-T: C = (96, 192, 384, 768), B = (3, 3, 9, 3); ConvNeXt-S:
# the same widths, B = (3, 3, 27, 3). Stem: 4x4 conv, stride 4 ("patchify"), then LayerNorm;
# each later stage starts with LayerNorm and a 2x2 conv of stride 2; head: pool, LayerNorm,
# linear. LayerNorm eps 1e-6 throughout.
#             C    B
CN_TINY = (CNStage(96, 3), CNStage(192, 3), CNStage(384, 9), CNStage(768, 3))
CN_SMALL = (CNStage(96, 3), CNStage(192, 3), CNStage(384, 27), CNStage(768, 3))
CN_ARCHS = {"tiny": CN_TINY, "small": CN_SMALL}
CN_PATCH = 4


def _downsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """LayerNorm, then a 2x2 conv of stride 2: ConvNeXt's separate downsampling layer."""
    conv = ConvNormAct(in_channels, out_channels, 2, stride=2, padding=0, norm=None, act=None)
    return nn.Sequential(OrderedDict(norm=LayerNorm2d(in_channels), conv=conv))


class ConvNeXt(Backbone):
    """ConvNeXt: patchify stem -> 4 stages of :class:`~sepconv.layers.ConvNeXtBlock` ->
    pool -> LayerNorm -> linear.

    Stage ``i > 0`` holds ``downsample`` (LayerNorm, 2x2 conv of stride 2) and ``blocks``;
    stage 0 holds only ``blocks``. Layer for layer torchvision's and timm's ``convnext_tiny`` /
    ``convnext_small``; their linear MLP layers are 1x1 convs here (see ConvNeXtBlock).

    Args:
        arch: ``"tiny"`` or ``"small"``.
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: the 4x4 stem conv strides 2 with padding 1 instead of
            4 (overall reduction 16 instead of 32: the 2x2 downsampling convs cannot keep a
            size, and a 28 px input still ends at 1x1); the parameter count does not change.
        drop_rate: Dropout before the classifier (none in the paper).
        drop_path_rate: Stochastic depth of the last block; block ``i`` of ``N`` uses
            ``drop_path_rate * i / (N - 1)`` (as torchvision and timm; T: 0.1, S: 0.4).
        layer_scale: Starting value of every block's layer scale (1e-6).
        features_only: Return the output of each stage (reductions 4, 8, 16, 32).

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``.

    Example:
        >>> model = ConvNeXt(arch="tiny", num_classes=10, small_input=True)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        arch: Literal["tiny", "small"],
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        layer_scale: float = 1e-6,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        probability("drop_path_rate", drop_path_rate)
        table = CN_ARCHS[check_arch(arch, tuple(CN_ARCHS))]
        channels = table[0].channels
        # patchify: non-overlapping 4x4 patches; small_input: overlapping ones, every 2 px
        reduction, padding = (2, 1) if small_input else (CN_PATCH, 0)
        self.stem = ConvNormAct(
            in_chans,
            channels,
            CN_PATCH,
            stride=reduction,
            padding=padding,
            norm=LayerNorm2d,
            act=None,
            bias=True,
        )
        total_blocks = sum(row.repeats for row in table)
        block_index = 0
        stages, feature_info = [], []
        for index, row in enumerate(table):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if index > 0:
                parts["downsample"] = _downsample(channels, row.channels)
                reduction *= 2
            blocks = []
            for _ in range(row.repeats):
                rate = drop_path_rate * block_index / max(1, total_blocks - 1)
                blocks.append(ConvNeXtBlock(row.channels, layer_scale=layer_scale, drop_path=rate))
                block_index += 1
            parts["blocks"] = nn.Sequential(*blocks)
            channels = row.channels
            stages.append(nn.Sequential(parts))
            feature_info.append(FeatureInfo(f"stages.{index}", channels, reduction))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Identity()
        self._finish(
            feature_info=feature_info,
            num_features=channels,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
            pre_logits=LayerNorm2d(channels),
        )
        init_trunc_normal(self)


_LIU = "Liu et al. 2022, Table 1 (ImageNet-1K)"

# The registered variants of the family (one row each, see `Variant`).
#       name, builder kwargs fixed by the variant, input px, top-1 (%), source of the top-1;
#       stochastic depth as the paper's training recipe (Table 5) and torchvision
CN_VARIANTS = (
    Variant("convnext_tiny", {"arch": "tiny"}, 224, 82.1, _LIU, defaults={"drop_path_rate": 0.1}),
    Variant("convnext_small", {"arch": "small"}, 224, 83.1, _LIU, defaults={"drop_path_rate": 0.4}),
)

_BUILDERS = register_variants(
    ConvNeXt,
    CN_VARIANTS,
    module=__name__,
    describe=lambda v: (
        f"ConvNeXt-{v.kwargs['arch'][0].upper()}, stochastic depth "
        f"{v.defaults['drop_path_rate']}; see :class:`ConvNeXt`."
    ),
)
convnext_tiny = _BUILDERS["convnext_tiny"]
convnext_small = _BUILDERS["convnext_small"]
