"""Bad inputs of every kind, through the command line and the API.

Each case asserts what a user sees: a non-zero exit (or a ``ValueError`` from the API), no
traceback, a message naming the flag (or argument) at fault, and no output written. The cases
stop before any training: every check runs up front.

The second half feeds sepconv what a user's disk may hold: devices, named pipes, symbolic and
hard links at output paths, folders holding another run, tampered checkpoints and model records,
image folders with pipes, empty classes, 16-bit or oversized images, malformed IDX files, a full
disk; and checks that nothing the user has is lost, nothing blocks, and every error is one line
naming what the user typed.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import math
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sepconv.bench import benchmark, measure_latency
from sepconv.cli import main
from sepconv.data import ImageDataset, load_dataset, read_idx
from sepconv.deploy import compile_for_inference
from sepconv.modelfile.format import read_model_file
from sepconv.modelfile.weights import load_model, load_weights, save_model
from sepconv.models import create_model
from sepconv.reproduce.config import load_config
from sepconv.train import TrainConfig, Trainer
from sepconv.utils.files import temporary_prefix, write_atomic, write_json, write_text
from sepconv.utils.locks import LOCK_NAME, locked_folder

NAN, INF = "nan", "inf"


def _write_folder(root: Path, split: str, classes: tuple[str, ...], per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Image folders: a good one, one whose test classes differ, one with an extra test class."""
    base = tmp_path_factory.mktemp("folders")
    good, other, extra = base / "good", base / "other", base / "extra"
    for root in (good, other, extra):
        _write_folder(root, "train", ("cat", "dog"))
    _write_folder(good, "test", ("cat", "dog"))
    _write_folder(other, "test", ("ant", "zebra"))
    _write_folder(extra, "test", ("cat", "dog", "eel"))
    return {"good": good, "other": other, "extra": extra}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with a plain file in it (a path under it is not writable)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    return tmp_path


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


def _check_refused(
    argv: list[str], needle: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    before = _files(work)
    code, err = _run_cli(argv, capsys)
    assert code != 0, f"{argv} exited 0"
    assert "Traceback" not in err, err
    assert needle in err, f"{needle!r} not in {err!r}"
    # One or two lines of message (argparse's usage block above its own errors aside).
    message = err.strip().split("\n", err.count("\n"))
    message = [line for line in message if line.startswith("sepconv ") or "error" in line]
    assert 1 <= len(message) <= 2, err
    # Nothing written or half-written: the folder holds exactly what it held before.
    assert _files(work) == before
    return err


# --------------------------------------------------------------------------- sepconv train
TRAIN = ["train", "--model", "mobilenet_v1_025", "--image-size", "8", "--max-steps", "1"]

TRAIN_CASES = [
    (["--lr", NAN], "`--lr`"),
    (["--lr", INF], "`--lr`"),
    (["--lr", "-1"], "`--lr`"),
    (["--lr", "0"], "`--lr`"),
    (["--momentum", "5"], "`--momentum`"),
    (["--momentum", "-0.1"], "`--momentum`"),
    (["--momentum", NAN], "`--momentum`"),
    (["--momentum", "1"], "`--momentum`"),
    (["--label-smoothing", "1"], "`--label-smoothing`"),
    (["--label-smoothing", NAN], "`--label-smoothing`"),
    (["--weight-decay", "-1"], "`--weight-decay`"),
    (["--weight-decay", INF], "`--weight-decay`"),
    (["--warmup-epochs", "-1"], "`--warmup-epochs`"),
    (["--ema-decay", "1.5"], "`--ema-decay`"),
    (["--clip-grad-norm", "-1"], "`--clip-grad-norm`"),
    (["--clip-grad-norm", NAN], "`--clip-grad-norm`"),
    (["--batch-size", "0"], "`--batch-size`"),
    (["--batch-size", "-5"], "`--batch-size`"),
    (["--epochs", "0"], "`--epochs`"),
    (["--seed", "-1"], "`--seed`"),
    (["--checkpoint-every", "-1"], "`--checkpoint-every`"),
    (["--max-steps", "0"], "`--max-steps`"),
    (["--max-steps", "-3"], "`--max-steps`"),
    (["--image-size", "0"], "`--image-size`"),
    (["--random-erasing", "2"], "`--random-erasing`"),
    (["--random-erasing", NAN], "`--random-erasing`"),
    (["--width-mult", "0.5"], "`--width-mult`"),  # mobilenet_v1_025's width is its name
    (["--device", "tpu"], "`--device`"),
    (["--device", "cuda:99"], "`--device`"),
    (["--out", "afile/run"], "`--out`"),
    (["--out", "afile"], "`--out`"),
    (["--out", "/proc/sepconv-run"], "`--out`"),
    (["--resume", "missing.safetensors"], "`--resume`"),
    (["--resume"], "`--resume`"),  # no checkpoint in the (new) output folder yet
    (["--lr", "abc"], "--lr"),
    (["--batch-size", "1.5"], "--batch-size"),
    (["--optimizer", "adam"], "--optimizer"),
    (["--amp", "fp8"], "--amp"),
]


@pytest.mark.parametrize(("extra", "needle"), TRAIN_CASES, ids=lambda v: str(v))
def test_train_refuses_bad_option(
    extra: list[str],
    needle: str,
    folders: dict[str, Path],
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = ["--data", f"imagefolder:{folders['good']}"]
    out = [] if "--out" in extra else ["--out", "run"]
    _check_refused([*TRAIN, *data, *out, *extra], needle, work, capsys)


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
def test_train_refuses_bad_width_mult(
    value: str, folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "mobilenet_v1", "--data", f"imagefolder:{folders['good']}"]
    argv += ["--image-size", "8", "--max-steps", "1", "--out", "run", "--width-mult", value]
    _check_refused(argv, "`--width-mult`", work, capsys)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("nope", "`--data`"),
        ("cifar10", "`--data`"),
        ("imagefolder:{tmp}/missing", "missing"),
        ("imagefolder:{other}", "`--data`"),
        ("imagefolder:{extra}", "eel"),
        ("fashion-mnist:{tmp}/nowhere", "Fashion-MNIST"),
    ],
)
def test_train_refuses_bad_data(
    data: str,
    needle: str,
    folders: dict[str, Path],
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = data.format(tmp=work, other=folders["other"], extra=folders["extra"])
    argv = [*TRAIN, "--data", spec, "--out", "run"]
    _check_refused(argv, needle, work, capsys)


def test_train_unknown_model_points_to_the_zoo(
    folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "mobilenet_v9", "--data", f"imagefolder:{folders['good']}"]
    err = _check_refused(argv, "'mobilenet_v9'", work, capsys)
    assert "sepconv zoo" in err
    assert "list_models()" not in err  # a CLI user does not call Python


# --------------------------------------------------------------------------- output commands
OUTPUT_CASES = [
    (["profile", "mobilenet_v1_025", "-o", "afile/x.json"], "`--output`"),
    (["profile", "mobilenet_v1_025", "-o", "/proc/x.json"], "`--output`"),
    (["profile", "mobilenet_v1_025", "-o", "."], "`--output`"),
    (["profile", "mobilenet_v1_025", "--input-size", "0"], "`--input-size`"),
    (["profile", "mobilenet_v1_025", "--input-size", "3x8"], "`--input-size`"),
    (["profile", "no_such_model"], "'no_such_model'"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--output", "afile/m.onnx"], "`--output`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--output", "/proc/m.onnx"], "`--output`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--input-size", "0"], "`--input-size`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--in-chans", "0"], "`--in-chans`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--weights", "w.pt"], "`--weights`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--num-classes", "0"], "`--num-classes`"),
    (["export", "mobilenet_v1_025", "--format", "tflite"], "--format"),
    (["compare", "--in", "8", "--out", "8", "-o", "afile/c.json"], "`--output`"),
    (["bench", "mobilenet_v1_025", "--json", "afile/b.json"], "`--json`"),
    (["bench", "mobilenet_v1_025", "--device", "tpu"], "`--device`"),
    (["bench", "mobilenet_v1_025", "--threads", "0"], "`--threads`"),
    (["bench", "mobilenet_v1_025", "--batch", "0"], "--batch"),
    (["bench", "mobilenet_v1_025", "--plot", "p.png"], "`--plot`"),
]


@pytest.mark.parametrize(("argv", "needle"), OUTPUT_CASES, ids=lambda v: str(v))
def test_command_refuses_bad_output_or_option(
    argv: list[str], needle: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check_refused(argv, needle, work, capsys)


def _data_cases(good: Path) -> list[tuple[list[str], str]]:
    data = f"imagefolder:{good}"
    ev = ["evaluate", "mobilenet_v1_025", "--weights", "w.safetensors", "--data", data]
    qu = ["quantize", "mobilenet_v1_025", "--calib-data", data]
    cv = ["convert", "mobilenet_v1_025", "--rank", "1"]
    return [
        ([*ev, "--plot", "afile/cm.png"], "`--plot`"),
        ([*ev, "--json", "/proc/m.json"], "`--json`"),
        ([*ev, "--device", "tpu"], "`--device`"),
        ([*ev, "--batch-size", "0"], "`--batch-size`"),
        ([*ev, "--threads", "0"], "`--threads`"),
        (ev, "w.safetensors"),
        ([*qu, "--output", "afile/q.onnx"], "`--output`"),
        ([*qu, "--json", "/proc/q.json"], "`--json`"),
        ([*qu, "--num-samples", "0"], "`--num-samples`"),
        ([*qu, "--threads", "0"], "`--threads`"),
        ([*cv, "--output", "afile/c.safetensors"], "`--output`"),
        ([*cv, "--report", "/proc/r.json"], "`--report`"),
        ([*cv, "--device", "tpu"], "`--device`"),
        ([*cv, "--finetune-epochs", "-1"], "`--finetune-epochs`"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_data_command_refuses_bad_option(
    index: int, folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, needle = _data_cases(folders["good"])[index]
    _check_refused(argv, needle, work, capsys)


# --------------------------------------------------------------------------- user modules
USER_MODULES = {
    "raises_at_import": ('x = 1\nraise RuntimeError("broken at import")\n', "line 2"),
    "bad_syntax": ("def f(:\n    pass\n", "line 1"),
    "needs_argument": (
        "import torch\n\ndef build(width):\n    return torch.nn.Conv2d(3, width, 1)\n",
        "line 3",
    ),
    "raises_in_build": ('def build():\n    raise KeyError("no such layer")\n', "line 2"),
}


@pytest.mark.parametrize("name", sorted(USER_MODULES))
def test_profile_shows_the_users_error_and_where(
    name: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, where = USER_MODULES[name]
    module = f"fuzz_{name}"
    (work / f"{module}.py").write_text(source)
    attr = "x" if name in ("raises_at_import", "bad_syntax") else "build"
    err = _check_refused(["profile", f"{module}:{attr}"], where, work, capsys)
    assert f"{module}.py" in err
    assert "sepconv/cli" not in err  # the user's file, not sepconv's internals


@pytest.mark.parametrize("spec", ["fuzz_no_such_module:Net", "math:no_such_attr", "math:pi"])
def test_profile_refuses_bad_module_spec(
    spec: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check_refused(["profile", spec], "argument `model`", work, capsys)


# --------------------------------------------------------------------------- reproduce
def test_reproduce_refuses_nan_lr_and_bad_paths(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(__file__).parents[1] / "configs" / "reproduce_compact.toml"
    text = config.read_text().replace("lr = 0.1", "lr = nan", 1)
    (work / "nan.toml").write_text(text)
    _check_refused(["reproduce", "nan.toml", "--out", "out"], "lr", work, capsys)
    _check_refused(["reproduce", "missing.toml"], "missing.toml", work, capsys)
    _check_refused(["reproduce", str(config), "--device", "tpu"], "`--device`", work, capsys)
    _check_refused(["reproduce", str(config), "--out", "afile/r"], "`--out`", work, capsys)


# --------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return create_model("mobilenet_v1_025", num_classes=2, in_chans=3, small_input=True).eval()


def _varied(n: int = 4, side: int = 8, classes: tuple[str, ...] = ("cat", "dog")) -> ImageDataset:
    """Random images (the Trainer refuses images of one value: nothing to normalise by)."""
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % len(classes), classes)


def _dataset(classes: tuple[str, ...] = ("cat", "dog")) -> ImageDataset:
    return ImageDataset(
        torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), classes
    )


CONFIG_CASES = [
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", 0.0),
    ("momentum", 5.0),
    ("momentum", math.nan),
    ("label_smoothing", 1.0),
    ("weight_decay", -1.0),
    ("warmup_epochs", math.inf),
    ("ema_decay", 1.0),
    ("clip_grad_norm", math.nan),
    ("batch_size", 0),
    ("epochs", True),
]


@pytest.mark.parametrize(("name", "value"), CONFIG_CASES, ids=lambda v: str(v))
def test_train_config_refuses(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"argument `{name}`"):
        TrainConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": None}, "name"),
        ({"name": "mobilenet_v1", "width_mult": math.nan}, "width_mult"),
        ({"name": "mobilenet_v1", "width_mult": math.inf}, "width_mult"),
        ({"name": "mobilenet_v1_025", "num_classes": 0}, "num_classes"),
        ({"name": "mobilenet_v1_025", "bn_eps": math.nan}, "bn_eps"),
        ({"name": "mobilenet_v1_025", "drop_rate": 1.0}, "drop_rate"),
    ],
)
def test_create_model_refuses(kwargs: dict[str, object], argument: str) -> None:
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=rf"argument `{argument}`"):
        create_model(kwargs.pop("name"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
        torch.zeros(1, 3, 8, 8, dtype=torch.int64),
        torch.zeros(1, 3, 8, 8, dtype=torch.float64),
        torch.zeros(1, 3, 8, 8, dtype=torch.float16),
        torch.zeros(1, 3, 0, 0),
        torch.zeros(3, 8, 8),
    ],
    ids=["uint8", "int64", "float64", "half", "0x0", "3d"],
)
def test_forward_names_the_layer(tiny: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"MobileNetV1\.stem expected"):
        tiny(x)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"batches": (0,)}, "batches"),
        ({"batches": ()}, "batches"),
        ({"batches": (1, -2)}, "batches"),
        ({"input_sizes": (0,)}, "input_sizes"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_benchmark_refuses_before_timing(kwargs: dict[str, object], argument: str) -> None:
    net = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match=rf"argument `{argument}`"):
        benchmark(net, progress=False, repeats=1, **kwargs)  # type: ignore[arg-type]


def test_measure_latency_refuses_batch_zero() -> None:
    with pytest.raises(ValueError, match=r"argument `batch`"):
        measure_latency(nn.Conv2d(3, 3, 1), batch=0, input_size=8, repeats=1)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (("model", TrainConfig(epochs=1), [1, 2, 3], [4, 5]), "train_set"),
        (("model", TrainConfig(epochs=1), "train"), "train_set"),
        (("model", {"lr": 0.1}, "dataset"), "config"),
        (("model", TrainConfig(epochs=1), "dataset", "other_classes"), "test_set"),
        (("not a model", TrainConfig(epochs=1), "dataset"), "model"),
    ],
)
def test_trainer_refuses(tiny: nn.Module, args: tuple[object, ...], argument: str) -> None:
    given = {"model": tiny, "dataset": _dataset(), "other_classes": _dataset(("ant", "zebra"))}
    call = [given.get(a, a) if isinstance(a, str) else a for a in args]
    with pytest.raises(ValueError, match=rf"argument `{argument}`") as info:
        Trainer(*call)  # type: ignore[arg-type]
    assert "ImageDataset" in str(info.value) or argument in ("config", "model", "test_set")


def test_image_folder_test_classes_must_match_train(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"argument `data`.*ant, zebra"):
        load_dataset(f"imagefolder:{folders['other']}", "test", image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"input_size": (3, 8)}, "input_size"),
        ({"input_size": (2, 3, 8, 8), "batch_size": 4}, "input_size"),
        ({"input_size": (3, 8, 8), "batch_size": 0}, "batch_size"),
        (
            {"input_size": (3, 8, 8), "example": torch.zeros(1, 3, 8, 8, dtype=torch.uint8)},
            "example",
        ),
        ({"input_size": (3, 8, 8), "device": "tpu"}, "device"),
    ],
)
def test_compile_for_inference_refuses(
    tiny: nn.Module, kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=rf"argument `{argument}`"):
        compile_for_inference(tiny, backend="eager", **kwargs)  # type: ignore[arg-type]


def test_compile_for_inference_names_the_layer_of_a_too_small_input() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match=r"argument `input_size`.*layer `1` \(MaxPool2d\)"):
        compile_for_inference(net, backend="eager", input_size=(3, 3, 3))


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_compiled_model_refuses_integer_pixels(tiny: nn.Module, backend: str) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    fast = compile_for_inference(tiny, backend=backend, input_size=(3, 8, 8))  # type: ignore[arg-type]
    pixels = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"argument `x`.*uint8"):
        fast(pixels)
    assert fast(torch.zeros(1, 3, 8, 8)).shape == (1, 2)


def test_compile_for_inference_takes_the_analyze_convention(tiny: nn.Module) -> None:
    fast = compile_for_inference(tiny, backend="eager", input_size=(2, 3, 8, 8))
    assert fast.input_shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    ("other", "cause"),
    [
        ({"name": "mobilenet_v1_025", "num_classes": 7}, "another num_classes (7 in the weights"),
        ({"name": "mobilenet_v1_025", "num_classes": 2, "in_chans": 1}, "another in_chans"),
        ({"name": "mobilenet_v2_050", "num_classes": 2}, "another architecture"),
    ],
)
def test_weight_mismatch_is_summarised(
    tiny: nn.Module, other: dict[str, object], cause: str
) -> None:
    options = dict(other)
    weights = create_model(options.pop("name"), small_input=True, **options).state_dict()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Likely cause") as info:
        load_weights(tiny, weights, format="sepconv")
    message = str(info.value)
    assert cause in message
    assert len(message) < 1200  # counts and the first keys, not every key


# =========================================================================== untrusted files
# What a user has is never lost or replaced by surprise, and no input hangs or crashes: each
# case below uses real files (named pipes, symbolic links, hard links) and checks what is left
# on disk as well as the message.
def _alarm(seconds: int) -> contextlib.AbstractContextManager[None]:
    """Fail the test instead of hanging forever (a named pipe opened by mistake blocks)."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        def fail(*_: object) -> None:
            raise TimeoutError(f"blocked for {seconds} s")

        previous = signal.signal(signal.SIGALRM, fail)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    return guard()


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    )


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file written from the format's description (LeCun et al.)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fashion_folder(root: Path, train: tuple[int, ...], test: tuple[int, ...]) -> Path:
    """A Fashion-MNIST layout of random images of the given ``(N, H, W)`` shapes."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, shape in (("train", train), ("t10k", test)):
        _idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, shape))
        _idx(root / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, shape[:1]))
    return root


def _dead_pid() -> int:
    """The process id of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


# --------------------------------------------------------------------------- outputs
def test_an_output_never_replaces_a_device(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = os.stat("/dev/null")
    err = _check_refused(
        ["profile", "mobilenet_v1_025", "-o", "/dev/null"], "`--output`", work, capsys
    )
    assert "character device" in err and "/dev/null" in err
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_an_output_never_opens_a_named_pipe(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(work / "table.json")
    with _alarm(120):
        err = _check_refused(
            ["profile", "mobilenet_v1_025", "-o", "table.json"], "`--output`", work, capsys
        )
    assert "named pipe" in err and "table.json" in err
    assert stat.S_ISFIFO(os.stat(work / "table.json").st_mode)
    with pytest.raises(ValueError, match=r"table.json': it is a named pipe"), _alarm(60):
        write_text(work / "table.json", "x")


def test_an_output_that_is_a_symlink_is_followed_and_kept(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "kept").mkdir()
    (work / "kept" / "table.json").write_text("old\n")
    (work / "table.json").symlink_to(work / "kept" / "table.json")
    (work / "fresh.json").symlink_to("kept/new.json")  # dangling: created, as `>` would
    assert main(["profile", "mobilenet_v1_025", "--format", "json", "-o", "table.json"]) == 0
    assert main(["profile", "mobilenet_v1_025", "--format", "json", "-o", "fresh.json"]) == 0
    for link, target in (("table.json", "table.json"), ("fresh.json", "new.json")):
        assert (work / link).is_symlink()
        assert json.loads((work / "kept" / target).read_text())  # the target holds the new file
    assert sorted(p.name for p in (work / "kept").iterdir()) == ["new.json", "table.json"]


def test_write_atomic_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(IsADirectoryError, match="directory"):
        write_text(tmp_path, "x")
    with pytest.raises(ValueError, match=r"pipe'.*named pipe"), _alarm(60):
        write_json(tmp_path / "pipe", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_export_refuses_to_write_over_its_own_weights(
    link: str, tiny: nn.Module, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_model(tiny, work / "w.safetensors")
    output = {"same": "w.safetensors", "symlink": "alias.onnx", "hardlink": "hard.onnx"}[link]
    if link == "symlink":
        (work / output).symlink_to("w.safetensors")
    if link == "hardlink":
        os.link(work / "w.safetensors", work / output)
    argv = ["export", "mobilenet_v1_025", "--format", "onnx", "--weights", "w.safetensors"]
    err = _check_refused([*argv, "--output", output], "`--output`", work, capsys)
    assert "`--weights`" in err and output in err
    load_model(work / "w.safetensors")  # still the weights


def test_quantize_refuses_one_path_for_two_outputs(
    folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["quantize", "mobilenet_v1_025", "--calib-data", f"imagefolder:{folders['good']}"]
    err = _check_refused(
        [*argv, "--output", "q.onnx", "--json", "q.onnx"], "`--json`", work, capsys
    )
    assert "`--output`" in err


def _disk_full(*_: object, **__: object) -> None:
    raise SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
        'left on device" })'
    )


def test_a_full_disk_while_saving_weights_is_an_os_error_and_keeps_the_old_file(
    tiny: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.safetensors"
    save_model(tiny, path)
    before = path.read_bytes()
    monkeypatch.setattr("sepconv.modelfile.format.save_file", _disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        save_model(tiny, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_a_full_disk_during_training_is_one_line_naming_the_file(
    folders: dict[str, Path],
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sepconv.modelfile.format.save_file", _disk_full)
    argv = [*TRAIN, "--data", f"imagefolder:{folders['good']}", "--batch-size", "2", "--out", "r"]
    code, err = _run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "r/last.safetensors" in err
    assert not any(".sepconv-tmp." in p.name for p in (work / "r").iterdir())


def test_a_full_disk_during_export_is_not_called_a_bug(
    tiny: nn.Module,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onnx, "save_model", full)
    argv = ["export", "mobilenet_v1_025", "--format", "onnx", "--input-size", "8"]
    err = _check_refused([*argv, "--output", "m.onnx"], "No space left on device", work, capsys)
    assert "m.onnx" in err and "bug" not in err


def test_a_read_only_folder_keeps_the_old_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "table.json"
    path.write_text("old\n")

    def read_only(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp))

    with pytest.raises(OSError, match="Read-only file system") as info:
        write_atomic(path, read_only)
    assert info.value.filename == str(path)  # the file the user named, not the temporary
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_a_killed_writer_leaves_no_temporary_for_long(tmp_path: Path) -> None:
    target = tmp_path / "last.safetensors"
    # A real writer killed in the middle of its write leaves its temporary file behind...
    code = (
        "import sys, time\nfrom sepconv.utils.files import write_atomic\n"
        "def write(tmp):\n    tmp.write_bytes(b'half')\n    print('writing', flush=True)\n"
        "    time.sleep(600)\n"
        f"write_atomic({str(target)!r}, write)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()
        writer.wait()
    left = [p for p in tmp_path.iterdir() if p.name != target.name]
    assert len(left) == 1 and left[0].name.startswith(".last.safetensors.sepconv-tmp.")
    # ... and one of a running writer's is kept: only the dead process's goes.
    alive = left[0].with_name(left[0].name.replace(f".{writer.pid}.", f".{os.getpid()}.", 1))
    alive.write_bytes(b"mine")
    write_text(target, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name])
    assert target.read_text() == "whole"


# --------------------------------------------------------------------------- runs
def _train_argv(folder: Path, out: str, *extra: str) -> list[str]:
    data = ["--data", f"imagefolder:{folder}", "--batch-size", "2"]
    return [*TRAIN, *data, "--out", out, *extra]


@pytest.fixture(scope="module")
def finished_run(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of `sepconv train` (stopped at --max-steps 1, so resumable)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(_train_argv(folders["good"], str(out))) == 0
    return out


def test_train_refuses_a_folder_that_holds_a_run(
    finished_run: Path, folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(finished_run, work / "run")
    # Another seed, another model, or a --resume forgotten: each would replace the run.
    for extra in (["--seed", "1"], ["--lr", "0.05"], []):
        err = _check_refused(_train_argv(folders["good"], "run", *extra), "`--out`", work, capsys)
        assert "'run'" in err and "--resume" in err and "--overwrite" in err
    # Resuming another run's checkpoint into it would mix two runs.
    shutil.copytree(finished_run, work / "other")
    argv = _train_argv(folders["good"], "run", "--resume", "other/last.safetensors")
    assert "--overwrite" in _check_refused(argv, "`--out`", work, capsys)


def test_train_refuses_to_replace_a_users_own_file(
    folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "mine").mkdir()
    (work / "mine" / "model.safetensors").write_bytes(b"my own weights")
    err = _check_refused(_train_argv(folders["good"], "mine"), "`--out`", work, capsys)
    assert "model.safetensors" in err


def test_train_continues_or_replaces_a_run_when_told(
    finished_run: Path, folders: dict[str, Path], work: Path
) -> None:
    shutil.copytree(finished_run, work / "run")
    (work / "run" / "notes.txt").write_text("mine\n")
    log = work / "run" / "log.jsonl"
    stale = log.with_name(temporary_prefix(log, _dead_pid()) + "x.jsonl")
    stale.write_text("left by a killed run")
    assert main(_train_argv(folders["good"], "run", "--max-steps", "2", "--resume")) == 0
    assert read_model_file(work / "run" / "last.safetensors").state["global_step"] == 2
    assert not stale.exists()
    assert main(_train_argv(folders["good"], "run", "--overwrite")) == 0
    assert read_model_file(work / "run" / "last.safetensors").state["global_step"] == 1
    names = sorted(p.name for p in (work / "run").iterdir())
    assert names == ["last.safetensors", "log.jsonl", "model.safetensors", "notes.txt"]


def test_a_second_train_into_a_running_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = _fashion_folder(tmp_path / "fm", (4000, 8, 8), (8, 8, 8))
    argv = ["train", "--model", "mobilenet_v1_025", "--data", f"fashion-mnist:{data}"]
    argv += ["--batch-size", "2", "--epochs", "1", "--device", "cpu", "--out", "run"]
    first = subprocess.Popen(
        [sys.executable, "-m", "sepconv", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        lock = tmp_path / "run" / LOCK_NAME
        deadline = time.monotonic() + 240
        while not lock.exists():
            assert first.poll() is None, "the first run ended before it started training"
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.2)
        code, err = _run_cli(argv, capsys)
        assert code == 2 and "Traceback" not in err
        assert "`--out`" in err and f"in use by process {first.pid}" in err
    finally:
        first.kill()  # a crash: the lock must not outlive it
        first.wait()
    assert main([*argv, "--max-steps", "1", "--overwrite"]) == 0


def test_a_folder_held_by_another_process_is_refused_to_the_api(tmp_path: Path) -> None:
    model = create_model("mobilenet_v1_025", num_classes=2, small_input=True)
    code = (
        "import sys, time\nfrom sepconv.utils.locks import locked_folder\n"
        f"with locked_folder({str(tmp_path / 'run')!r}, 'out'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    config = TrainConfig(epochs=1, batch_size=2)
    trainer = Trainer(model, config, _varied(), out_dir=tmp_path / "run")
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ValueError, match=rf"argument `out_dir`.*process {holder.pid}"):
            trainer.fit(max_steps=1)
    finally:
        holder.kill()
        holder.wait()
    with locked_folder(tmp_path / "run", "out"):  # not stuck after the holder was killed
        assert (tmp_path / "run" / LOCK_NAME).is_file()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_the_api_keeps_another_trainers_run_unless_told_to_replace_it(tmp_path: Path) -> None:
    def trainer() -> Trainer:
        model = create_model("mobilenet_v1_025", num_classes=2, small_input=True)
        return Trainer(model, TrainConfig(epochs=2, batch_size=2), _varied(), out_dir=tmp_path)

    first = trainer()
    first.fit(max_steps=1)
    first.fit(max_steps=2)  # the same Trainer goes on with its own run
    weights = (tmp_path / "model.safetensors").read_bytes()
    way = r"holds a run.*continue it with `resume`, replace it with `overwrite=True`"
    with pytest.raises(ValueError, match=r"argument `out_dir`.*" + way):
        trainer().fit(max_steps=1)
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    with pytest.raises(TypeError, match=r"argument `overwrite`: expected True or False"):
        trainer().fit(max_steps=1, overwrite="yes")  # type: ignore[arg-type]
    trainer().fit(tmp_path / "last.safetensors", max_steps=3)  # continues the folder's run
    replaced = trainer()
    replaced.fit(max_steps=1, overwrite=True)
    assert (
        replaced.state.global_step == 1 and (tmp_path / "model.safetensors").read_bytes() != weights
    )


# --------------------------------------------------------------------------- reproduce
COMPACT = Path(__file__).parents[1] / "configs" / "reproduce_compact.toml"


@pytest.mark.parametrize("name", ["results.md", "config.toml", "acc_vs_params.png"])
def test_reproduce_refuses_to_replace_a_users_own_files(
    name: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "out").mkdir()
    (work / "out" / name).write_text("my own notes\n")
    (work / "out" / "README.md").write_text("mine too\n")
    argv = ["reproduce", str(COMPACT), "--out", "out", "--runs-dir", "r"]
    err = _check_refused(argv, "--out", work, capsys)
    assert name in err and "--overwrite" in err
    assert not (work / "r").exists()


def test_reproduce_refuses_a_results_file_that_is_a_pipe_even_with_overwrite(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "out").mkdir()
    os.mkfifo(work / "out" / "results.md")
    argv = ["reproduce", str(COMPACT), "--out", "out", "--runs-dir", "r"]
    with _alarm(120):
        err = _check_refused([*argv, "--overwrite"], "`--out`", work, capsys)
    assert "results.md" in err and "named pipe" in err


def test_reproduce_refuses_a_results_json_that_is_no_table(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "out").mkdir()
    (work / "out" / "results.json").write_text("[1, 2, 3]\n")
    argv = ["reproduce", str(COMPACT), "--out", "out", "--runs-dir", "r"]
    assert "results.json" in _check_refused(argv, "--out", work, capsys)


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--seeds", "1000000000"], "`--seeds`"),
        (["--threads", "-1"], "`--threads`"),
        (["--threads", "1000000000"], "`--threads`"),
        (["--jobs", "0"], "`--jobs`"),
        (["--time-steps", "-1"], "`--time-steps`"),
        (["--epochs", "0"], "`--epochs`"),
    ],
)
def test_reproduce_refuses_numbers_out_of_range_before_training(
    extra: list[str], flag: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", str(COMPACT), "--out", "out", "--runs-dir", "r"]
    with _alarm(120):
        _check_refused([*argv, *extra], flag, work, capsys)
    assert not (work / "r").exists() and not (work / "out").exists()


def test_reproduce_config_refuses_a_billion_seeds(work: Path) -> None:
    text = COMPACT.read_text().replace("seeds = 3", "seeds = 1000000000", 1)
    (work / "many.toml").write_text(text)
    match = r"`row\[1\].seeds`: expected an integer from 1 to 1000, received 1000000000"
    with pytest.raises(ValueError, match=match), _alarm(60):
        load_config(work / "many.toml")


# --------------------------------------------------------------------------- image folders
def _folder_with(root: Path, extra: Callable[[Path], object]) -> Path:
    _write_folder(root, "train", ("cat", "dog"))
    _write_folder(root, "test", ("cat", "dog"))
    extra(root)
    return root


@pytest.mark.parametrize("name", ["pipe.png", "pipe"])
def test_a_named_pipe_among_the_images_is_refused_not_read(
    name: str, tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder_with(tmp_path / "d", lambda r: os.mkfifo(r / "train" / "dog" / name))
    with _alarm(120):
        err = _check_refused(_train_argv(root, "run"), name, work, capsys)
    assert "not a regular file" in err and "dog" in err


def test_a_link_to_a_device_among_the_images_is_refused(tmp_path: Path) -> None:
    root = _folder_with(
        tmp_path / "d", lambda r: (r / "train" / "cat" / "z.png").symlink_to("/dev/zero")
    )
    with pytest.raises(ValueError, match=r"z.png is not a regular file"), _alarm(60):
        load_dataset(f"imagefolder:{root}", "train", image_size=8)


def test_an_empty_class_folder_is_refused_and_a_hidden_one_ignored(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def extra(root: Path) -> None:
        for split in ("train", "test"):
            (root / split / ".ipynb_checkpoints").mkdir()
            (root / split / ".ipynb_checkpoints" / "0.png").write_bytes(b"not read")

    root = _folder_with(tmp_path / "d", extra)
    before = load_dataset(f"imagefolder:{root}", "train", image_size=8)
    assert before.classes == ("cat", "dog")
    # A hidden file beside the images (macOS's resource fork of one) is not an image either.
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    after = load_dataset(f"imagefolder:{root}", "train", image_size=8)
    assert len(after) == len(before)
    (root / "train" / "eel").mkdir()
    (root / "test" / "eel").mkdir()
    (root / "train" / "eel" / "notes.txt").write_text("no image")
    err = _check_refused(_train_argv(root, "run"), "eel", work, capsys)
    assert "holds no image" in err


def test_an_image_of_16_bits_per_pixel_is_refused(tmp_path: Path) -> None:
    def deep(root: Path) -> None:
        pixels = np.full((8, 8), 40000, dtype=np.uint16)  # would clip to 255 as 8 bits
        Image.fromarray(pixels).save(root / "train" / "cat" / "deep.png")

    root = _folder_with(tmp_path / "d", deep)
    with pytest.raises(ValueError, match=r"deep.png has pixel format 'I"):
        load_dataset(f"imagefolder:{root}", "train", image_size=8)


@pytest.mark.parametrize("side", [30000, 10000])
def test_an_image_whose_header_claims_a_huge_size_is_refused(side: int, tmp_path: Path) -> None:
    root = _folder_with(
        tmp_path / "d", lambda r: _png_header(r / "train" / "cat" / "bomb.png", side, side)
    )
    with pytest.raises(ValueError, match=r"bomb.png"), _alarm(120):
        load_dataset(f"imagefolder:{root}", "train", image_size=8)


# --------------------------------------------------------------------------- IDX files
def test_idx_files_without_images_are_refused(tmp_path: Path) -> None:
    root = _fashion_folder(tmp_path / "fm", (0, 28, 28), (4, 28, 28))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds no images"):
        load_dataset(f"fashion-mnist:{root}", "train")


def test_idx_splits_of_other_image_sizes_are_refused(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _fashion_folder(tmp_path / "fm", (8, 28, 28), (4, 32, 32))
    argv = ["train", "--model", "mobilenet_v1_025", "--data", f"fashion-mnist:{root}"]
    err = _check_refused([*argv, "--out", "run"], "t10k-images-idx3-ubyte", work, capsys)
    assert "32x32" in err and "28x28" in err


def test_an_idx_header_claiming_more_than_the_file_holds_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 2**31, 2**16, 2**16)))
    with pytest.raises(ValueError, match=r"images.gz is truncated"), _alarm(60):
        read_idx(path, expected_ndim=3)
    os.mkfifo(tmp_path / "pipe-idx3-ubyte")
    with pytest.raises(ValueError, match=r"pipe-idx3-ubyte is a named pipe"), _alarm(60):
        read_idx(tmp_path / "pipe-idx3-ubyte")


# --------------------------------------------------------------------------- checkpoints
def _tampered(source: Path, target: Path, edit: Callable[[dict, dict], object]) -> Path:
    """A copy of the checkpoint ``source`` at ``target`` with ``edit(header, tensors)`` applied."""
    tensors = load_file(source)
    with safe_open(str(source), framework="pt") as handle:
        header = json.loads((handle.metadata() or {})["sepconv"])
    edit(header, tensors)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"sepconv": json.dumps(header)})
    return target


def _state(key: str, value: object) -> Callable[[dict, dict], object]:
    return lambda header, _: header["state"].__setitem__(key, value)


TAMPERED = {
    "epoch": (_state("epoch", 10**9), "`epoch`"),
    "epoch as text": (_state("epoch", "0"), "`epoch`"),
    "step below 0": (_state("step_in_epoch", -1), "`step_in_epoch`"),
    "step out of the epoch": (_state("step_in_epoch", 10**6), "`step_in_epoch`"),
    "global step": (_state("global_step", 12345), "`global_step`"),
    "running sums": (_state("running", [0.0, "x"]), "`running`"),
    "history": (_state("history", "none"), "`history`"),
    "world size": (_state("world_size", 0), "`world_size`"),
    "schedule": (lambda h, _: h["state"].pop("scheduler"), "`scheduler.last_epoch`"),
    "learning rates": (
        lambda h, _: h["state"]["scheduler"].__setitem__("base_lrs", "x"),
        "`scheduler.base_lrs`",
    ),
    "optimizer groups": (
        lambda h, _: h["state"]["optimizer"].__setitem__("param_groups", [{}]),
        "`optimizer.param_groups`",
    ),
    "optimizer state shape": (
        lambda _, t: t.__setitem__("optimizer.0.momentum_buffer", torch.zeros(3)),
        "`optimizer.0.momentum_buffer`",
    ),
    "missing random state": (lambda _, t: t.pop("rng.cpu.0"), "`rng.cpu.0`"),
    "short random state": (
        lambda _, t: t.__setitem__("rng.cpu.0", t["rng.cpu.0"][:8].clone()),
        "`rng.cpu.0`",
    ),
    "teacher flag": (_state("distilled", "no"), "`distilled`"),
    "training config": (lambda h, _: h["config"].__setitem__("lr", -1), "field `lr`"),
    "classes": (lambda h, _: h.__setitem__("classes", ["cat", "cat"]), "`classes`"),
    "kind": (lambda h, _: h.__setitem__("kind", "weights?"), "`kind`"),
    "state": (lambda h, _: h.__setitem__("state", [1]), "`state`"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_checkpoint_is_refused_naming_the_field(
    case: str,
    finished_run: Path,
    folders: dict[str, Path],
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edit, field = TAMPERED[case]
    _tampered(finished_run / "last.safetensors", work / "run" / "last.safetensors", edit)
    argv = _train_argv(folders["good"], "run", "--resume", "--max-steps", "2")
    err = _check_refused(argv, field, work, capsys)
    assert "run/last.safetensors" in err
    assert "`--lr`" not in err  # the file's field, not an option the user typed


def test_a_checkpoint_resumed_with_its_weight_average_missing_is_refused(
    folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _train_argv(folders["good"], "run", "--ema-decay", "0.9")
    assert main(argv) == 0
    shutil.move(work / "run" / "last.safetensors", work / "saved.safetensors")
    _tampered(
        work / "saved.safetensors",
        work / "run" / "last.safetensors",
        lambda _, t: [t.pop(k) for k in [k for k in t if k.startswith("ema.")]],
    )
    err = _check_refused([*argv, "--resume", "--max-steps", "2"], "`--resume`", work, capsys)
    assert "weight average" in err


# --------------------------------------------------------------------------- model records
RECORDS = {
    "small_input as text": (lambda h: h["kwargs"].__setitem__("small_input", "no"), "small_input"),
    "num_classes as text": (lambda h: h["kwargs"].__setitem__("num_classes", "2"), "num_classes"),
    "kwargs not an object": (lambda h: h.__setitem__("kwargs", [1]), "`kwargs`"),
    "decoupled layer": (lambda h: h.__setitem__("decoupled", {"nope.conv": 2}), "'nope.conv'"),
    "decoupled rank": (lambda h: h.__setitem__("decoupled", {"stem.conv": 1.5}), "`decoupled`"),
    "twin": (lambda h: h.__setitem__("twin", [3, 10**9, 8]), "`twin`"),
    "normalization": (lambda h: h.__setitem__("normalization", {"mean": [0.5]}), "`normalization`"),
    "source": (lambda h: h.__setitem__("source", 3), "`source`"),
    "arch": (lambda h: h.__setitem__("arch", 7), "`arch`"),
}


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_a_tampered_model_record_is_refused_naming_the_file(
    case: str,
    finished_run: Path,
    folders: dict[str, Path],
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edit, needle = RECORDS[case]
    path = _tampered(
        finished_run / "model.safetensors", work / "m.safetensors", lambda header, _: edit(header)
    )
    with pytest.raises(ValueError, match=re.escape(needle)) as info:
        load_model(path)
    assert "m.safetensors" in str(info.value)
    ev = ["evaluate", "mobilenet_v1_025", "--weights", "m.safetensors"]
    err = _check_refused(
        [*ev, "--data", f"imagefolder:{folders['good']}", "--image-size", "8"],
        "m.safetensors",
        work,
        capsys,
    )
    assert needle in err and "`--small-input`" not in err


def test_a_builder_refuses_an_option_of_the_wrong_type() -> None:
    for kwargs in ({"small_input": "no"}, {"features_only": 1}, {"small_input": None}):
        name = next(iter(kwargs))
        with pytest.raises(ValueError, match=rf"argument `{name}`: expected True or False"):
            create_model("mobilenet_v1_025", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- weights paths
def test_a_missing_weights_file_suggests_the_one_there(
    finished_run: Path, folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "x").mkdir()
    shutil.copy(finished_run / "last.safetensors", work / "x" / "last.safetensors")
    with pytest.raises(FileNotFoundError, match=r"x/model.safetensors does not exist.*x/last"):
        load_model(work / "x" / "model.safetensors")
    with pytest.raises(IsADirectoryError, match=r"x is a directory.*x/last.safetensors"):
        load_model(work / "x")
    ev = ["evaluate", "mobilenet_v1_025", "--data", f"imagefolder:{folders['good']}"]
    err = _check_refused(
        [*ev, "--weights", "x/model.safetensors"], "x/last.safetensors", work, capsys
    )
    assert "x/model.safetensors" in err
    ex = ["export", "mobilenet_v1_025", "--format", "onnx", "--weights", "x/model.safetensors"]
    assert "x/last.safetensors" in _check_refused(ex, "`--weights`", work, capsys)
    os.mkfifo(work / "x" / "fifo.safetensors")
    with pytest.raises(ValueError, match="named pipe"), _alarm(60):
        load_model(work / "x" / "fifo.safetensors")


# --------------------------------------------------------------------------- numbers and names
BIG = str(10**20)  # past int64: no size PyTorch can represent
NUMBER_CASES = [
    (["bench", "mobilenet_v1_025", "--threads", "1000000000"], "`--threads`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--opset", "999"], "`--opset`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--opset", "17"], "`--opset`"),
    (["compare", "--in", "0", "--out", "8"], "`--in`"),
    (
        [
            "convert",
            "mobilenet_v1_025",
            "--rank",
            "1",
            "--finetune-epochs",
            "1",
            "--temperature",
            "0",
        ],
        "`--temperature`",
    ),
    (
        ["convert", "mobilenet_v1_025", "--rank", "1", "--finetune-epochs", "1", "--alpha", "2"],
        "`--alpha`",
    ),
    (
        ["train", "--model", "mobilenet_v1_025", "--data", "fashion-mnist", "--seed", str(2**64)],
        "`--seed`",
    ),
    (
        [
            "train",
            "--model",
            "mobilenet_v1_025",
            "--data",
            "fashion-mnist",
            "--image-size",
            "1000000",
        ],
        "`--image-size`",
    ),
    (["bench", "mobilenet_v1_025", "--batch", BIG], "--batch"),
    (["bench", "mobilenet_v1_025", "--input-size", BIG], "`--input-size`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--input-size", BIG], "`--input-size`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--num-classes", BIG], "`--num-classes`"),
    (["export", "mobilenet_v1_025", "--format", "onnx", "--in-chans", BIG], "`--in-chans`"),
    (["convert", "mobilenet_v1_025", "--rank", "1", "--input-size", BIG, "8"], "`--input-size`"),
    (["demo", "-k", BIG], "`--kernel-size`"),
    (
        ["train", "--model", "mobilenet_v1", "--data", "nowhere:x", "--width-mult", "1e30"],
        "`--width-mult`",
    ),
]


@pytest.mark.parametrize(("argv", "needle"), NUMBER_CASES, ids=lambda v: str(v))
def test_numbers_out_of_range_are_refused_naming_the_flag(
    argv: list[str], needle: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _check_refused(argv, needle, work, capsys)
    assert "in_channels" not in err and "distill_" not in err


@pytest.mark.parametrize("command", ["evaluate", "quantize"])
def test_a_billion_threads_are_refused(
    command: str, folders: dict[str, Path], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f"imagefolder:{folders['good']}"
    argv = {
        "evaluate": ["evaluate", "mobilenet_v1_025", "--weights", "w.safetensors", "--data", data],
        "quantize": ["quantize", "mobilenet_v1_025", "--calib-data", data],
    }[command]
    _check_refused([*argv, "--threads", "1000000000"], "`--threads`", work, capsys)


# --------------------------------------------------------------------------- the API checks
@pytest.mark.parametrize(
    ("labels", "classes", "needle"),
    [
        (torch.tensor([0, 1, 0, 2]), ("cat", "dog"), r"`labels`.*\[0, 2\).*from 0 to 2"),
        (torch.tensor([0, -1, 0, 1]), ("cat", "dog"), r"`labels`.*from -1 to 1"),
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), ("cat", "dog"), r"`labels`.*float32"),
        (torch.tensor([True, False, True, False]), ("cat", "dog"), r"`labels`.*bool"),
        (torch.tensor([0, 1, 0, 1]), ("cat", "cat"), r"`classes`.*'cat' 2 times"),
        (torch.tensor([0, 1, 0, 1]), (), r"`classes`"),
        (torch.tensor([0, 1, 0, 1]), ("cat", 3), r"`classes`"),
    ],
)
def test_a_dataset_refuses_bad_labels_and_classes(
    labels: torch.Tensor, classes: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        ImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), labels, classes)


def test_a_dataset_keeps_integer_labels_as_int64() -> None:
    ds = ImageDataset(
        torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
        torch.tensor([1, 0], dtype=torch.int32),
        ["a", "b"],
    )
    assert ds.labels.dtype == torch.int64 and ds.classes == ("a", "b")


def test_the_trainer_refuses_what_would_train_wrongly() -> None:
    tiny = create_model("mobilenet_v1_025", num_classes=2, small_input=True)
    config = TrainConfig(epochs=1, batch_size=2)
    three = _varied(classes=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"argument `model`: expected a classifier with 3 outputs"):
        Trainer(tiny, config, three)
    bigger = _varied(side=16)
    with pytest.raises(ValueError, match=r"argument `test_set`: expected images .*3x8x8.*3x16x16"):
        Trainer(tiny, config, _varied(), bigger)
    teacher = create_model("mobilenet_v1_025", num_classes=3, small_input=True)
    with pytest.raises(ValueError, match=r"argument `teacher`: expected a classifier with 2"):
        Trainer(tiny, config, _varied(), teacher=teacher)
    trainer = Trainer(tiny, config, _varied())
    for steps in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"argument `max_steps`"):
            trainer.fit(max_steps=steps)  # type: ignore[arg-type]
    assert trainer.global_step == 0 and tiny.training  # its mode restored after the checks
    with pytest.raises(ValueError, match=r"argument `train_set`: expected images whose pixels"):
        Trainer(tiny, config, _dataset())  # every pixel 0
