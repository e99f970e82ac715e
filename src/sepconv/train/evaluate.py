"""Accuracy, per-class accuracy and confusion matrix of a classifier on an in-memory set."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sepconv.data.dataset import BatchLoader, ImageDataset
from sepconv.data.normalize import to_model_input
from sepconv.utils.files import write_atomic


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`. ``confusion[i, j]`` counts images of class ``i``
    predicted as class ``j``."""

    loss: float
    accuracy: float
    per_class_accuracy: tuple[float, ...]
    confusion: torch.Tensor
    classes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "per_class_accuracy": dict(zip(self.classes, self.per_class_accuracy, strict=True)),
            "confusion": self.confusion.tolist(),
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    autocast_bf16: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Classify every image of ``dataset`` once and tally the results.

    Args:
        model: classifier mapping ``(N, C, H, W)`` to logits ``(N, K)``; put in eval mode here.
        dataset: images and labels; ``K = dataset.num_classes``.
        mean, std: per-channel normalisation the model was trained with.
        batch_size: images per forward pass.
        device: where to run.
        channels_last: feed NHWC inputs.
        autocast_bf16: run under bf16 autocast.
        progress: show a progress bar over the batches (on stderr).

    Example:
        >>> result = evaluate(model, test_set, mean=(0.286,), std=(0.353,))  # doctest: +SKIP
        >>> len(result.per_class_accuracy) == test_set.num_classes  # doctest: +SKIP
        True
    """
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    k = dataset.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    loss_sum = 0.0
    loader = BatchLoader(dataset, batch_size, shuffle=False, drop_last=False)
    bar = tqdm(total=len(dataset), desc="evaluating", unit="img", disable=not progress)
    for images, labels in loader:
        bar.update(len(labels))
        x = to_model_input(images, mean, std, device=dev, channels_last=channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = model(x)
        logits = logits.float().cpu()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        confusion += torch.bincount(labels * k + logits.argmax(1), minlength=k * k).view(k, k)
    bar.close()
    model.train(was_training)
    totals = confusion.sum(1).clamp_min(1)
    per_class = (confusion.diag().double() / totals).tolist()
    n = max(1, len(dataset))
    return EvalResult(
        loss=loss_sum / n,
        accuracy=float(confusion.diag().sum()) / n,
        per_class_accuracy=tuple(per_class),
        confusion=confusion,
        classes=dataset.classes,
    )


def plot_confusion_matrix(result: EvalResult, path: str | os.PathLike[str]) -> None:
    """Save the confusion matrix of ``result`` as an image (format from the suffix, e.g. PNG),
    rows = true class, columns = predicted, each row normalised to sum to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.classes)
    rates = result.confusion.double() / result.confusion.sum(1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), result.classes, rotation=60, ha="right")
    ax.set_yticks(range(k), result.classes)
    for i in range(k):
        for j in range(k):
            value = float(rates[i, j])
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result.accuracy:.4f}")
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
