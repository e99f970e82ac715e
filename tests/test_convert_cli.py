"""``sepconv convert``: real files in, a loadable converted state dict and JSON report out."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sepconv.train
from sepconv import create_model, save_model, separabilize
from sepconv.cli import main
from sepconv.data import channel_stats, load_fashion_mnist
from sepconv.modelfile.format import read_model_file


def test_convert_writes_a_state_dict_that_rebuilds_the_model(tmp_path, capsys):
    torch.manual_seed(0)
    original = create_model("mobilenet_v2", num_classes=4)
    weights = tmp_path / "mnv2.safetensors"
    save_model(original, weights)
    out, report = tmp_path / "mnv2_r2.safetensors", tmp_path / "report.json"
    code = main(
        ["convert", "mobilenet_v2", "--weights", str(weights), "--num-classes", "4", "--rank", "2",
         "--input-size", "32", "32",
         "--output", str(out), "--report", str(report)]
    )  # fmt: skip
    assert code == 0
    assert "Decoupled convolutions" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["model"] == "mobilenet_v2"
    assert {layer["rank"] for layer in summary["layers"]} == {2}
    # The file holds what separabilize computes from the same weights.
    rebuilt, _ = separabilize(original, rank=2)
    state = load_file(out)
    assert state.keys() == rebuilt.state_dict().keys()
    for key, value in rebuilt.state_dict().items():
        torch.testing.assert_close(state[key], value)
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_weights_file_is_a_clean_error(tmp_path, capsys):
    code = main(["convert", "mobilenet_v2", "--weights", str(tmp_path / "none.pt")])
    assert code == 2
    assert "none.pt" in capsys.readouterr().err


def test_rank_and_energy_are_exclusive():
    with pytest.raises(SystemExit):
        main(["convert", "mobilenet_v2", "--rank", "2", "--energy", "0.9"])


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fashion_mnist_files(folder: Path, high: int = 256) -> None:
    """A tiny Fashion-MNIST lookalike in the real IDX format, pixels in ``[0, high)``."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 64), ("t10k", 16)):
        images = rng.integers(0, high, (count, 28, 28))
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, count))


def test_convert_with_distillation_on_fashion_mnist_files(tmp_path):
    _fashion_mnist_files(tmp_path)
    torch.manual_seed(0)
    original = create_model("mobilenet_v1", in_chans=1, num_classes=10)
    weights = tmp_path / "original.safetensors"
    save_model(original, weights)
    out, report = tmp_path / "small.safetensors", tmp_path / "small.json"
    code = main(
        ["convert", "mobilenet_v1", "--weights", str(weights), "--in-chans", "1",
         "--num-classes", "10", "--rank", "1",
         "--input-size", "28", "28", "--finetune-epochs", "1", "--batch-size", "32",
         "--data", f"fashion-mnist:{tmp_path}", "--output", str(out), "--report", str(report),
         "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    converted, _ = separabilize(original, rank=1)
    state = load_file(out)
    assert state.keys() == converted.state_dict().keys()
    # The fine-tune trained the converted weights: they differ from the plain conversion's.
    assert any(not torch.equal(state[k], v) for k, v in converted.state_dict().items())
    accuracy = json.loads(report.read_text())["accuracy"]
    assert set(accuracy) == {"original", "converted", "finetuned"}
    assert all(value in {k / 16 for k in range(17)} for value in accuracy.values())  # 16 images


def test_finetuned_file_records_the_normalisation_evaluate_uses(tmp_path, monkeypatch):
    # As `sepconv train` does: the file says how its inputs were normalised during training.
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    _fashion_mnist_files(data)
    out = tmp_path / "converted.safetensors"
    code = main(
        ["convert", "mobilenet_v1_025", "--in-chans", "1", "--num-classes", "10", "--rank", "1",
         "--input-size", "28", "28", "--finetune-epochs", "1", "--batch-size", "32",
         "--data", f"fashion-mnist:{data}", "--output", str(out), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    train = load_fashion_mnist("train", data)
    mean, std = channel_stats(train.images)
    record = read_model_file(out).record
    assert (record.mean, record.std, record.classes) == (mean, std, train.classes)
    assert record.config is not None and record.config["epochs"] == 1
    assert record.source == "model" and record.provenance["data"] == f"fashion-mnist:{data}"

    # Evaluated on other images (darker: other statistics), the model still gets the inputs
    # it was trained on: normalised with the recorded statistics, not those of the new data.
    _fashion_mnist_files(other, high=128)
    assert channel_stats(load_fashion_mnist("train", other).images)[0] != mean
    seen = []
    real = sepconv.train.evaluate

    def recording(model, dataset, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((kwargs["mean"], kwargs["std"]))
        return real(model, dataset, **kwargs)

    monkeypatch.setattr(sepconv.train, "evaluate", recording)
    argv = ["evaluate", "mobilenet_v1_025", "--weights", str(out),
            "--data", f"fashion-mnist:{other}"]  # fmt: skip
    assert main(argv) == 0
    assert seen == [(list(mean), list(std))]


def test_finetune_needs_fashion_mnist_shapes(tmp_path, capsys):
    _fashion_mnist_files(tmp_path)
    code = main(
        ["convert", "mobilenet_v1", "--rank", "1", "--finetune-epochs", "1",
         "--data", f"fashion-mnist:{tmp_path}"]
    )  # fmt: skip
    assert code == 2
    assert "`--in-chans`/`--num-classes`" in capsys.readouterr().err
