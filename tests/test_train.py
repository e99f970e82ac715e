"""Trainer: exact resume, schedule, weight-decay groups, checkpoints, evaluation and the CLI."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sepconv.data import ImageDataset, RandomCropFlip
from sepconv.train import (
    TrainConfig,
    Trainer,
    WarmupCosine,
    evaluate,
    load_tensors,
    param_groups,
    save_tensors,
)


def tiny_data(n: int = 64, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    images = torch.randint(0, 100, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
    images[:, :, : 2 * 1, :] += (labels * 40).to(torch.uint8).view(n, 1, 1, 1)  # learnable
    return ImageDataset(images, labels, ("a", "b", "c", "d"))


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(8, 4),
    )


def make_trainer(out: Path, config: TrainConfig, model_seed: int = 0) -> Trainer:
    return Trainer(
        tiny_model(model_seed),
        config,
        tiny_data(),
        tiny_data(32, seed=1),
        out_dir=out,
        augment=RandomCropFlip(padding=1),
    )


@pytest.mark.parametrize(
    ("optimizer", "stop_at"),
    [("sgd", 6), ("adamw", 4)],
    ids=["sgd-mid-epoch", "adamw-epoch-boundary"],
)
def test_interrupted_and_resumed_run_is_bit_exact(
    tmp_path: Path, optimizer: str, stop_at: int
) -> None:
    config = TrainConfig(
        epochs=3,
        batch_size=16,
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 3e-3,
        ema_decay=0.9,
        clip_grad_norm=1.0,
        checkpoint_every=3,
    )
    straight = make_trainer(tmp_path / "a", config)
    history_a = straight.fit()

    first = make_trainer(tmp_path / "b", config)
    first.fit(max_steps=stop_at)
    assert first.global_step == stop_at < straight.global_step
    torch.manual_seed(1234)  # nothing but the checkpoint may carry state across
    resumed = make_trainer(tmp_path / "b", config, model_seed=99)
    history_b = resumed.fit(resume=tmp_path / "b" / "last.safetensors")

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert straight.ema is not None and resumed.ema is not None
    for name, tensor in straight.ema.module.state_dict().items():
        assert torch.equal(tensor, resumed.ema.module.state_dict()[name]), name
    strip = ("images_per_s", "epoch_time_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in history_a] == [
        {k: v for k, v in r.items() if k not in strip} for r in history_b
    ]
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3]
    weights, meta = load_tensors(tmp_path / "b" / "model.safetensors")
    assert meta["kind"] == "weights" and meta["source"] == "ema"
    assert torch.equal(weights["0.weight"], straight.ema.module.state_dict()["0.weight"])


def test_ema_run_logs_the_raw_weights_beside_the_average(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, TrainConfig(epochs=1, batch_size=16, ema_decay=0.5))
    record = trainer.fit()[-1]
    assert trainer.ema is not None and record["evaluated"] == "ema"
    test = tiny_data(32, seed=1)
    for model, key in ((trainer.ema.module, "test_acc"), (trainer.model, "model_test_acc")):
        ref = evaluate(model, test, mean=trainer.mean, std=trainer.std, batch_size=512)
        assert record[key] == ref.accuracy
    assert record["test_loss"] != record["model_test_loss"]
    plain = make_trainer(tmp_path / "plain", TrainConfig(epochs=1, batch_size=16)).fit()[-1]
    assert plain["evaluated"] == "model" and "model_test_acc" not in plain


def test_resume_refuses_other_config_and_weights_file(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=16)
    make_trainer(tmp_path, config).fit(max_steps=2)
    other = make_trainer(tmp_path, TrainConfig(epochs=1, batch_size=16, lr=0.2))
    with pytest.raises(ValueError, match=r"different config; .*'lr': \(0.1, 0.2\)"):
        other.fit(resume=tmp_path / "last.safetensors")
    save_tensors(tmp_path / "w.safetensors", {"x": torch.zeros(1)}, {"kind": "weights"})
    with pytest.raises(ValueError, match=r"holds 'weights' data; `resume` expects a checkpoint"):
        make_trainer(tmp_path, config).fit(resume=tmp_path / "w.safetensors")


def test_training_learns_the_tiny_task(tmp_path: Path) -> None:
    config = TrainConfig(epochs=6, batch_size=16, lr=0.1, channels_last=False)
    history = make_trainer(tmp_path, config).fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.5  # 4 classes: chance is 0.25


def test_warmup_cosine_closed_form() -> None:
    f = WarmupCosine(warmup_steps=4, total_steps=20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    for s in range(4, 20):
        assert f(s) == pytest.approx(0.5 * (1 + math.cos(math.pi * (s - 4) / 16)))
    with pytest.raises(ValueError, match=r"received 5/3"):
        WarmupCosine(5, 3)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = tiny_model()
    decay, no_decay = param_groups(model, 1e-4)
    decayed = {id(p) for p in decay["params"]}  # type: ignore[attr-defined]
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names == {"0.weight", "3.weight", "7.weight"}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"argument `epochs`: expected a positive integer, received 0"),
        ({"optimizer": "lamb"}, r"argument `optimizer`: .* received 'lamb'"),
        ({"ema_decay": 1.0}, r"argument `ema_decay`: .* received 1.0"),
        ({"amp": "fp8"}, r"argument `amp`: .* received 'fp8'"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_checkpoint_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope.safetensors does not exist"):
        load_tensors(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"junk.safetensors is not a readable safetensors"):
        load_tensors(junk)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors"]


def test_evaluate_counts_match_a_direct_tally() -> None:
    data = tiny_data(40)
    model = tiny_model().eval()
    result = evaluate(model, data, mean=(0.2,), std=(0.3,), batch_size=16)
    x = (data.images.double() / 255 - 0.2) / 0.3
    with torch.no_grad():
        pred = model.double()(x).argmax(1).numpy()
    truth = data.labels.numpy()
    ref = np.zeros((4, 4), np.int64)
    for t, p in zip(truth, pred, strict=True):
        ref[t, p] += 1
    assert np.array_equal(result.confusion.numpy(), ref)
    assert result.accuracy == pytest.approx((pred == truth).mean())
    for k in range(4):
        expected = (pred[truth == k] == k).mean() if (truth == k).any() else 0.0
        assert result.per_class_accuracy[k] == pytest.approx(expected)


def test_cli_train_then_evaluate(tmp_path: Path) -> None:
    from PIL import Image

    from sepconv.cli import main

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("x", "y"):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(8):
                arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    out = tmp_path / "run"
    common = ["--data", f"imagefolder:{tmp_path / 'imgs'}", "--image-size", "16"]
    args = ["train", "--model", "mobilenet_v1_025", *common, "--epochs", "1"]
    assert main([*args, "--random-erasing", "1.5", "--out", str(out)]) == 2
    assert not out.exists()
    erase = ["--random-erasing", "0.5"]
    assert main([*args, *erase, "--batch-size", "8", "--out", str(out)]) == 0
    assert json.loads((out / "log.jsonl").read_text())["step"] == 2
    plot, metrics = tmp_path / "cm.png", tmp_path / "m.json"
    weights = ["--weights", str(out / "model.safetensors")]
    eval_args = ["evaluate", "mobilenet_v1_025", *weights, *common]
    assert main([*eval_args, "--plot", str(plot), "--json", str(metrics)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(json.loads(metrics.read_text())["per_class_accuracy"]) == {"x", "y"}
    assert main(["evaluate", "mobilenet_v2", *weights, *common]) == 2


# ---------------------------------------------------------------- knowledge distillation
def plain_model(seed: int) -> nn.Module:
    """No BatchNorm, no dropout: train and eval mode compute the same function."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 4),
    )


def distill_trainer(
    out: Path | None, config: TrainConfig, teacher: nn.Module | None, model: nn.Module
) -> Trainer:
    return Trainer(
        model,
        config,
        tiny_data(),
        tiny_data(32, seed=1),
        out_dir=out,
        augment=RandomCropFlip(padding=1),
        teacher=teacher,
    )


def test_distillation_with_alpha_zero_is_plain_training_bit_for_bit() -> None:
    config = TrainConfig(epochs=2, batch_size=16, ema_decay=0.9, distill_alpha=0.0)
    plain = distill_trainer(None, config, None, tiny_model())
    history_plain = plain.fit()
    teacher = tiny_model(seed=7)
    distilled = distill_trainer(None, config, teacher, tiny_model())
    history_distilled = distilled.fit()
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, distilled.model.state_dict()[name]), name
    strip = ("images_per_s", "epoch_time_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in history_plain] == [
        {k: v for k, v in r.items() if k not in strip} for r in history_distilled
    ]
    # The teacher is frozen in eval mode and left as it was.
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    for name, tensor in tiny_model(seed=7).state_dict().items():
        assert torch.equal(tensor, teacher.state_dict()[name]), name


def test_distillation_loss_is_computed_on_the_augmented_batch() -> None:
    from sepconv.data import BatchLoader, channel_stats
    from sepconv.data.normalize import to_model_input
    from sepconv.train.losses import distillation_loss

    # One batch per epoch: the epoch's training loss is the loss of step 0.
    data = tiny_data(16)
    config = TrainConfig(
        epochs=1, batch_size=16, channels_last=False, distill_temperature=3.0, distill_alpha=0.7
    )
    student, teacher = plain_model(0), plain_model(1)
    trainer = Trainer(
        copy.deepcopy(student), config, data, augment=RandomCropFlip(padding=1), teacher=teacher
    )
    recorded = trainer.fit()[0]["train_loss"]
    # Independently: the loader's first augmented batch, normalised as the trainer does.
    images, labels = next(iter(BatchLoader(data, 16, augment=RandomCropFlip(padding=1))))
    mean, std = channel_stats(data.images)
    x = to_model_input(images, mean, std, device=torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        expected = distillation_loss(
            student(x), teacher(x), labels, temperature=3.0, alpha=0.7, label_smoothing=0.1
        )
    assert recorded == pytest.approx(float(expected), rel=1e-6)


def test_teacher_equal_to_the_student_gives_no_soft_gradient() -> None:
    # alpha=1: only the KL term, which is 0 with a zero gradient when student == teacher.
    config = TrainConfig(
        epochs=1, batch_size=16, weight_decay=0.0, warmup_epochs=0.0, distill_alpha=1.0
    )
    data = tiny_data(16)
    student = plain_model(0)
    trainer = Trainer(copy.deepcopy(student), config, data, teacher=copy.deepcopy(student))
    assert trainer.fit()[0]["train_loss"] == pytest.approx(0.0, abs=1e-6)
    for name, tensor in student.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], tensor, atol=1e-6, rtol=0)
    # A different teacher does move the student: the check above can fail.
    other = Trainer(copy.deepcopy(student), config, data, teacher=plain_model(1))
    assert other.fit()[0]["train_loss"] > 1e-3
    moved = max(
        float((other.model.state_dict()[name] - tensor).abs().max())
        for name, tensor in student.state_dict().items()
    )
    assert moved > 1e-4


def test_resume_with_a_teacher_is_bit_exact(tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=16, ema_decay=0.9, checkpoint_every=3)
    straight = distill_trainer(tmp_path / "a", config, tiny_model(seed=7), tiny_model())
    straight.fit()
    first = distill_trainer(tmp_path / "b", config, tiny_model(seed=7), tiny_model())
    first.fit(max_steps=5)
    torch.manual_seed(1234)
    resumed = distill_trainer(tmp_path / "b", config, tiny_model(seed=7), tiny_model(seed=99))
    resumed.fit(resume=tmp_path / "b" / "last.safetensors")
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    # Resuming a distillation run without its teacher (or the reverse) is refused.
    without = distill_trainer(tmp_path / "b", config, None, tiny_model())
    with pytest.raises(ValueError, match=r"with a teacher, but this Trainer has none"):
        without.fit(resume=tmp_path / "b" / "last.safetensors")
    make_trainer(tmp_path / "c", config).fit(max_steps=2)
    with_teacher = distill_trainer(tmp_path / "c", config, tiny_model(seed=7), tiny_model())
    with pytest.raises(ValueError, match=r"without a teacher, but this Trainer has one"):
        with_teacher.fit(resume=tmp_path / "c" / "last.safetensors")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"distill_temperature": 0.0}, r"`distill_temperature`: expected > 0, received 0.0"),
        ({"distill_alpha": 1.5}, r"`distill_alpha`: expected a value in \[0, 1\], received 1.5"),
    ],
)
def test_distillation_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_teacher_must_be_another_module() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"`teacher`: expected an nn.Module other than `model`"):
        Trainer(model, TrainConfig(), tiny_data(), teacher=model)


@pytest.mark.parametrize("stop_at", [2, 6], ids=["first-epoch", "second-epoch"])
def test_a_run_stopped_by_max_steps_leaves_weights_log_and_checkpoint(
    tmp_path: Path, stop_at: int
) -> None:
    config = TrainConfig(epochs=3, batch_size=16, ema_decay=0.9)
    trainer = make_trainer(tmp_path, config)
    trainer.fit(max_steps=stop_at)
    assert trainer.global_step == stop_at
    # The weights as they stand (the EMA, which is what gets evaluated) ...
    weights, meta = load_tensors(tmp_path / "model.safetensors")
    assert trainer.ema is not None and meta["source"] == "ema"
    for name, tensor in trainer.ema.module.state_dict().items():
        assert torch.equal(weights[name], tensor), name
    # ... the finished epochs (4 steps each) in the log, and the checkpoint to go on from.
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == list(range(1, stop_at // 4 + 1))
    resumed = make_trainer(tmp_path, config, model_seed=5)
    resumed.fit(resume=tmp_path / "last.safetensors", max_steps=stop_at + 1)
    assert resumed.global_step == stop_at + 1


_CTRL_C_RUN = """
import os, signal, sys
import torch
from torch import nn
from sepconv.data import ImageDataset
from sepconv.train import Trainer, TrainConfig

# Python's own handler, as in a terminal: a shell starts a background job with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

class InterruptAt(nn.Module):  # sends this process a SIGINT on its 3rd training call
    calls = 0
    def forward(self, x):
        if self.training:
            InterruptAt.calls += 1
            if InterruptAt.calls == 3:
                os.kill(os.getpid(), signal.SIGINT)
        return x

gen = torch.Generator().manual_seed(0)
labels = torch.randint(0, 4, (64,), generator=gen)
images = torch.randint(0, 100, (64, 1, 8, 8), generator=gen, dtype=torch.uint8)
data = ImageDataset(images, labels, ("a", "b", "c", "d"))
torch.manual_seed(0)
model = nn.Sequential(InterruptAt(), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
trainer = Trainer(model, TrainConfig(epochs=3, batch_size=16), data, out_dir=sys.argv[1])
try:
    trainer.fit()
except KeyboardInterrupt:
    print("interrupted at step", trainer.global_step)
    sys.exit(130)
print("not interrupted")
"""


def _ctrl_c_model() -> nn.Module:
    """The architecture of the run above, with other initial weights (the checkpoint's win)."""
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Identity(), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def test_ctrl_c_stops_after_the_step_in_progress_and_saves_the_run(tmp_path: Path) -> None:
    # A process of its own, with Python's SIGINT handler, as a run in a terminal has it.
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_RUN, str(out)], capture_output=True, text=True, timeout=300
    )
    # The third step ran to its end; nothing after it did, and the run so far is saved.
    assert done.returncode == 130, done.stdout + done.stderr[-2000:]
    assert "interrupted at step 3" in done.stdout
    assert "stopping after this step" in done.stderr
    for name in ("last.safetensors", "model.safetensors", "log.jsonl"):
        assert (out / name).is_file(), name
    config = TrainConfig(epochs=3, batch_size=16)
    resumed = Trainer(_ctrl_c_model(), config, tiny_data(), out_dir=out)
    resumed.fit(resume=out / "last.safetensors", max_steps=4)
    assert resumed.global_step == 4
