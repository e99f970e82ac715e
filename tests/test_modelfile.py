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
from sepconv.data import ImageDataset, load_fashion_mnist
from sepconv.data.normalize import to_model_input
from sepconv.layers import DepthwiseSeparableConv2d
from sepconv.modelfile.format import (
    FORMAT_VERSION,
    LEGACY_CONVERT_KEY,
    read_model_file,
    write_model_file,
    write_safetensors,
)
from sepconv.modelfile.interop import upgrade_keys
from sepconv.modelfile.record import ModelRecord
from sepconv.modelfile.weights import load_model, load_weights, save_model
from sepconv.models import create_model
from sepconv.models.options import small_input_for
from sepconv.models.xception import SeparableConvBN

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


def test_a_checkpoint_of_the_previous_format_resumes_to_the_weights_it_exported(
    tmp_path: Path,
) -> None:
    # The run of generate.py: 2 steps of batch 32 on the first 64 Fashion-MNIST images, EMA 0.9.
    checkpoint = read_model_file(LEGACY / "train_last.safetensors")
    record = checkpoint.record
    assert record.arch is not None and record.config is not None
    try:
        full = load_fashion_mnist("train")
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    train = ImageDataset(full.images[:64], full.labels[:64], full.classes)
    trainer = sepconv.train.Trainer(
        create_model(record.arch, **record.kwargs),
        sepconv.train.TrainConfig.from_dict(dict(record.config)),
        train,
        out_dir=tmp_path,
    )
    history = trainer.fit(resume=LEGACY / "train_last.safetensors")
    assert (trainer.epoch, trainer.global_step) == (1, 2)
    assert history == checkpoint.state["history"]
    exported = read_model_file(tmp_path / "model.safetensors")
    assert (exported.record.mean, exported.record.source) == (record.mean, "ema")
    reference = read_model_file(LEGACY / "train_model.safetensors").tensors
    assert exported.tensors.keys() == reference.keys()
    assert all(torch.equal(exported.tensors[k], reference[k]) for k in reference)


# ---------------------------------------------------------------- block names of earlier versions
def _earlier_names(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the names earlier versions gave the parts of a separable
    block, which held its convs and norms as direct children: ``conv_dw``, ``bn_dw``,
    ``conv_pw``, ``bn_pw`` (``DepthwiseSeparableConv2d``) and ``conv_dw``, ``conv_pw``, ``bn``
    (Xception's ``SeparableConvBN``)."""
    renames: dict[str, str] = {}
    for name, module in model.named_modules():
        at = f"{name}." if name else ""
        if isinstance(module, DepthwiseSeparableConv2d):
            norms = {"conv_dw.bn.": "bn_dw.", "conv_pw.bn.": "bn_pw."}
        elif isinstance(module, SeparableConvBN):
            norms = {"conv_pw.bn.": "bn."}
        else:
            continue
        convs = {"conv_dw.conv.": "conv_dw.", "conv_pw.conv.": "conv_pw."}
        renames.update({at + now: at + before for now, before in {**convs, **norms}.items()})
    renamed = {}
    for key, tensor in model.state_dict().items():
        now = next((n for n in renames if key.startswith(n)), None)
        renamed[key if now is None else renames[now] + key[len(now) :]] = tensor
    return renamed


def _separable_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    v1 = create_model("mobilenet_v1_025", num_classes=10, in_chans=1, small_input=True)
    models = {
        "mobilenet_v1": v1,
        "xception": create_model("xception", num_classes=10, in_chans=1, small_input=True),
        "decoupled": separabilize(v1, rank=2).model,  # its stem conv made a separable block
        "twin": standard_twin(v1.eval(), torch.zeros(1, 1, 28, 28))[0],
    }
    for model in models.values():  # BN statistics that are not the defaults
        model.train()(torch.randn(4, 1, 28, 28))
    return {name: model.eval() for name, model in models.items()}


def test_files_with_the_earlier_block_names_load_to_the_same_outputs(tmp_path: Path) -> None:
    x = torch.randn(2, 1, 28, 28)
    for name, model in _separable_models().items():
        earlier = _earlier_names(model)
        assert earlier.keys() != model.state_dict().keys(), name
        path = tmp_path / f"{name}.safetensors"
        write_model_file(path, earlier, ModelRecord.of(model))
        # Every reader sees today's names: read_model_file, load_model, load_weights.
        assert read_model_file(path).tensors.keys() == model.state_dict().keys(), name
        torch.testing.assert_close(logits(load_model(path), x), logits(model, x), rtol=0, atol=0)
        fresh = load_model(path)
        load_weights(fresh, earlier)  # a state dict of the earlier names, given directly
        torch.testing.assert_close(logits(fresh, x), logits(model, x), rtol=0, atol=0)
    # A checkpoint: its model's and its average's tensors are renamed under their prefixes.
    model = _separable_models()["mobilenet_v1"]
    tensors = {f"{p}.{k}": v for p in ("model", "ema") for k, v in _earlier_names(model).items()}
    path = tmp_path / "last.safetensors"
    write_model_file(path, tensors, ModelRecord.of(model), kind="checkpoint", state={"epoch": 1})
    assert read_model_file(path).model_tensors().keys() == model.state_dict().keys()


def test_only_earlier_separable_blocks_are_renamed(tmp_path: Path) -> None:
    # timm's blocks call their own convs conv_dw / conv_pw: a model built by user code keeps
    # its names in its file and when loaded, as does a file of today's names.
    timm = pytest.importorskip("timm")
    reference = timm.create_model("mobilenetv1_100", num_classes=4)
    names = set(reference.state_dict())
    assert {"blocks.0.0.conv_dw.weight", "blocks.0.0.bn1.weight"} <= names
    path = tmp_path / "user.safetensors"
    write_model_file(path, reference.state_dict(), ModelRecord.of(reference))
    assert set(read_model_file(path).tensors) == names
    load_weights(reference, path)  # every key fits as it is
    assert upgrade_keys(reference.state_dict(), reference.state_dict()).keys() == names
    current = create_model("mobilenet_v1_025").state_dict()
    assert upgrade_keys(current).keys() == current.keys()


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


def test_a_file_of_a_newer_format_is_refused_not_read_as_an_older_one(tmp_path: Path) -> None:
    # A later version's file must not load as format 1, whose reader would drop its record.
    model = create_model("mobilenet_v1_025", num_classes=3, in_chans=1)
    newer = FORMAT_VERSION + 1
    header = {"format": newer, "kind": "weights", **ModelRecord.of(model).to_json()}
    path = tmp_path / "future.safetensors"
    write_safetensors(path, model.state_dict(), header)
    with pytest.raises(ValueError, match=rf"future\.safetensors .*format {newer} is newer than"):
        read_model_file(path)


def _header(**changes: object) -> dict[str, object]:
    """A format-2 header of a 1-channel MobileNetV1-0.25, with ``changes`` (``None`` deletes)."""
    header: dict[str, object] = {
        "format": FORMAT_VERSION,
        "kind": "weights",
        "arch": "mobilenet_v1_025",
        "kwargs": {"num_classes": 3, "in_chans": 1},
        "normalization": {"mean": [0.5], "std": [0.25]},
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (  # format 1, no "format" key: a Trainer file's kind is checked too
            _header(format=None, arch=None, kwargs=None, kind="bogus", model="mobilenet_v1_025",
                    model_kwargs={"num_classes": 3}),
            "`kind` must be 'weights' or 'checkpoint', not 'bogus'",
        ),
        (_header(decoupled={"stem.conv": 0}), "`decoupled` rank of layer 'stem.conv' must be"),
        (_header(twin=[1, 0, 28]), "`twin` must be [C, H, W]"),
        (_header(normalization={"mean": [0.5], "std": [0.0]}), "one std > 0 per channel"),
        (
            _header(normalization={"mean": [0.5, 0.5, 0.5], "std": [0.25]}),
            "one std > 0 per channel",
        ),
        (
            _header(normalization={"mean": [float("nan")], "std": [0.25]}),
            "`normalization.mean` must be a list of finite numbers",
        ),
    ],
    ids=["format1-kind", "rank-0", "twin-side-0", "std-0", "lengths", "mean-nan"],
)  # fmt: skip
def test_a_record_out_of_range_is_refused_naming_the_field(
    tmp_path: Path, header: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    tensors = create_model("mobilenet_v1_025", num_classes=3, in_chans=1).state_dict()
    write_safetensors(path, tensors, header)
    with pytest.raises(ValueError, match=r"bad\.safetensors has malformed") as info:
        read_model_file(path)
    assert message in str(info.value)


def test_a_convert_file_of_the_previous_format_at_rank_2_reads_its_input_channels(
    tmp_path: Path,
) -> None:
    # The checked-in file decouples at rank 1, where C_in * R depthwise kernels are C_in: at
    # rank 2 the input channels are half of them. (`sepconv convert` of format 1 took only
    # --num-classes and --in-chans of the builder's arguments.)
    torch.manual_seed(0)
    original = create_model("mobilenet_v1_025", num_classes=7, in_chans=1)
    converted = separabilize(original, rank=2).model.eval()
    layers = [{"name": "stem.conv", "rank": 2}]
    path = tmp_path / "convert.safetensors"
    tensors = {k: v.contiguous() for k, v in _earlier_names(converted).items()}
    meta = {LEGACY_CONVERT_KEY: json.dumps({"model": "mobilenet_v1_025", "layers": layers})}
    save_file(tensors, str(path), metadata=meta)
    file = read_model_file(path)
    assert file.format == 1
    assert file.record.kwargs == {"num_classes": 7, "in_chans": 1}
    assert file.record.decoupled == {"stem.conv": 2}
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(logits(load_model(path), x), logits(converted, x), rtol=0, atol=0)


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

    # Stopped after 2 of 3 steps: the checkpoint and the weights so far, and load_model reads
    # both as the model that stopped.
    assert main([*train, "--max-steps", "2"]) == 0
    expected = logits(trainers[-1].eval_model, x)
    for name in ("last.safetensors", "model.safetensors"):
        torch.testing.assert_close(logits(load_model(out / name), x), expected)

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
