"""``sepconv train``: train a registered model on Fashion-MNIST, CIFAR or an image folder.

Runs unchanged under ``torchrun --nproc_per_node=N`` (DistributedDataParallel: gloo on CPU,
nccl on CUDA; ``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys

from sepconv.train.config import TrainConfig

_DEFAULTS = TrainConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on Fashion-MNIST, CIFAR-10/100 or an image folder",
        description="Train a registered model. Writes OUT/last.safetensors (checkpoint, every "
        "epoch and every --checkpoint-every steps), OUT/model.safetensors (final weights) and "
        "OUT/log.jsonl (one JSON line per epoch); sepconv.load_model and `sepconv evaluate` "
        "read both model files. --resume continues bit-exactly.",
    )
    parser.add_argument("--model", required=True, help="registered model name (sepconv zoo)")
    parser.add_argument(
        "--data",
        required=True,
        help="fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | imagefolder:DIR "
        "(fashion-mnist defaults to $SEPCONV_FASHION_MNIST or /usr/share/datasets/fashion-mnist)",
    )
    parser.add_argument("--out", default=None, help="output folder (default: runs/MODEL)")
    parser.add_argument("--width-mult", type=float, default=None, help="model width multiplier")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="resize every image to this side (e.g. 224 to train a deployment-size model on "
        "Fashion-MNIST); default: the set's own size, image folders 32; recorded in the "
        "model file",
    )  # fmt: skip
    parser.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    parser.add_argument(
        "--random-erasing",
        type=float,
        default=0.0,
        metavar="P",
        help="after crop and flip, erase a random rectangle of an image with probability P "
        "(Zhong et al. 2020; default 0: never)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from a checkpoint (default: OUT/last.safetensors)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run OUT holds (its checkpoint, weights and log); without it, a new "
        "run into a folder that holds one is refused",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after N optimizer steps in all, leaving the checkpoint, the log and "
        "model.safetensors (the weights so far); --resume continues",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    for field, kind, text in (
        ("epochs", int, "passes over the training set"),
        ("batch_size", int, "global batch size"),
        ("lr", float, "peak learning rate"),
        ("momentum", float, "SGD momentum"),
        ("weight_decay", float, "decay of conv/linear weights (not norms, biases)"),
        ("warmup_epochs", float, "linear warm-up before cosine decay"),
        ("label_smoothing", float, "label smoothing epsilon"),
        ("ema_decay", float, "weight EMA decay, 0 = off"),
        ("clip_grad_norm", float, "max gradient norm, 0 = off"),
        ("seed", int, "seed of data order, augmentation and dropout"),
        ("checkpoint_every", int, "extra checkpoint every N steps, 0 = epoch ends only"),
    ):
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=kind,
            default=getattr(_DEFAULTS, field),
            help=f"{text} (default: {getattr(_DEFAULTS, field)})",
        )
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default=_DEFAULTS.optimizer,
        help="sgd: SGD with Nesterov momentum; adamw: AdamW (default: %(default)s)",
    )
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default=_DEFAULTS.amp,
        help="mixed precision: bf16 autocast, auto = bf16 where the device computes it "
        "natively, off = fp32 (default: %(default)s)",
    )
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW layout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import inspect
    from contextlib import nullcontext

    import torch

    from sepconv.data import default_augment, load_dataset
    from sepconv.models import create_model, get_model_info
    from sepconv.models.options import MAX_WIDTH_MULT, small_input_for
    from sepconv.train import Trainer, cleanup_distributed, init_distributed
    from sepconv.train.checkpoint import CHECKPOINT_NAME, WEIGHTS_NAME
    from sepconv.train.runfolder import check_run_folder
    from sepconv.utils.devices import check_device
    from sepconv.utils.files import check_writable, existing_file
    from sepconv.utils.locks import locked_folder
    from sepconv.utils.validation import (
        MAX_SIDE,
        bounded_int,
        invalid,
        positive_int,
        positive_number,
    )

    if not 0.0 <= args.random_erasing <= 1.0 or (args.random_erasing and args.no_augment):
        raise invalid(
            "--random-erasing",
            "a probability from 0 to 1, without --no-augment",
            args.random_erasing,
            note=" with --no-augment" if args.no_augment else "",
        )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        ema_decay=args.ema_decay,
        amp=args.amp,
        channels_last=not args.no_channels_last,
        clip_grad_norm=args.clip_grad_norm,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    # Everything the user typed is checked here, before the data loads and the model trains.
    if args.max_steps is not None:
        positive_int("--max-steps", args.max_steps)
    if args.image_size is not None:
        bounded_int("--image-size", args.image_size, 1, MAX_SIDE)
    if args.device is not None:
        check_device(args.device, "--device")
    builder_args = inspect.signature(get_model_info(args.model).builder).parameters
    if args.width_mult is not None:
        if "width_mult" not in builder_args:
            raise invalid(
                "--width-mult",
                "no value: the width of this model is fixed by its name",
                args.width_mult,
                note=f" for {args.model!r}",
            )
        positive_number("--width-mult", args.width_mult)
        if args.width_mult > MAX_WIDTH_MULT:
            raise invalid(
                "--width-mult", f"a positive number up to {MAX_WIDTH_MULT:g}", args.width_mult
            )
    out = check_writable(args.out or f"runs/{args.model}", "--out", is_dir=True)
    resume = out / CHECKPOINT_NAME if args.resume == "auto" else args.resume
    if resume is not None:
        existing_file(resume, "--resume", (".safetensors",))
    # Another run's files are not replaced by surprise, nor written by two runs at once.
    check_run_folder(
        out, resume=resume, overwrite=args.overwrite, names=("--out", "--resume", "--overwrite")
    )
    # At --image-size when given (every set resized to it), else at the data's own size.
    train_set = load_dataset(args.data, "train", image_size=args.image_size, resize=True)
    test_set = load_dataset(args.data, "test", image_size=args.image_size, resize=True)
    side = int(train_set.images.shape[-1])
    model_kwargs: dict[str, object] = {
        "num_classes": train_set.num_classes,
        "in_chans": train_set.num_channels,
        "small_input": small_input_for(side),
    }
    if args.width_mult is not None:
        model_kwargs["width_mult"] = args.width_mult
    context = init_distributed(args.device)
    try:
        # The initial weights come from the global generator: seeded here, the same --seed
        # gives the same run from step 0 (Trainer.fit seeds the training randomness itself).
        torch.manual_seed(args.seed)
        model = create_model(args.model, **model_kwargs)
        trainer = Trainer(
            model,
            config,
            train_set,
            test_set,
            out_dir=out,
            augment=None
            if args.no_augment
            else default_augment(args.data, side, random_erasing=args.random_erasing),
            context=context,
            metadata={"data": args.data, "image_size": side},
        )
        try:
            with locked_folder(out, "--out") if context.is_main else nullcontext():
                history = trainer.fit(resume, max_steps=args.max_steps, overwrite=args.overwrite)
        except KeyboardInterrupt:
            if context.is_main and (out / CHECKPOINT_NAME).is_file():
                print(
                    f"\nstopped at step {trainer.global_step}: checkpoint, log and "
                    f"{WEIGHTS_NAME} saved in {out}; continue with --resume --out {out}",
                    file=sys.stderr,
                )
            raise
    finally:
        cleanup_distributed()
    if context.is_main and history:
        last = history[-1]
        print(
            f"epoch {last['epoch']}: train_acc {last['train_acc']:.4f}, "
            f"test_acc {last.get('test_acc', float('nan')):.4f}, "
            f"{last['images_per_s']:.0f} images/s; files in {out}"
        )
    if context.is_main and trainer.epoch < config.epochs:
        print(
            f"stopped at step {trainer.global_step} (--max-steps {args.max_steps}): checkpoint, "
            f"log and {WEIGHTS_NAME} (the weights so far) in {out}; continue with --resume "
            f"--out {out}"
        )
    return 0
