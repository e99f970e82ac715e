"""One model file format: what save_model, `sepconv train` and `sepconv convert` write, every
reader reads, files of older versions included (tests/data/legacy)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import sepconv.train
from sepconv.cli import main
from sepconv.convert import separabilize, standard_twin
from sepconv.data import load_fashion_mnist
from sepconv.models import create_model, load_model, load_weights, save_model
from sepconv.models.modelfile import (
    FORMAT_VERSION,
    ModelRecord,
    read_model_file,
    write_model_file,
)
from sepconv.models.options import small_input_for
from sepconv.train.evaluate import to_model_input

LEGACY = Path(__file__).parent / "data" / "legacy"


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# ---------------------------------------------------------------- files of the previous version
@pytest.mark.parametrize(
    ("name", "kind", "arch"),
    [
        ("save_model", "weights", "mobilenet_v1"),
        ("train_last", "checkpoint", "mobilenet_v1"),
        ("train_model", "weights", "mobilenet_v1"),
        ("convert", "weights", "mobilenet_v1_025"),
    ],
)
def test_files_of_the_previous_format_load_with_the_logits_they_were_written_with(
    name: str, kind: str, arch: str
) -> None:
    expected = load_file(LEGACY / "expected.safetensors")
    path = LEGACY / f"{name}.safetensors"
    file = read_model_file(path)
    assert (file.format, file.kind, file.record.arch) == (1, kind, arch)
    model = load_model(path)
    torch.testing.assert_close(logits(model, expected["input"]), expected[name])


def test_previous_format_records_keep_their_extras() -> None:
    trained = read_model_file(LEGACY / "train_model.safetensors").record
    assert trained.kwargs == {
        "num_classes": 10,
        "in_chans": 1,
        "small_input": True,
        "width_mult": 0.1,
    }
    assert trained.source == "ema" and trained.config is not None
    assert trained.config["batch_size"] == 32
    assert trained.classes is not None and trained.classes[0] == "T-shirt/top"
    assert trained.mean is not None and trained.std is not None
    assert trained.provenance["data"].startswith("fashion-mnist:")
    checkpoint = read_model_file(LEGACY / "train_last.safetensors")
    assert checkpoint.state["global_step"] == 2 and checkpoint.state["distilled"] is False
    converted = read_model_file(LEGACY / "convert.safetensors").record
    assert converted.kwargs == {"num_classes": 10, "in_chans": 1}
    assert converted.decoupled == {"stem.conv": 1}


def test_checkpoint_gives_its_average_and_load_weights_reads_it() -> None:
    expected = load_file(LEGACY / "expected.safetensors")
    # The checkpoint holds two different models; the average is the one to load.
    tensors = load_file(LEGACY / "train_last.safetensors")
    raw = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    model = create_model(
        "mobilenet_v1", num_classes=10, in_chans=1, small_input=True, width_mult=0.1
    )
    load_weights(model, LEGACY / "train_last.safetensors")
    torch.testing.assert_close(logits(model, expected["input"]), expected["train_last"])


# ---------------------------------------------------------------- the format itself
def test_save_model_writes_the_current_format(tmp_path: Path) -> None:
    model = create_model("mobilenet_v1_025", num_classes=3, in_chans=1)
    save_model(model, tmp_path / "m.safetensors")
    file = read_model_file(tmp_path / "m.safetensors")
    assert (file.format, file.kind, file.state) == (FORMAT_VERSION, "weights", {})
    assert file.record == ModelRecord("mobilenet_v1_025", {"num_classes": 3, "in_chans": 1})


def test_record_round_trips_every_field(tmp_path: Path) -> None:
    record = ModelRecord(
        "mobilenet_v1_025",
        {"num_classes": 10, "in_chans": 1, "small_input": True},
        decoupled={"stem.conv": 2},
        mean=(0.25,),
        std=(0.5,),
        classes=tuple("abcdefghij"),
        config={"lr": 0.1},
        source="model",
        provenance={"data": "fashion-mnist"},
    )
    model = record.build()
    write_model_file(tmp_path / "r.safetensors", model.state_dict(), record)
    assert read_model_file(tmp_path / "r.safetensors").record == record
    x = torch.randn(1, 1, 28, 28)
    torch.testing.assert_close(logits(load_model(tmp_path / "r.safetensors"), x), logits(model, x))


def test_malformed_header_and_user_models_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(1)}, str(bad), metadata={"sepconv": "{not json"})
    with pytest.raises(ValueError, match=r"bad\.safetensors has malformed sepconv metadata"):
        load_model(bad)
    user = tmp_path / "user.safetensors"
    write_model_file(user, nn.Linear(2, 2).state_dict(), ModelRecord.of(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"no registered architecture.*load_weights"):
        load_model(user)


def test_small_input_for_is_the_64_px_rule() -> None:
    assert [small_input_for(side) for side in (28, 32, 64, 65, 224)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_convert_output_loads_as_the_converted_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = create_model("mobilenet_v1_025", num_classes=10, in_chans=1)
    weights, out = tmp_path / "original.safetensors", tmp_path / "converted.safetensors"
    save_model(original, weights)
    argv = ["convert", "mobilenet_v1_025", "--weights", str(weights), "--num-classes", "10",
            "--in-chans", "1", "--rank", "2", "--input-size", "28", "28",
            "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    converted, _ = separabilize(original, rank=2)
    record = read_model_file(out).record
    assert record.decoupled == {"stem.conv": 2}
    assert record.provenance["converted_from"] == "mobilenet_v1_025"
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(logits(load_model(out), x), logits(converted, x))


# ---------------------------------------------------------------- train, then reload
def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fashion_mnist_subset(folder: Path, train: int, test: int) -> None:
    """The first images of the real Fashion-MNIST, in its own IDX format."""
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        try:
            data = load_fashion_mnist(split)
        except FileNotFoundError as err:
            pytest.skip(f"Fashion-MNIST is not installed: {err}")
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", data.images[:count, 0].numpy())
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", data.labels[:count].numpy())


def test_trained_files_reload_with_load_model_and_evaluate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, out = tmp_path / "fmnist", tmp_path / "run"
    data.mkdir()
    _fashion_mnist_subset(data, train=192, test=100)
    trainers: list[sepconv.train.Trainer] = []

    class Recording(sepconv.train.Trainer):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(sepconv.train, "Trainer", Recording)
    spec = f"fashion-mnist:{data}"
    train = ["train", "--model", "mobilenet_v1_025", "--data", spec, "--epochs", "1",
             "--batch-size", "64", "--device", "cpu", "--out", str(out)]  # fmt: skip
    x = torch.randn(4, 1, 28, 28)

    # Stopped after 2 of 3 steps: the checkpoint alone is there, and load_model reads it.
    assert main([*train, "--max-steps", "2"]) == 0
    assert not (out / "model.safetensors").exists()
    expected = logits(trainers[-1].eval_model, x)
    torch.testing.assert_close(logits(load_model(out / "last.safetensors"), x), expected)

    # Resumed to the end of the epoch: the final weights too.
    assert main([*train, "--resume"]) == 0
    trainer = trainers[-1]
    assert trainer.global_step == 3
    expected = logits(trainer.eval_model, x)
    for name in ("last.safetensors", "model.safetensors"):
        torch.testing.assert_close(logits(load_model(out / name), x), expected)

    evaluated: list[nn.Module] = []
    real_evaluate = sepconv.train.evaluate

    def recording_evaluate(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        evaluated.append(model)
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(sepconv.train, "evaluate", recording_evaluate)
    metrics = tmp_path / "metrics.json"
    for name in ("last.safetensors", "model.safetensors"):
        argv = ["evaluate", "mobilenet_v1_025", "--weights", str(out / name), "--data", spec,
                "--json", str(metrics)]  # fmt: skip
        assert main(argv) == 0
        torch.testing.assert_close(logits(evaluated[-1], x), expected)
        # The reported predictions are those of the trained model on the test images.
        test = load_fashion_mnist("test", data)
        images = to_model_input(
            test.images, trainer.mean, trainer.std, device=torch.device("cpu"), channels_last=False
        )
        predicted = logits(trainer.eval_model, images).argmax(1)
        confusion = torch.zeros(10, 10, dtype=torch.long)
        for truth, guess in zip(test.labels.tolist(), predicted.tolist(), strict=True):
            confusion[truth, guess] += 1
        report = json.loads(metrics.read_text())
        assert report["confusion"] == confusion.tolist()
        assert report["accuracy"] == pytest.approx(float((predicted == test.labels).float().mean()))


def test_twins_and_converted_models_rebuild_from_their_files(tmp_path: Path) -> None:
    # A standard twin and a separabilized model are new architectures: their files must say so.
    x = torch.randn(2, 1, 28, 28)
    base = create_model("mobilenet_v1_025", num_classes=10, in_chans=1, small_input=True)
    twin, pairs = standard_twin(base.eval(), torch.zeros(1, 1, 28, 28))
    assert pairs > 0
    vgg = create_model("vgg16", num_classes=10, in_chans=1, small_input=True).eval()
    converted = separabilize(vgg, rank=2).model
    for name, model in (("twin", twin), ("converted", converted)):
        save_model(model, tmp_path / f"{name}.safetensors")
        loaded = load_model(tmp_path / f"{name}.safetensors").eval()
        # Same structure (every tensor name and shape) and the same function.
        assert {k: v.shape for k, v in loaded.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    assert read_model_file(tmp_path / "twin.safetensors").record.twin == (1, 28, 28)
    assert read_model_file(tmp_path / "converted.safetensors").record.decoupled
