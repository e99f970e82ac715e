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
MODELFILE = ("test_modelfile.py",)
DISTRIBUTED = ("test_train_distributed.py",)
PRECISION = ("test_precision_auto.py",)
ANALYSIS = ("test_analysis.py",)
REPRODUCE = ("test_reproduce.py",)

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
        "nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)",
        "pass",
        TRAIN,
    ),
    Mutant(
        "clip-grad-doubled-limit",
        "train/loop.py",
        "nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)",
        "nn.utils.clip_grad_norm_(self.model.parameters(), 2 * self.clip_grad_norm)",
        TRAIN,
    ),
    Mutant(
        "ema-updated-before-step",
        "train/loop.py",
        "        self.optimizer.step()\n        self.scheduler.step()\n"
        "        if self.ema is not None:\n            self.ema.update(self.model)\n",
        "        if self.ema is not None:\n            self.ema.update(self.model)\n"
        "        self.optimizer.step()\n        self.scheduler.step()\n",
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
        "data/normalize.py",
        ".div_(scale).sub_(mean).div_(std)",
        ".div_(scale).sub_(mean)",
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
        'bound="memory" if intensity < ridge else "compute"',
        'bound="compute" if intensity < ridge else "memory"',
        BENCH,
    ),
    # ------------------------------------------------------------------ convert/
    Mutant(
        "decouple-drops-bias",
        "convert/decouple.py",
        "            pw.bias.copy_(conv.bias)\n",
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
        "    block.conv_dw.conv.stride = conv.stride\n",
        "    block.conv_dw.conv.stride = (1, 1)\n",
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
    # ------------------------------------------------------------------ guards that fire,
    # wrappers checked against what they wrap, inputs where a wrong formula shows
    # modelfile/
    Mutant(
        "modelfile-newer-format-read-as-older",
        "modelfile/format.py",
        'if "format" in header:',
        "if False:",
        MODELFILE,
    ),
    Mutant(
        "modelfile-format1-kind-unchecked",
        "modelfile/format.py",
        'if header["kind"] not in ("weights", "checkpoint"):',
        "if False:",
        MODELFILE,
    ),
    Mutant(
        "modelfile-legacy-convert-rank-ignored",
        "modelfile/format.py",
        'int(tensors[f"{first}.conv_dw.weight"].shape[0]) // decoupled[first]',
        'int(tensors[f"{first}.conv_dw.weight"].shape[0])',
        MODELFILE,
    ),
    Mutant(
        "record-rank-0-accepted",
        "modelfile/record.py",
        "not isinstance(rank, int) or rank < 1:",
        "not isinstance(rank, int) or rank < 0:",
        MODELFILE,
    ),
    Mutant(
        "record-twin-side-0-accepted",
        "modelfile/record.py",
        "not all(1 <= v <= _MAX_TWIN_SIDE for v in value)",
        "not all(0 <= v <= _MAX_TWIN_SIDE for v in value)",
        MODELFILE,
    ),
    Mutant(
        "record-std-0-accepted",
        "modelfile/record.py",
        "any(v <= 0 for v in std)",
        "any(v < 0 for v in std)",
        MODELFILE,
    ),
    Mutant(
        "record-mean-std-lengths-unchecked",
        "modelfile/record.py",
        "if len(mean) != len(std) or any(v <= 0 for v in std):",
        "if any(v <= 0 for v in std):",
        MODELFILE,
    ),
    Mutant(
        "record-nan-normalisation-accepted",
        "modelfile/record.py",
        "not all(_is_real(v) and math.isfinite(v) for v in values)",
        "not all(_is_real(v) for v in values)",
        MODELFILE,
    ),
    # train/divergence.py, train/distributed.py
    Mutant(
        "divergence-latest-rank-wins",
        "train/divergence.py",
        "return min(seen, key=lambda bad: bad[0]) if seen else None",
        "return max(seen, key=lambda bad: bad[0]) if seen else None",
        DISTRIBUTED,
    ),
    Mutant(
        "divergence-quiet-ranks-counted",
        "train/divergence.py",
        "for s, v in (t.tolist() for t in every) if s >= 0]",
        "for s, v in (t.tolist() for t in every)]",
        DISTRIBUTED,
    ),
    Mutant(
        "divergence-own-loss-reported",
        "train/divergence.py",
        "return min(seen, key=lambda bad: bad[0]) if seen else None",
        "return (min(seen)[0], float(self._loss)) if seen else None",
        DISTRIBUTED,
    ),
    Mutant(
        "divergence-bound-without-floor",
        "train/divergence.py",
        "max(self.first_loss or 1.0, 1e-3)",
        "(self.first_loss or 1.0)",
        DISTRIBUTED,
    ),
    Mutant(
        "distributed-rank-from-local-rank",
        "train/distributed.py",
        'rank = int(os.environ.get("RANK", "0"))',
        'rank = int(os.environ.get("LOCAL_RANK", "0"))',
        DISTRIBUTED,
    ),
    Mutant(
        "distributed-gpu-from-global-rank",
        "train/distributed.py",
        'dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))',
        'dev = torch.device("cuda", int(os.environ.get("RANK", "0")))',
        DISTRIBUTED,
    ),
    Mutant(
        "distributed-gloo-on-cuda",
        "train/distributed.py",
        'backend="nccl" if dev.type == "cuda" else "gloo"',
        'backend="gloo"',
        DISTRIBUTED,
    ),
    # deploy/: the precision race and the agreement it reports
    Mutant(
        "race-failed-candidate-may-win",
        "deploy/precision.py",
        "best = min(kept, key=timings.__getitem__)",
        "best = min(timings, key=timings.__getitem__)",
        PRECISION,
    ),
    Mutant(
        "race-min-agreement-exclusive",
        "deploy/precision.py",
        'candidate.precision == "fp32" or agreement >= min_agreement',
        'candidate.precision == "fp32" or agreement > min_agreement',
        PRECISION,
    ),
    Mutant(
        "race-ragged-tail-padded-wrong",
        "deploy/precision.py",
        "pad = -count % batch_size",
        "pad = count % batch_size",
        PRECISION,
    ),
    Mutant(
        "race-why-names-slower-dropped",
        "deploy/precision.py",
        "if not r.kept and (r.median_ms or 0.0) < (chosen.median_ms or 0.0)",
        "if not r.kept and (r.median_ms or 0.0) > (chosen.median_ms or 0.0)",
        PRECISION,
    ),
    Mutant(
        "choose-ineligible-may-win",
        "deploy/choose.py",
        "best = min(allowed, key=timings.__getitem__)",
        "best = min(names, key=timings.__getitem__)",
        ("test_deploy_choose.py",),
    ),
    Mutant(
        "agreement-property-at-90-percent",
        "deploy/agreement.py",
        "return agreement_interval(self.agreement, self.samples)",
        "return agreement_interval(self.agreement, self.samples, z=1.645)",
        ("test_deploy_quantize.py",),
    ),
    Mutant(
        "chosen-interval-at-90-percent",
        "cli/_calibration.py",
        "return agreement_interval(fast.agreement, report.samples)",
        "return agreement_interval(fast.agreement, report.samples, z=1.645)",
        PRECISION,
    ),
    # analysis/: every op kind, at sizes where the shortcuts differ
    Mutant(
        "pool-window-squared",
        "analysis/counting.py",
        "area = kernel**spatial if isinstance(kernel, int)",
        "area = kernel**2 if isinstance(kernel, int)",
        ANALYSIS,
    ),
    Mutant(
        "pool-window-times-dims",
        "analysis/counting.py",
        "area = kernel**spatial if isinstance(kernel, int)",
        "area = kernel * spatial if isinstance(kernel, int)",
        ANALYSIS,
    ),
    Mutant(
        "pool-window-first-side-only",
        "analysis/counting.py",
        "else math.prod(kernel)",
        "else kernel[0] ** spatial",
        ANALYSIS,
    ),
    Mutant(
        "conv-transpose-counts-outputs",
        "analysis/counting.py",
        "return inp.numel() * math.prod(weight.shape[1:])",
        "return out[0].numel() * math.prod(weight.shape[1:])",
        ANALYSIS,
    ),
    Mutant(
        "attention-value-width-as-query",
        "analysis/counting.py",
        "(query.shape[-1] + value.shape[-1])",
        "(2 * query.shape[-1])",
        ANALYSIS,
    ),
    Mutant(
        "attention-keys-as-queries",
        "analysis/counting.py",
        "return rows * key.shape[-2] *",
        "return rows * query.shape[-2] *",
        ANALYSIS,
    ),
    Mutant(
        "addmm-inner-size-from-mat2",
        "analysis/counting.py",
        '_tensor_arg(args, kwargs, 1, "mat1").shape[-1]',
        '_tensor_arg(args, kwargs, 2, "mat2").shape[-1]',
        ANALYSIS,
    ),
    Mutant(
        "matmul-inner-size-from-other",
        "analysis/counting.py",
        'return out[0].numel() * _tensor_arg(args, kwargs, 0, "input").shape[-1]',
        'return out[0].numel() * _tensor_arg(args, kwargs, 1, "other").shape[-1]',
        ANALYSIS,
    ),
    Mutant(
        "conv-kind-channels-at-dim-1",
        "analysis/counting.py",
        "in_channels = inp.shape[-len(kernel) - 1]",
        "in_channels = inp.shape[1]",
        ANALYSIS,
    ),
    Mutant(
        "conv-transpose-kind-ignores-groups",
        "analysis/counting.py",
        "kind = conv_kind(weight.shape[0], out_channels // weight.shape[1], kernel)",
        "kind = conv_kind(weight.shape[0], 1, kernel)",
        ANALYSIS,
    ),
    Mutant(
        "compare-output-size-as-h-over-s",
        "analysis/compare.py",
        "h_out, w_out = ((n + 2 * pad - k) // s + 1 for n in (h, w))",
        "h_out, w_out = (n // s for n in (h, w))",
        ("test_analysis_compare.py",),
    ),
    Mutant(
        "compare-padding-half-kernel",
        "analysis/compare.py",
        "pad = (k - 1) // 2",
        "pad = k // 2",
        ("test_analysis_compare.py",),
    ),
    Mutant(
        "compare-pointwise-reads-input-size",
        "analysis/compare.py",
        'pointwise = cost("pointwise", c_in, c_out, 1, 1, h_out * w_out)',
        'pointwise = cost("pointwise", c_in, c_out, 1, 1, h * w)',
        ("test_analysis_compare.py",),
    ),
    # data/augment.py: samplers that reach both ends of their range
    Mutant(
        "crop-offset-misses-far-edge",
        "data/augment.py",
        "span = 2 * self.padding + 1",
        "span = max(2 * self.padding, 1)",
        ("test_data.py",),
    ),
    Mutant(
        "erase-offset-misses-last-position",
        "data/augment.py",
        "* (h - height + 1)).long()",
        "* (h - height)).long()",
        ("test_data.py",),
    ),
    Mutant(
        "erase-noise-misses-255",
        "data/augment.py",
        "torch.randint(0, 256, (n, 1, h, w)",
        "torch.randint(0, 255, (n, 1, h, w)",
        ("test_data.py",),
    ),
    Mutant(
        "erase-aspect-never-wide",
        "data/augment.py",
        "(1 / self.ratio - self.ratio)",
        "(1 - self.ratio)",
        ("test_data.py",),
    ),
    Mutant(
        "erase-area-misses-upper-half",
        "data/augment.py",
        "fraction = low + (high - low) * torch.rand(",
        "fraction = low + (high - low) / 2 * torch.rand(",
        ("test_data.py",),
    ),
    # reproduce/: ratios that are not equal, latencies timed on one side only
    Mutant(
        "twin-mac-ratio-from-params",
        "reproduce/twins.py",
        "return self.standard.cost.macs / self.separable.cost.macs",
        "return self.standard.cost.params / self.separable.cost.params",
        REPRODUCE,
    ),
    Mutant(
        "twin-cost-verdict-either-ratio",
        "reproduce/twins.py",
        "ok = min(self.param_ratio, self.mac_ratio) >= TWIN_MIN_RATIO",
        "ok = max(self.param_ratio, self.mac_ratio) >= TWIN_MIN_RATIO",
        REPRODUCE,
    ),
    Mutant(
        "twin-latency-checked-on-one-side",
        "reproduce/twins.py",
        "if batch not in self.separable.latency or batch not in self.standard.latency:",
        "if batch not in self.separable.latency:",
        REPRODUCE,
    ),
    Mutant(
        "twin-latency-ratio-inverted",
        "reproduce/twins.py",
        "return self.standard.latency[batch].median_s / self.separable.latency[batch].median_s",
        "return self.separable.latency[batch].median_s / self.standard.latency[batch].median_s",
        REPRODUCE,
    ),
    Mutant(
        "gpu-throughput-from-fastest-block",
        "reproduce/speed.py",
        "return batch / timing.median_s",
        "return batch / min(timing.samples_s)",
        ("test_reproduce_gpu.py",),
    ),
    # convert/: geometry per axis, biases, names that share a prefix
    Mutant(
        "twin-dilation-lost",
        "convert/twin.py",
        "            dilation=dw_conv.dilation,  # type: ignore[arg-type]\n",
        "",
        CONVERT,
    ),
    Mutant(
        "twin-always-biased",
        "convert/twin.py",
        "bias=pw_conv.bias is not None,",
        "bias=True,",
        CONVERT,
    ),
    Mutant(
        "separabilize-layer-macs-by-bare-prefix",
        "convert/separabilize.py",
        'r.name == name or r.name.startswith(f"{name}.")',
        "r.name.startswith(name)",
        CONVERT,
    ),
    Mutant(
        "conversion-ratio-inverted",
        "convert/separabilize.py",
        'return f"{before / after:.2f}x" if after else "n/a"',
        'return f"{after / before:.2f}x" if after else "n/a"',
        CONVERT,
    ),
    # bench/: rates and ratios over the median, in MACs
    Mutant(
        "layer-rate-in-flops",
        "bench/per_layer.py",
        "return self.cost.macs / self.timing.median_s / 1e9",
        "return 2 * self.cost.macs / self.timing.median_s / 1e9",
        BENCH,
    ),
    Mutant(
        "bench-twin-latency-ratio-inverted",
        "bench/twin.py",
        "return self.standard.median_s / self.separable.median_s",
        "return self.separable.median_s / self.standard.median_s",
        BENCH,
    ),
    Mutant(
        "spread-over-mean",
        "bench/timing.py",
        "return self.iqr_s / self.median_s if self.median_s > 0 else 0.0",
        "return self.iqr_s / (sum(self.samples_s) / len(self.samples_s)) if self.median_s > 0 "
        "else 0.0",
        BENCH,
    ),
    Mutant(
        "noisy-at-the-bound",
        "bench/timing.py",
        "return self.spread > NOISY_SPREAD",
        "return self.spread >= NOISY_SPREAD",
        BENCH,
    ),
)
