"""fuse(): every BatchNorm folded, the same outputs, and the parameter count the algebra predicts.

Every BatchNorm gets random running statistics and affine parameters first, so that folding
changes every weight it touches. Outputs are compared in float32: the folded model differs from
the original by at most 7e-7 relative on these inputs (measured), well inside the 1e-5 checked.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import randomize_norms
from torch import nn

from sepconv import create_model, fuse, list_models

TOL = 1e-5


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def biased_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules())


def check_folded(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Fold ``model`` (eval mode, random norms) and check outputs, parameters and leftovers."""
    bns = norms(model)
    before = copy.deepcopy(model.state_dict())
    fused = fuse(model)

    assert norms(fused) == []
    assert norms(model) == bns  # the input model keeps its norms and values
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # In these models every BatchNorm follows a conv without bias, so each fold creates one bias
    # of C values and removes the BN's 2 * C parameters (gamma and beta).
    assert biased_convs(fused) == biased_convs(model) + len(bns)
    removed = sum(bn.weight.numel() + bn.bias.numel() for bn in bns)
    created = sum(bn.num_features for bn in bns)
    assert n_params(fused) == n_params(model) - removed + created

    assert not fused.training
    assert not any(p.requires_grad for p in fused.parameters())
    with torch.no_grad():
        assert rel_error(fused(x), model(x)) <= TOL
    return fused


@pytest.mark.parametrize("name", list_models())
def test_fuse_every_registered_model(name):
    torch.manual_seed(0)
    # small_input keeps the feature maps of a 32x32 input large enough for every model
    model = randomize_norms(create_model(name, num_classes=10, small_input=True)).eval()
    check_folded(model, torch.randn(2, 3, 32, 32))


def build_interop(library: str, name: str) -> nn.Module:
    """A randomly initialised torchvision or timm model (nothing downloaded)."""
    if library == "torchvision":
        return pytest.importorskip("torchvision").models.get_model(name, num_classes=10)
    return pytest.importorskip("timm").create_model(name, num_classes=10)


INTEROP = [
    ("torchvision", "mobilenet_v2"),
    ("torchvision", "efficientnet_b0"),
    ("torchvision", "resnet50"),
    ("timm", "mobilenetv1_100"),
    ("timm", "efficientnet_b0"),  # timm's BatchNormAct2d: norm and activation in one module
]


@pytest.mark.parametrize(("library", "name"), INTEROP)
def test_fuse_torchvision_and_timm_models(library, name):
    torch.manual_seed(0)
    model = randomize_norms(build_interop(library, name)).eval()
    check_folded(model, torch.randn(2, 3, 64, 64))


def test_timm_norm_act_becomes_its_activation():
    timm = pytest.importorskip("timm")
    model = randomize_norms(build_interop("timm", "efficientnet_b0")).eval()
    norm_act = timm.layers.BatchNormAct2d
    assert isinstance(model.bn1, norm_act) and isinstance(model.bn1.act, nn.SiLU)
    fused = fuse(model)
    assert not any(isinstance(m, norm_act) for m in fused.modules())
    # The stem's norm-act is now its dropout (Identity) then its SiLU.
    assert [type(m) for m in fused.bn1] == [nn.Identity, nn.SiLU]


def test_training_mode_model_is_not_modified():
    model = randomize_norms(create_model("mobilenet_v2_050", num_classes=10, small_input=True))
    assert model.training
    fused = fuse(model)
    assert model.training and all(bn.training for bn in norms(model))
    assert len(norms(model)) > 0 and norms(fused) == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # The copy is folded from the running statistics, i.e. it computes the eval-mode model.
        assert rel_error(fused(x), copy.deepcopy(model).eval()(x)) <= TOL
    assert model.training


@settings(max_examples=40, deadline=None)
@given(
    groups=st.sampled_from([1, 2, 4]),
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    kernel=st.sampled_from([1, 3, 5]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    affine=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_folding_is_exact_for_any_conv(
    groups, c_in, c_out, kernel, stride, dilation, bias, affine, eps, seed
):
    """Folding preserves ``bn(conv(x))`` for grouped, strided, dilated, biased convs and
    non-affine norms (channel counts are multiples of ``groups``)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(
        c_in * groups, c_out * groups, kernel, stride=stride, padding=kernel // 2,
        dilation=dilation, groups=groups, bias=bias,
    )  # fmt: skip
    model = randomize_norms(
        nn.Sequential(conv, nn.BatchNorm2d(c_out * groups, eps=eps, affine=affine)), seed
    ).eval()
    fused = fuse(model)
    assert isinstance(fused[1], nn.Identity)
    expected_params = n_params(model) - 2 * c_out * groups * affine + c_out * groups * (not bias)
    assert n_params(fused) == expected_params
    x = torch.randn(2, c_in * groups, 9, 9)
    with torch.no_grad():
        assert rel_error(fused(x), model(x)) <= TOL


class TwoReaders(nn.Module):
    """The conv output feeds the norm and a shortcut: folding would change the shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class SharedConv(nn.Module):
    """One conv called twice, once before the norm: it cannot be folded for one call only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv(x)


class Branchy(nn.Module):
    """Untraceable forward (control flow on values) around a traceable child."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if y.sum() > 0:
            y = -y
        return self.bn(self.conv(y))


@pytest.mark.parametrize("model_cls", [TwoReaders, SharedConv])
def test_pairs_that_must_not_be_folded_are_kept(model_cls):
    model = randomize_norms(model_cls()).eval()
    fused = fuse(model)
    assert isinstance(fused.bn, nn.BatchNorm2d)
    assert n_params(fused) == n_params(model)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert rel_error(fused(x), model(x)) <= TOL


def test_untraceable_model_is_folded_where_the_data_flow_is_known():
    model = randomize_norms(Branchy()).eval()
    fused = fuse(model)
    # The Sequential child traces: folded. conv -> bn is wired in the untraceable forward:
    # not guessed, kept.
    assert isinstance(fused.block[1], nn.Identity)
    assert isinstance(fused.bn, nn.BatchNorm2d)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert rel_error(fused(x), model(x)) <= TOL


def test_norm_not_after_a_conv_is_kept():
    model = randomize_norms(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3))).eval()
    fused = fuse(model)
    assert isinstance(fused[0], nn.BatchNorm2d)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert rel_error(fused(x), model(x)) <= TOL


def test_fuse_rejects_a_non_module():
    with pytest.raises(TypeError, match=r"argument `model`: expected an nn.Module, received dict"):
        fuse({})  # type: ignore[arg-type]
