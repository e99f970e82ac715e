"""``sepconv export``: a checked ONNX file on disk, and clean errors for bad arguments."""

from __future__ import annotations

import subprocess
import sys

import onnx
import onnxruntime as ort
import pytest
import torch

from sepconv import create_model, save_model
from sepconv.cli import main
from sepconv.data import load_fashion_mnist
from sepconv.deploy import prepare_images
from sepconv.train import update_bn_statistics


def test_export_mobilenet_v2_writes_a_checked_file(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    code = main(["export", "mobilenet_v2", "--format", "onnx", "--output", str(out),
                 "--input-size", "64"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "max rel error, batch 1" in printed and "max rel error, batch 8" in printed
    # 3,504,872 parameters, minus 2 * C per BatchNorm, plus C of bias per folded conv
    assert "3,504,872" in printed and "3,487,816" in printed
    onnx.checker.check_model(str(out), full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 64]
    logits = session.run(None, {"input": torch.randn(2, 3, 64, 64).numpy()})[0]
    assert logits.shape == (2, 1000)


def test_export_with_weights_static_batch_and_no_folding(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", num_classes=10, in_chans=1, small_input=True)
    weights = tmp_path / "w.safetensors"
    save_model(model, weights)
    out = tmp_path / "m.onnx"
    code = main(
        ["export", "mobilenet_v1_025", "--format", "onnx", "--output", str(out),
         "--weights", str(weights), "--num-classes", "10", "--in-chans", "1", "--small-input",
         "--input-size", "28", "--static-batch", "--no-fold-bn"]
    )  # fmt: skip
    assert code == 0
    assert "params (BN not folded)" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 1, 28, 28]
    # The file holds the loaded weights: same outputs as the saved model.
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert abs(got - expected).max() <= 1e-4 * abs(expected).max()


def test_export_user_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "tinynet.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))\n"
    )
    monkeypatch.chdir(tmp_path)
    code = main(["export", "tinynet:build", "--format", "onnx", "--input-size", "16"])
    assert code == 0
    assert (tmp_path / "build.onnx").is_file()  # default output: ./ATTR.onnx
    code = main(["export", "tinynet:build", "--format", "onnx", "--num-classes", "3"])
    assert code == 2
    assert "`--num-classes`/`--small-input`: they configure registered models" in (
        capsys.readouterr().err
    )


def test_bad_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "mobilenet_v2", "--format", "tflite"])
    assert info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_unknown_model_is_a_clean_error(tmp_path, capsys):
    code = main(["export", "mobilenet_v3", "--format", "onnx", "--output", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Unknown model name 'mobilenet_v3'" in err and "Did you mean" in err
    assert list(tmp_path.iterdir()) == []


def test_untraceable_model_fails_with_exit_code_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "branchy.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x if x.sum() > 0 else -x\n"
    )
    monkeypatch.chdir(tmp_path)
    code = main(["export", "branchy:Net", "--format", "onnx", "--input-size", "8"])
    assert code == 1
    assert "Cannot export Net to ONNX" in capsys.readouterr().err
    assert not (tmp_path / "Net.onnx").exists()


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "sepconv.cli", "export", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "--static-batch" in result.stdout and "{onnx}" in result.stdout


def test_export_checks_on_real_images_when_asked(tmp_path, capsys):
    """--check-data: the check runs on test images, normalised by their own statistics here."""
    try:
        test = load_fashion_mnist("test")
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", num_classes=10, in_chans=1, small_input=True)
    update_bn_statistics(model, prepare_images(test.images[:64]).split(32))
    weights = tmp_path / "w.safetensors"
    save_model(model, weights)
    argv = ["export", "efficientnet_b0", "--format", "onnx", "--weights", str(weights),
            "--num-classes", "10", "--small-input", "--input-size", "28"]  # fmt: skip
    out = tmp_path / "m.onnx"
    code = main([*argv, "--in-chans", "1", "--output", str(out), "--check-data", "fashion-mnist"])
    assert code == 0 and out.is_file()
    assert "test images of fashion-mnist" in capsys.readouterr().out
    rgb = ["export", "mobilenet_v1_025", "--format", "onnx", "--input-size", "28"]
    code = main([*rgb, "--output", str(tmp_path / "rgb.onnx"), "--check-data", "fashion-mnist"])
    assert code != 0 and not (tmp_path / "rgb.onnx").exists()
    assert "`--check-data`: 'fashion-mnist' has images of 1 channel(s), the model takes 3" in (
        capsys.readouterr().err
    )
