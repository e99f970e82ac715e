"""Runs that end in a user's mistake, and runs that must repeat: seeded, diverging, resumed.

These train a few steps of a tiny model on a tiny image folder, in-process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sepconv.cli import main
from sepconv.modelfile.format import read_model_file
from sepconv.train import TrainConfig, Trainer, TrainingDiverged
from sepconv.train.divergence import DivergenceWatch
from sepconv.train.trainer import Trainer as TrainerClass


def _folder(root: Path, classes: tuple[str, ...], per_class: int = 4) -> Path:
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "imagefolder:" + str(_folder(tmp_path_factory.mktemp("pets"), ("cat", "dog")))


def _train(out: Path, data: str, *extra: str) -> int:
    argv = ["train", "--model", "mobilenet_v1_025", "--data", data, "--image-size", "8"]
    argv += ["--batch-size", "2", "--epochs", "1", "--out", str(out), *extra]
    return main(argv)


def test_same_seed_gives_bit_identical_weights(data: str, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert _train(tmp_path / name, data, "--seed", "7") == 0
    assert _train(tmp_path / "c", data, "--seed", "8") == 0
    a, b, c = (read_model_file(tmp_path / n / "model.safetensors").tensors for n in "abc")
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit, initialisation included
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed does decide the weights


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(
    data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_loss = TrainerClass._loss

    def loss_nan_at_step_3(self: Trainer, *args: torch.Tensor) -> torch.Tensor:
        loss = real_loss(self, *args)
        return loss * math.nan if self.global_step == 2 else loss

    monkeypatch.setattr(TrainerClass, "_loss", loss_nan_at_step_3)
    out = tmp_path / "run"
    code = _train(out, data, "--checkpoint-every", "1")
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "diverged at step 3" in err and "`--lr`" in err
    checkpoint = read_model_file(out / "last.safetensors")
    assert checkpoint.state["global_step"] == 2  # written before the bad step, not after
    assert all(torch.isfinite(t).all() for t in checkpoint.model_tensors().values())
    assert not (out / "model.safetensors").exists()


def test_huge_learning_rate_diverges_with_the_step_named() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=generator)
    from sepconv.data import ImageDataset
    from sepconv.models import create_model

    dataset = ImageDataset(images, torch.arange(64) % 2, ("a", "b"))
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", num_classes=2, small_input=True)
    config = TrainConfig(
        epochs=4, batch_size=8, lr=1e6, warmup_epochs=0, channels_last=False, label_smoothing=0
    )
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: the loss"):
        Trainer(model, config, dataset).fit()


def test_divergence_watch_bound() -> None:
    watch = DivergenceWatch(torch.device("cpu"))
    watch.record(torch.tensor(2.0), step=1)
    watch.record(torch.tensor(1.9e4), step=2)
    assert watch.first_bad(distributed=False) is None
    watch.record(torch.tensor(2.1e4), step=3)
    watch.record(torch.tensor(math.inf), step=4)
    assert watch.first_bad(distributed=False) == (3, 2.1e4)


def test_max_steps_says_where_the_run_is_and_writes_what_help_promises(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(out, data, "--max-steps", "1") == 0
    printed = capsys.readouterr().out
    assert f"checkpoint, log and model.safetensors (the weights so far) in {out}" in printed
    assert f"--resume --out {out}" in printed
    for name in ("last.safetensors", "model.safetensors", "log.jsonl"):
        assert (out / name).is_file(), name


def test_resume_and_evaluate_refuse_another_model_or_data(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(out, data, "--max-steps", "1") == 0
    capsys.readouterr()
    checkpoint = str(out / "last.safetensors")

    argv = ["train", "--model", "mobilenet_v1_050", "--data", data, "--image-size", "8"]
    argv += ["--batch-size", "2", "--epochs", "1", "--out", str(tmp_path / "other")]
    assert main([*argv, "--resume", checkpoint]) == 2
    err = capsys.readouterr().err
    assert "`--resume`" in err and "'mobilenet_v1_025'" in err and "Traceback" not in err

    three = "imagefolder:" + str(_folder(tmp_path / "three", ("a", "b", "c"), per_class=1))
    ev = ["evaluate", "mobilenet_v1_025", "--weights", checkpoint, "--image-size", "8"]
    assert main([*ev, "--data", three, "--plot", str(tmp_path / "cm.png")]) == 2
    err = capsys.readouterr().err
    assert "`--data`" in err and "cat, dog" in err and "Traceback" not in err
    assert not (tmp_path / "cm.png").exists()


def test_resume_checks_the_model_in_the_api(data: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(out, data, "--max-steps", "1") == 0
    from sepconv.data import load_dataset
    from sepconv.models import create_model

    train = load_dataset(data, "train", image_size=8)
    config = TrainConfig(epochs=1, batch_size=2)
    model = create_model("mobilenet_v1_025", num_classes=2, in_chans=3, small_input=False)
    trainer = Trainer(model, config, train, metadata={"data": data})
    with pytest.raises(ValueError, match=r"argument `resume`.*other arguments.*small_input"):
        trainer.fit(out / "last.safetensors")


def test_failed_rows_are_marked_in_the_table() -> None:
    from sepconv.reproduce.config import load_config
    from sepconv.reproduce.sweep import _mark_failed

    config = load_config(Path(__file__).parents[1] / "configs" / "reproduce_compact.toml")
    bad, fine = config.rows[0], config.rows[1]
    marked = _mark_failed(config, {f"{bad.name}/seed0": "Training diverged at step 3: ..."})
    assert marked.rows[1].note == fine.note
    assert marked.rows[0].note.startswith("FAILED: 1 run(s) diverged (Training diverged at step 3")


def test_python_dash_m_runs_the_same_cli() -> None:
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "sepconv", "demo", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "usage: sepconv demo" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "sepconv", "bench", "mobilenet_v2", "--batch", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--batch" in bad.stderr and "Traceback" not in bad.stderr
