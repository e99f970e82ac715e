"""The report of ``convert_fashion_mnist.py``: its tables, and results.md."""

from __future__ import annotations

from typing import Any

from harness import clock_line, header

from sepconv.bench.output import markdown_table

# The original of each --arch, for the report's recipe paragraph.
DESCRIPTIONS = {
    "cnn": "VGG-style CNN, width {width}: 3x3 stem, two stages of two 3x3 ConvNormAct layers at "
    "2x and 4x width, max-pool between, global average pool, linear",
    "mobilenet_v1": "the standard-conv twin of MobileNetV1 at width {width_mult} with the "
    "small-input stem: every depthwise + pointwise pair made one standard 3x3 conv (Howard et "
    "al. 2017, Table 4), BN + ReLU after every conv; its separable twin is MobileNetV1 itself",
}
HEADERS = [
    "model", "params", "MACs", "MACs ratio", "acc. at conversion",
    "acc. after 1 of {epochs} epochs", "final acc.", "latency b1 (ms)", "latency b32 (ms)",
]  # fmt: skip


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def headers(finetune_epochs: int) -> list[str]:
    return [h.format(epochs=finetune_epochs) for h in HEADERS]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One row per model: size, cost, accuracy and latency."""
    return [
        [
            r["model"],
            f"{r['params']:,}",
            f"{r['macs']:,}",
            f"{r['macs_reduction']:.2f}x",
            pct(r["accuracy_at_conversion"]),
            pct(r["accuracy_after_1_epoch"]),
            pct(r["accuracy"]),
            f"{r['latency_b1']['median_ms']:.3f} ± {r['latency_b1']['iqr_ms']:.3f}",
            f"{r['latency_b32']['median_ms']:.2f} ± {r['latency_b32']['iqr_ms']:.2f}",
        ]
        for r in rows
    ]


def markdown(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    conversions: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
) -> str:
    """The committed report: set-up, the main table, per-layer errors and the training log."""
    recipe, finetune = meta["recipe"], meta["finetune_recipe"]
    layer_rows = [
        [name, layer["name"], f"{layer['in_channels']}->{layer['out_channels']}",
         f"{layer['rank']}/{layer['full_rank']}", f"{layer['relative_error']:.3f}",
         f"{layer['macs_before']:,}", f"{layer['macs_after']:,}"]
        for name, conversion in conversions.items()
        for layer in conversion["report"]["layers"]
    ]  # fmt: skip
    stem_rows = [
        [name, pct(conversion["accuracy_at_conversion_stem_converted_too"])]
        for name, conversion in conversions.items()
    ]
    log_rows = [
        [name, r["epoch"], f"{r['lr']:.4g}", f"{r['train_loss']:.4f}", pct(r["train_acc"]),
         pct(r["test_acc"]), f"{r['epoch_time_s']:.0f}"]
        for name, history in runs.items()
        for r in history
    ]  # fmt: skip
    parts = [
        header("Network decoupling on Fashion-MNIST", meta)
        + f"  \n{clock_line(meta)} Training and evaluation: {meta['seconds_training']:.0f} s.",
        'Method: Guo et al., "Network Decoupling: From Regular to Depthwise Separable '
        'Convolutions", BMVC 2018: every 3x3 convolution except the 1-channel stem is '
        "replaced by its rank-R per-channel SVD, a depthwise 3x3 conv with depth multiplier "
        "R followed by a pointwise conv "
        f"(`sepconv.separabilize(model, rank=R, skip=['{meta['stem']}'])`). "
        "The separable twin keeps the same standard stem.",
        f"Recipe. Original ({meta['architecture']}) and twin: `sepconv.train.Trainer`, "
        f"{recipe['epochs']} epoch(s), batch {recipe['batch_size']}, SGD Nesterov momentum "
        f"{recipe['momentum']}, lr {recipe['lr']}, {recipe['warmup_epochs']} epoch linear "
        f"warm-up then per-step cosine, weight decay {recipe['weight_decay']} (conv/linear "
        f"weights), label smoothing {recipe['label_smoothing']}, random crop (2 px padding) "
        f"+ horizontal flip{', channels_last' if recipe['channels_last'] else ''}. "
        "Fine-tune after conversion: the same Trainer with "
        f"`teacher=original`, {finetune['epochs']} epoch(s), lr {finetune['lr']}, no warm-up, "
        f"cosine, loss `alpha T^2 KL + (1 - alpha) CE` with T = "
        f"{finetune['distill_temperature']}, alpha = {finetune['distill_alpha']} (Hinton et "
        "al. 2015). Accuracy: all 10,000 test images, single crop.",
        "MACs: one multiply-add, conv + linear, one 28x28 image (`sepconv.analyze`). "
        "Latency: eager PyTorch, NCHW float32, `sepconv.bench.measure` (median ± IQR of "
        f"{meta.get('latency_repeats', 30)} blocks), {meta['environment']['threads']} "
        "thread(s), all models in one stretch after training.",
        markdown_table(headers(finetune["epochs"]), table_rows(rows)),
        "## Per-layer conversion\n\nRelative kernel error `||W - W_R||_F / ||W||_F`; "
        "MACs of the layer before and after.\n\n"
        + markdown_table(
            ["model", "layer", "C_in->C_out", "rank", "rel. error", "MACs", "MACs'"],
            layer_rows,
        ),
        "Accuracy right after conversion when the stem is decoupled too (not fine-tuned):\n\n"
        + markdown_table(["model", "acc. at conversion"], stem_rows),
        "## Training log\n\nOne line per epoch (test accuracy after the epoch).\n\n"
        + markdown_table(
            ["run", "epoch", "lr", "train loss", "train acc.", "test acc.", "time (s)"],
            log_rows,
        ),
    ]
    return "\n\n".join(parts) + "\n"
