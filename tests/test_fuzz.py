"""Bad inputs of every kind, through the command line and the API.

Each case asserts what a user sees: a non-zero exit (or a ``ValueError`` from the API), no
traceback, a message naming the flag (or argument) at fault, and no output written. The cases
stop before any training: every check runs up front.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sepconv.bench import benchmark, measure_latency
from sepconv.cli import main
from sepconv.data import ImageDataset, load_dataset
from sepconv.deploy import compile_for_inference
from sepconv.models import create_model, load_weights
from sepconv.train import TrainConfig, Trainer

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
