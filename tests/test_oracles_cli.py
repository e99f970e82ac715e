"""Command-line numbers against values computed here: ``sepconv demo``'s parameter and MAC
counts from their closed forms, ``sepconv evaluate``'s accuracies (eager and deployed) from
float64 logits of the weights file read back independently."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sepconv.cli import main
from sepconv.cli.demo import EXAMPLE_LAYERS
from sepconv.data import load_dataset
from sepconv.modelfile.weights import save_model
from sepconv.models import create_model


@pytest.mark.parametrize("k", [3, 5])
def test_demo_counts_match_the_closed_forms(
    k: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # every column (80 leaves some out: tests/test_cli_width)
    assert main(["demo", "-k", str(k)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "->" in line]
    assert len(rows) == len(EXAMPLE_LAYERS)
    for (c_in, c_out, size), row in zip(EXAMPLE_LAYERS, rows, strict=True):
        cells = [c.strip() for c in re.split(r"[│|]", row) if c.strip()]
        standard = c_in * c_out * k * k  # one KxK filter per (input, output) pair
        separable = c_in * k * k + c_in * c_out  # depthwise KxK per input, then 1x1
        positions = size * size  # stride 1, "same" padding
        assert cells[0] == f"{c_in}->{c_out} @{size}"
        assert cells[1] == f"{standard:,}" and cells[2] == f"{separable:,}"
        assert cells[3] == f"{standard * positions / 1e6:,.1f}M"
        assert cells[4] == f"{separable * positions / 1e6:,.1f}M"
        assert float(cells[5].rstrip("x")) == pytest.approx(standard / separable, abs=0.05)
        # Howard et al. 2017, eq. 5: separable / standard = 1 / C_out + 1 / K^2
        inverse = float(cells[6].removeprefix("1/"))
        assert 1 / inverse == pytest.approx(1 / c_out + 1 / k**2, rel=1e-3)
        assert separable / standard == pytest.approx(1 / c_out + 1 / k**2)


def _image_folder(root: Path, classes: int = 3, per_class: int = 8) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                arr[..., c] //= 3  # a colour cast per class
                Image.fromarray(arr).save(folder / f"{i}.png")


@pytest.mark.parametrize(
    ("backend", "precision"), [("eager", "fp32"), ("onnxruntime", "fp32"), ("auto", "fp32")]
)
def test_evaluate_accuracies_match_float64_logits(
    tmp_path: Path, backend: str, precision: str
) -> None:
    _image_folder(tmp_path / "imgs")
    spec = f"imagefolder:{tmp_path / 'imgs'}"
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", num_classes=3, small_input=True)
    # BatchNorm statistics of these images (one cumulative pass in training mode), so that
    # the pooled features, and with them the predictions, vary from image to image.
    images = load_dataset(spec, "test", image_size=16).images.float() / 255
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        model.train()((images - images.mean()) / images.std())
        model.classifier.weight.normal_(0, 1.0)
    model.eval()
    weights = tmp_path / "m.safetensors"
    save_model(model, weights)
    metrics = tmp_path / "metrics.json"
    code = main(
        ["evaluate", "mobilenet_v1_025", "--weights", str(weights), "--data", spec,
         "--image-size", "16", "--batch-size", "8", "--backend", backend,
         "--precision", precision, "--threads", "1", "--json", str(metrics)]
    )  # fmt: skip
    assert code == 0
    result = json.loads(metrics.read_text())

    # float64 logits of the file's weights; the file records no statistics, so the images are
    # normalised by the training split's per-channel population mean and std
    train = load_dataset(spec, "train", image_size=16).images.double().numpy() / 255
    test = load_dataset(spec, "test", image_size=16)
    mean = train.mean(axis=(0, 2, 3))[None, :, None, None]
    std = train.std(axis=(0, 2, 3))[None, :, None, None]
    x = torch.from_numpy((test.images.double().numpy() / 255 - mean) / std)
    reference = create_model("mobilenet_v1_025", num_classes=3, small_input=True).double()
    reference.load_state_dict({k: v.double() for k, v in load_file(weights).items()})
    with torch.no_grad():
        predicted = reference.eval()(x).argmax(1)
    accuracy = float((predicted == test.labels).double().mean())
    assert len(set(predicted.tolist())) > 1  # not a constant classifier

    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # a float32 ratio
    deployed = result["deployed"]
    assert deployed["samples"] == len(test.labels)
    assert deployed["reference_accuracy"] == pytest.approx(accuracy, abs=1e-6)  # a float32 ratio
    # the deployed model can differ from eager only on the images where they disagree
    disagree = 1 - deployed["agreement"]
    assert abs(deployed["candidate_accuracy"] - accuracy) <= disagree + 1e-6
    if backend == "eager":
        assert deployed["agreement"] == 1.0
    else:  # fp32 ONNX Runtime or the fastest fp32 backend: the same argmax up to float32 ties
        assert deployed["agreement"] >= 0.95
    share = deployed["auto_race_busy_share"]  # only a race reads how busy the machine was
    assert share is None if backend != "auto" else (share is None or 0.0 <= share <= 1.0)
    assert (backend == "auto") == bool(deployed["auto_timings_ms"])
