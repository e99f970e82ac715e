"""sepconv checkpoints (safetensors + architecture metadata) and the errors of load_weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sepconv.modelfile import load_model, load_weights, save_model
from sepconv.models import create_model


def trained_like(name: str, **kwargs: object) -> nn.Module:
    """A small model whose BN statistics are not the defaults, as after training."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, kwargs.get("in_chans", 3), 32, 32))  # type: ignore[arg-type]
    return model.eval()


def test_safetensors_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = trained_like("mobilenet_v1_025", num_classes=7, in_chans=1, small_input=True)
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    rebuilt = load_model(path)
    assert type(rebuilt) is type(model)
    assert rebuilt.arch_name == "mobilenet_v1_025"
    assert rebuilt.arch_kwargs == {"num_classes": 7, "in_chans": 1, "small_input": True}
    original, loaded = model.state_dict(), rebuilt.state_dict()
    assert original.keys() == loaded.keys()
    for key, tensor in original.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left


def test_load_weights_from_sepconv_file_into_built_model(tmp_path: Path) -> None:
    model = trained_like("efficientnet_b0", num_classes=4)
    path = tmp_path / "b0.safetensors"
    save_model(model, path)
    fresh = load_weights(create_model("efficientnet_b0", num_classes=4), path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_truncated_safetensors_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_model(create_model("mobilenet_v1_025"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*truncated or corrupted"):
        load_model(path)
    with pytest.raises(ValueError, match=r"cut\.safetensors"):
        load_weights(create_model("mobilenet_v1_025"), path)


def test_corrupted_pth_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    torch.save(create_model("mobilenet_v1_025").state_dict(), path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ValueError, match=r"broken\.pth.*not a readable PyTorch state dict"):
        load_weights(create_model("mobilenet_v1_025"), path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match=r"whole_model\.pth"):
        load_weights(create_model("mobilenet_v1_025"), path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load_model(tmp_path / "nope.safetensors")


def test_file_without_architecture_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match=r"plain\.safetensors.*no sepconv architecture metadata"):
        load_model(path)


def test_every_missing_unexpected_and_misshaped_key_is_named() -> None:
    model = create_model("mobilenet_v1_025", num_classes=10)
    state = dict(create_model("mobilenet_v1_025", num_classes=10).state_dict())
    del state["stem.conv.weight"], state["stem.bn.bias"]
    state["stages.9.0.conv_dw.weight"] = torch.zeros(1)
    state["classifier.bias"] = torch.zeros(11)
    with pytest.raises(ValueError) as err:
        load_weights(model, state, format="sepconv")
    message = str(err.value)
    for fragment in (
        "missing key 'stem.conv.weight'",
        "missing key 'stem.bn.bias'",
        "unexpected key 'stages.9.0.conv_dw.weight'",
        "mis-shaped key 'classifier.bias': expected (10,), received (11,)",
    ):
        assert fragment in message


def test_unsupported_format_pair_and_bad_format() -> None:
    with pytest.raises(ValueError, match=r"no 'torchvision' key map for Xception; supported: .*"):
        load_weights(
            create_model("xception"), {"conv1.weight": torch.zeros(1)}, format="torchvision"
        )
    with pytest.raises(ValueError, match=r"`format`: expected 'auto'.*received 'keras'"):
        load_weights(create_model("mobilenet_v1_025"), {}, format="keras")  # type: ignore[arg-type]


def test_undetectable_format() -> None:
    with pytest.raises(ValueError, match=r"could not detect the source"):
        load_weights(create_model("mobilenet_v1_025"), {"foo.weight": torch.zeros(1)})


def test_save_model_needs_a_registered_architecture(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"`model`: expected a model built by create_model"):
        save_model(nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []
