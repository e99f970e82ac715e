"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017):
entry, middle and exit flows of depthwise separable convolutions with residual connections."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sepconv.layers import ConvNormAct, NormFactory
from sepconv.models._registry import register_model
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.init import init_weights
from sepconv.models.options import check_common, norm_with_eps

__all__ = ["Xception", "xception"]


class SeparableConvBN(nn.Module):
    """[ReLU ->] depthwise 3x3 -> pointwise 1x1 -> BatchNorm: Keras' ``SeparableConv2D`` + BN.

    Unlike :class:`~sepconv.layers.DepthwiseSeparableConv2d`, Xception puts neither a norm nor an
    activation between the depthwise and the pointwise conv (Chollet 2017, Section 4.7 found the
    intermediate activation hurts), and neither conv has a bias: the depth-wise half is a
    :class:`~sepconv.layers.ConvNormAct` without norm and activation, the point-wise half one
    with the norm and no activation.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H, W)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, pre_act: bool, norm: NormFactory
    ) -> None:
        super().__init__()
        # not in place: the block input is still needed by the residual shortcut
        self.act: nn.Module = nn.ReLU() if pre_act else nn.Identity()
        # depth-wise
        self.conv_dw = ConvNormAct(
            in_channels, in_channels, 3, groups=in_channels, norm=None, act=None, bias=False
        )
        # point-wise
        self.conv_pw = ConvNormAct(in_channels, out_channels, 1, norm=norm, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pw(self.conv_dw(self.act(x)))


@dataclass(frozen=True)
class XceptionBlock:
    """One residual block of Chollet 2017, Fig. 5."""

    out_channels: int
    repeats: int  # separable convs in the block
    stride: int  # stride 2: the block ends with a 3x3 max pool, the shortcut is a strided 1x1 conv
    pre_act: bool  # whether the first separable conv is preceded by a ReLU
    grow_first: bool  # the first conv widens to out_channels (else the last one does)


class XceptionResidual(nn.Module):
    """Xception block: separable convs (``rep``), optional max pool, plus a shortcut.

    The shortcut is a 1x1 conv + BN (``skip``) when the shape changes, the identity otherwise.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)`` (rounded up).
    """

    def __init__(
        self, in_channels: int, spec: XceptionBlock, *, stride: int, norm: NormFactory
    ) -> None:
        super().__init__()
        widths = [in_channels]
        for i in range(spec.repeats):
            grows = i == 0 if spec.grow_first else i == spec.repeats - 1
            widths.append(spec.out_channels if grows else widths[-1])
        self.rep = nn.Sequential(
            *(
                SeparableConvBN(widths[i], widths[i + 1], pre_act=spec.pre_act or i > 0, norm=norm)
                for i in range(spec.repeats)
            )
        )
        self.pool: nn.Module = nn.MaxPool2d(3, stride, 1) if stride != 1 else nn.Identity()
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != spec.out_channels:
            self.skip = ConvNormAct(
                in_channels, spec.out_channels, 1, stride=stride, norm=norm, act=None
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.rep(x)) + self.skip(x)


# Chollet 2017, Fig. 5. Stem: 3x3 conv 32 stride 2, 3x3 conv 64 (both unpadded).
# Stages: entry flow (3 blocks, one stage each), middle flow (8 blocks), exit flow (1 block).
#                 c_out  n  s  pre_act grow_first
_ENTRY = (
    XceptionBlock(128, 2, 2, False, True),
    XceptionBlock(256, 2, 2, True, True),
    XceptionBlock(728, 2, 2, True, True),
)
_MIDDLE = XceptionBlock(728, 3, 1, True, True)
_EXIT = XceptionBlock(1024, 2, 2, True, False)
XCEPTION_STAGES: tuple[tuple[XceptionBlock, ...], ...] = (
    *((block,) for block in _ENTRY),
    (_MIDDLE,) * 8,
    (_EXIT,),
)
# Exit flow after the last block: separable convs to 1536 then 2048, each followed by ReLU.
XCEPTION_EXIT_CONVS = (1536, 2048)
# Trunk modules whose outputs form the pyramid (reductions 2, 4, 8, 16, 32).
XCEPTION_LEVELS = ("stem", "stages.0", "stages.1", "stages.3", "final")


class Xception(Backbone):
    """Xception: unpadded stem -> 12 residual blocks -> two separable convs -> pool -> linear.

    Block outputs are taken before the ReLU that opens the next block (as in the reference code);
    the feature map at reduction 16 is the middle flow's output.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (1 for grayscale).
        small_input: For 28-64 px inputs: stride 1 in the first stem conv and in the first block
            (overall reduction 8 instead of 32); the parameter count does not change.
        drop_rate: Dropout before the classifier.
        features_only: Return the stem, stage 0, 1, 3 and final outputs (reductions 2-32).
        bn_eps: BatchNorm epsilon.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes)``; the published input is 299x299.

    Example:
        >>> model = Xception(num_classes=10, in_chans=1, small_input=True)
        >>> model(torch.randn(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
        features_only: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_common(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
        norm = norm_with_eps(bn_eps)
        reduction = 1 if small_input else 2
        self.stem = nn.Sequential(
            ConvNormAct(in_chans, 32, 3, stride=reduction, padding=0, norm=norm),
            ConvNormAct(32, 64, 3, padding=0, norm=norm),
        )
        channels = 64
        widths = {"stem": (channels, reduction)}
        stages = []
        for index, stage in enumerate(XCEPTION_STAGES):
            blocks = []
            for spec in stage:
                stride = 1 if small_input and index == 0 else spec.stride
                reduction *= stride
                blocks.append(XceptionResidual(channels, spec, stride=stride, norm=norm))
                channels = spec.out_channels
            stages.append(nn.Sequential(*blocks))
            widths[f"stages.{index}"] = (channels, reduction)
        self.stages = nn.Sequential(*stages)
        first, second = XCEPTION_EXIT_CONVS
        self.final = nn.Sequential(
            SeparableConvBN(channels, first, pre_act=False, norm=norm),
            SeparableConvBN(first, second, pre_act=True, norm=norm),
            nn.ReLU(),
        )
        widths["final"] = (second, reduction)
        self._finish(
            feature_info=[FeatureInfo(name, *widths[name]) for name in XCEPTION_LEVELS],
            num_features=second,
            num_classes=num_classes,
            drop_rate=drop_rate,
            features_only=features_only,
        )
        init_weights(self, linear="torch_default")


@register_model(input_size=299, top1=79.0, source="Chollet 2017, Table 1; Keras Applications table")
def xception(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    drop_rate: float = 0.0,
    features_only: bool = False,
    bn_eps: float = 1e-5,
) -> Xception:
    """Xception; see :class:`Xception`."""
    return Xception(
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        drop_rate=drop_rate,
        features_only=features_only,
        bn_eps=bn_eps,
    )
