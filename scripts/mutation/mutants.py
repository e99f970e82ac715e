"""Hand-written mutants of sepconv: plausible bugs, each a one-snippet edit of one source file.

Each row is ``Mutant(name, file, original, mutated, tests)``: ``file`` is relative to
``src/sepconv``, ``original`` must occur exactly once in it, and ``tests`` are the test files
(relative to ``tests/``) that ought to notice. ``python scripts/mutation/run.py`` applies each
mutant alone to a copy of the tree and runs those files against it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]


TRAIN = ("test_train.py", "test_oracles_train.py")
BENCH = (
    "test_bench_timing.py",
    "test_bench_layers.py",
    "test_bench_cli.py",
    "test_oracles_bench.py",
)
CONVERT = ("test_convert_decouple.py", "test_convert_separabilize.py", "test_convert_cli.py")
FUSE = ("test_deploy_fuse.py",)

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ train/
    Mutant(
        "ema-decay-swapped",
        "train/ema.py",
        "avg.lerp_(current[name], 1.0 - self.decay)",
        "avg.lerp_(current[name], self.decay)",
        TRAIN,
    ),
    Mutant(
        "ema-int-buffers-not-copied",
        "train/ema.py",
        "                avg.copy_(current[name])",
        "                pass",
        TRAIN,
    ),
    Mutant(
        "clip-grad-no-op",
        "train/loop.py",
        "nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.clip_grad_norm)",
        "pass",
        TRAIN,
    ),
    Mutant(
        "clip-grad-doubled-limit",
        "train/loop.py",
        "nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.clip_grad_norm)",
        "nn.utils.clip_grad_norm_(trainer.model.parameters(), 2 * cfg.clip_grad_norm)",
        TRAIN,
    ),
    Mutant(
        "ema-updated-before-step",
        "train/loop.py",
        "        trainer.optimizer.step()\n        trainer.scheduler.step()\n"
        "        if trainer.ema is not None:\n            trainer.ema.update(trainer.model)\n",
        "        if trainer.ema is not None:\n            trainer.ema.update(trainer.model)\n"
        "        trainer.optimizer.step()\n        trainer.scheduler.step()\n",
        TRAIN,
    ),
    Mutant(
        "warmup-off-by-one",
        "train/optim.py",
        "return (step + 1) / self.warmup_steps",
        "return step / self.warmup_steps",
        TRAIN,
    ),
    Mutant(
        "cosine-full-period",
        "train/optim.py",
        "0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))",
        "0.5 * (1.0 + math.cos(2 * math.pi * min(t, 1.0)))",
        TRAIN,
    ),
    Mutant(
        "missing-warmup",
        "train/trainer.py",
        "warmup = min(total, round(config.warmup_epochs * len(self.loader)))",
        "warmup = 0",
        TRAIN,
    ),
    Mutant(
        "weight-decay-on-norms",
        "train/optim.py",
        "(decay if param.ndim > 1 else no_decay).append(param)",
        "(decay if param.ndim >= 1 else no_decay).append(param)",
        TRAIN,
    ),
    Mutant(
        "no-nesterov",
        "train/optim.py",
        "nesterov=config.momentum > 0",
        "nesterov=False",
        TRAIN,
    ),
    Mutant(
        "normalise-without-std",
        "train/evaluate.py",
        "x = x.sub_(m).div_(s)",
        "x = x.sub_(m)",
        TRAIN,
    ),
    Mutant(
        "distill-no-temperature-squared",
        "train/losses.py",
        "return alpha * temperature**2 * soft + (1 - alpha) * hard",
        "return alpha * temperature * soft + (1 - alpha) * hard",
        ("test_train_losses.py", "test_train.py"),
    ),
    # ------------------------------------------------------------------ bench/
    Mutant(
        "latency-ignores-dtype",
        "bench/latency.py",
        "prepared = copy.deepcopy(model).eval().to(device=device, dtype=dtype)",
        "prepared = copy.deepcopy(model).eval().to(device=device)",
        BENCH,
    ),
    Mutant(
        "latency-ignores-channels-last",
        "bench/latency.py",
        "        x = x.contiguous(memory_format=torch.channels_last)\n",
        "        pass\n",
        BENCH,
    ),
    Mutant(
        "latency-weights-not-channels-last",
        "bench/latency.py",
        "        prepared = prepared.to(memory_format=torch.channels_last)\n",
        "        pass\n",
        BENCH,
    ),
    Mutant(
        "ceiling-flops-as-macs",
        "bench/roofline.py",
        "return 2 * size**3 / min(timing.samples_s) / 1e9, timing",
        "return size**3 / min(timing.samples_s) / 1e9, timing",
        BENCH,
    ),
    Mutant(
        "ceiling-from-median",
        "bench/roofline.py",
        "return 2 * size**3 / min(timing.samples_s) / 1e9, timing",
        "return 2 * size**3 / timing.median_s / 1e9, timing",
        BENCH,
    ),
    Mutant(
        "bandwidth-counts-reads-only",
        "bench/roofline.py",
        "return 2 * src.nbytes / min(timing.samples_s) / 1e9, timing",
        "return src.nbytes / min(timing.samples_s) / 1e9, timing",
        BENCH,
    ),
    Mutant(
        "timing-block-not-divided",
        "bench/timing.py",
        "samples.append(block / calls)",
        "samples.append(block)",
        BENCH,
    ),
    Mutant(
        "roofline-bound-inverted",
        "bench/roofline.py",
        'bound="memory" if intensity < ceilings.ridge else "compute"',
        'bound="compute" if intensity < ceilings.ridge else "memory"',
        BENCH,
    ),
    # ------------------------------------------------------------------ convert/
    Mutant(
        "decouple-drops-bias",
        "convert/decouple.py",
        "            block.conv_pw.bias.copy_(conv.bias)\n",
        "            pass\n",
        CONVERT,
    ),
    Mutant(
        "decouple-singular-values-dropped",
        "convert/decouple.py",
        "pointwise = u[:, :, :rank] * s[:, None, :rank]",
        "pointwise = u[:, :, :rank]",
        CONVERT,
    ),
    Mutant(
        "decouple-stride-lost",
        "convert/decouple.py",
        "    block.conv_dw.stride = conv.stride\n",
        "    block.conv_dw.stride = (1, 1)\n",
        CONVERT,
    ),
    Mutant(
        "energy-rank-off-by-one",
        "convert/decouple.py",
        "return int(reached[0]) + 1 if len(reached) else full_rank(conv)",
        "return int(reached[0]) + 2 if len(reached) else full_rank(conv)",
        CONVERT,
    ),
    Mutant(
        "finetune-lr-vanishes",
        "cli/convert.py",
        "        lr=args.lr,\n        warmup_epochs=0.0,",
        "        lr=1e-30,\n        warmup_epochs=0.0,",
        ("test_convert_cli.py", "test_oracles_convert.py"),
    ),
    # ------------------------------------------------------------------ deploy/
    Mutant(
        "fuse-wrong-bn-eps",
        "deploy/fuse.py",
        "scale = gamma * torch.rsqrt(var + bn.eps)",
        "scale = gamma * torch.rsqrt(var + 1e-3)",
        FUSE,
    ),
    Mutant(
        "fuse-mean-not-subtracted",
        "deploy/fuse.py",
        "conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype))",
        "conv.bias = nn.Parameter((bias * scale + beta).to(dtype))",
        FUSE,
    ),
    Mutant(
        "fuse-sqrt-missing",
        "deploy/fuse.py",
        "scale = gamma * torch.rsqrt(var + bn.eps)",
        "scale = gamma / (var + bn.eps)",
        FUSE,
    ),
    Mutant(
        "agreement-compares-with-labels",
        "deploy/agreement.py",
        "agreement=(ref_top1 == cand_top1).float().mean().item(),",
        "agreement=(cand_top1 == labels).float().mean().item() if labels is not None else 1.0,",
        ("test_deploy_runtime.py", "test_deploy_quantize.py", "test_oracles_cli.py"),
    ),
    # ------------------------------------------------------------------ models/ and layers/
    Mutant(
        "drop-path-rate-over-n-minus-1",
        "models/efficientnet.py",
        "drop_path=drop_path_rate * block_index / total_blocks,",
        "drop_path=drop_path_rate * block_index / (total_blocks - 1),",
        ("test_models.py",),
    ),
    Mutant(
        "drop-path-rate-constant",
        "models/efficientnet.py",
        "drop_path=drop_path_rate * block_index / total_blocks,",
        "drop_path=drop_path_rate,",
        ("test_models.py",),
    ),
    Mutant(
        "mobilenet-v2-stride-swapped",
        "models/mobilenet_v2.py",
        "    IRStage(6, 96, 3, 1),\n    IRStage(6, 160, 3, 2),",
        "    IRStage(6, 96, 3, 2),\n    IRStage(6, 160, 3, 1),",
        ("test_models.py", "test_models_interop.py"),
    ),
    Mutant(
        "default-padding-ignores-dilation",
        "layers/conv.py",
        "return (kernel_size - 1) // 2 * dilation",
        "return (kernel_size - 1) // 2",
        ("test_layers.py", "test_models.py"),
    ),
    Mutant(
        "drop-path-no-rescale",
        "layers/drop_path.py",
        "return x * mask / keep",
        "return x * mask",
        ("test_layers.py",),
    ),
    Mutant(
        "make-divisible-no-10-percent-rule",
        "layers/rounding.py",
        "if rounded < 0.9 * value:",
        "if rounded < 0.8 * value:",
        ("test_layers.py", "test_models.py"),
    ),
    Mutant(
        "conv-macs-ignore-groups",
        "analysis/counting.py",
        "return out[0].numel() * math.prod(weight.shape[1:])",
        "return out[0].numel() * math.prod(weight.shape[2:])",
        ("test_analysis.py",),
    ),
    Mutant(
        "demo-mac-count-factor",
        "cli/demo.py",
        "positions = size * size",
        "positions = 2 * size * size",
        ("test_oracles_cli.py",),
    ),
    Mutant(
        "evaluate-accuracy-off",
        "train/evaluate.py",
        "accuracy=float(confusion.diag().sum()) / n,",
        "accuracy=float(confusion.diag().sum()) / (n + 1),",
        ("test_train.py", "test_oracles_cli.py"),
    ),
)
