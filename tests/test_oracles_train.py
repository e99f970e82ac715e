"""Training maths against references written independently of the code under test.

The weight average against a float64 two-line recurrence and against
``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``; one clipped SGD step
against a gradient computed by hand (softmax minus one-hot) and ``torch.nn.utils``'s clipping
rule; ``sepconv train --resume`` through the command line against one uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sepconv.cli import main
from sepconv.data.dataset import ImageDataset
from sepconv.train.config import TrainConfig
from sepconv.train.ema import ModelEma
from sepconv.train.trainer import Trainer


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def images(n: int, classes: int, side: int = 6, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    pixels = torch.randint(0, 256, (n, 1, side, side), generator=gen, dtype=torch.uint8)
    return ImageDataset(pixels, labels, tuple(str(k) for k in range(classes)))


def perturb(model: nn.Module, gen: torch.Generator) -> None:
    """A new random state for every float tensor and counter, as an optimizer step would."""
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.add_(torch.randn(value.shape, generator=gen))
            elif name.endswith("num_batches_tracked"):
                value.add_(1)


# ---------------------------------------------------------------- weight average
@pytest.mark.parametrize("decay", [0.9, 0.25])
def test_model_ema_follows_the_float64_recurrence(decay: float) -> None:
    model = bn_net()
    ema = ModelEma(model, decay=decay)
    expected = {k: v.double().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        perturb(model, gen)
        ema.update(model)
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name] = decay * expected[name] + (1 - decay) * value.double()
            else:
                expected[name] = value.clone()
    averaged = ema.module.state_dict()
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[name].double(), value, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(averaged[name], value), name


def test_model_ema_matches_torch_averaged_model() -> None:
    model = bn_net()
    ema = ModelEma(model, decay=0.8)
    # use_buffers averages BatchNorm's running statistics too, as ModelEma does; its first
    # update copies the weights, which is where ModelEma starts.
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    reference.update_parameters(model)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        perturb(model, gen)
        ema.update(model)
        reference.update_parameters(model)
    ours = ema.module.state_dict()
    for name, value in reference.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ours[name], value, rtol=1e-6, atol=1e-6)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_trainer_ema_is_the_recurrence_over_the_raw_weights_of_every_step() -> None:
    decay, steps = 0.7, 4
    model = bn_net()
    config = TrainConfig(
        epochs=2, batch_size=8, lr=0.2, ema_decay=decay, amp="off", channels_last=False
    )
    trainer = Trainer(model, config, images(16, 3))
    expected = {
        k: v.double().clone() for k, v in model.state_dict().items() if v.is_floating_point()
    }

    def record(*_: object) -> None:  # after each optimizer step, before the average moves
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name] = decay * expected[name] + (1 - decay) * value.double()

    trainer.optimizer.register_step_post_hook(record)
    trainer.fit()
    assert trainer.global_step == steps and trainer.ema is not None
    averaged = trainer.ema.module.state_dict()
    raw = model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name].double(), value, rtol=1e-5, atol=1e-6)
        # the average is not the raw weights (a decay of 0 would make it so)
        assert not torch.allclose(averaged[name], raw[name]), name
    assert torch.equal(averaged["1.num_batches_tracked"], raw["1.num_batches_tracked"])


# ---------------------------------------------------------------- gradient clipping
def _hand_gradient(
    data: ImageDataset, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the mean cross-entropy of ``x @ W.T + b``: ``(softmax - onehot) / N``."""
    pixels = data.images.double().numpy() / 255.0
    mean = pixels.mean(axis=(0, 2, 3))  # per-channel, population statistics
    std = pixels.std(axis=(0, 2, 3))
    x = ((pixels - mean[None, :, None, None]) / std[None, :, None, None]).reshape(len(pixels), -1)
    logits = x @ weight.double().numpy().T + bias.double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), data.labels.numpy()] -= 1.0
    p /= len(x)
    return torch.from_numpy(p.T @ x), torch.from_numpy(p.sum(0))


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_one_clipped_sgd_step_matches_the_hand_computed_update(max_norm: float) -> None:
    data = images(8, 3, side=4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    w0, b0 = (p.detach().clone() for p in model[1].parameters())
    lr, momentum = 0.5, 0.9
    config = TrainConfig(
        epochs=1,
        batch_size=8,  # one batch: the whole set, so its order does not matter
        lr=lr,
        momentum=momentum,
        weight_decay=0.0,
        warmup_epochs=0.0,  # the first step runs at the peak rate
        label_smoothing=0.0,
        amp="off",
        channels_last=False,
        clip_grad_norm=max_norm,
    )
    Trainer(model, config, data).fit()
    gw, gb = _hand_gradient(data, w0, b0)
    norm = float(torch.sqrt((gw**2).sum() + (gb**2).sum()))
    assert norm > 4 * 0.05  # the small limit really clips
    # The same hand-built gradient clipped by torch.nn.utils.clip_grad_norm_ ...
    params = [nn.Parameter(torch.zeros_like(g)) for g in (gw, gb)]
    for param, g in zip(params, (gw, gb), strict=True):
        param.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    # ... is the gradient scaled by max_norm / (norm + 1e-6) when that is below 1.
    scale = min(1.0, max_norm / (norm + 1e-6))
    for param, g in zip(params, (gw, gb), strict=True):
        assert param.grad is not None
        torch.testing.assert_close(param.grad, g * scale, rtol=1e-9, atol=1e-12)
    # First Nesterov SGD step: buffer = g, update = g + momentum * buffer = (1 + momentum) g.
    for p0, param, p in zip((w0, b0), params, model[1].parameters(), strict=True):
        assert param.grad is not None
        expected = p0.double() - lr * (1 + momentum) * param.grad
        torch.testing.assert_close(p.detach().double(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- CLI resume
def _image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("x", "y"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(8):
                arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")


def test_cli_resume_after_max_steps_ends_bit_identical(tmp_path: Path) -> None:
    _image_folder(tmp_path / "imgs")
    common = [
        "train", "--model", "mobilenet_v1_025", "--data", f"imagefolder:{tmp_path / 'imgs'}",
        "--image-size", "16", "--epochs", "2", "--batch-size", "8", "--ema-decay", "0.5",
        "--clip-grad-norm", "1.0", "--device", "cpu",
    ]  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    # Each command is its own process, whose initial weights come from the same default seed.
    torch.manual_seed(0)
    assert main([*common, "--out", str(straight)]) == 0
    torch.manual_seed(0)
    assert main([*common, "--out", str(split), "--max-steps", "3"]) == 0
    # Stopped mid-run: the checkpoint and the weights so far, which the resumed run replaces.
    assert (split / "last.safetensors").exists() and (split / "model.safetensors").exists()
    torch.manual_seed(1)  # resuming reads the weights and every RNG state from the checkpoint
    assert main([*common, "--out", str(split), "--resume"]) == 0
    a = load_file(straight / "model.safetensors")
    b = load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and a
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert (straight / "log.jsonl").read_text().count("\n") == 2
