"""int8 quantization: calibration on real Fashion-MNIST images, real ONNX Runtime / OpenVINO runs.

The model is a small EfficientNet-style network (SiLU, squeeze-excite, residual add) trained
for 100 steps on Fashion-MNIST inside the test, so that agreement between fp32 and
int8 predictions is measured on a model whose predictions mean something.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from nets import mbconv_net
from onnx import numpy_helper
from torch import nn

from sepconv import create_model
from sepconv.cli import main
from sepconv.data import ImageDataset, channel_stats, load_fashion_mnist
from sepconv.deploy import (
    Agreement,
    agreement_interval,
    compare_top1,
    export_onnx,
    load_onnx,
    openvino_layers,
    prepare_images,
    quantize,
    quantized_ops,
    top1_classes,
)
from sepconv.layers import SqueezeExcite
from sepconv.train import update_bn_statistics
from sepconv.train.checkpoint import save_tensors


def fashion_mnist(split: str) -> ImageDataset:
    try:
        return load_fashion_mnist(split)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")


def small_net() -> nn.Module:
    return mbconv_net(1)


@pytest.fixture(scope="module")
def data() -> tuple[ImageDataset, ImageDataset, tuple[float, ...], tuple[float, ...]]:
    train, test = fashion_mnist("train"), fashion_mnist("test")
    mean, std = channel_stats(train.images)
    return train, test, mean, std


@pytest.fixture(scope="module")
def trained(data) -> nn.Module:
    train, _, mean, std = data
    torch.manual_seed(0)
    net = small_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    x = prepare_images(train.images[:6400], mean=mean, std=std)
    y = train.labels[:6400]
    net.train()
    for xb, yb in zip(x.split(64), y.split(64), strict=True):  # 100 steps: ~65% test accuracy
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(xb), yb).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def int8_path(trained, data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, _, mean, std = data
    path = tmp_path_factory.mktemp("int8") / "net.int8.onnx"
    quantize(trained, train, path, mean=mean, std=std, num_samples=128, threads=1)
    return path


def test_int8_agrees_with_fp32_on_real_images(trained, data, int8_path: Path) -> None:
    _, test, mean, std = data
    int8 = load_onnx(int8_path, batch_size=50, threads=1)
    assert int8.precision == "int8" and int8.input_shape == (50, 1, 28, 28)
    inputs = prepare_images(test.images[:1000], mean=mean, std=std)
    result = compare_top1(trained, int8, inputs, test.labels[:1000], batch_size=50)
    assert result.samples == 1000
    assert result.reference_accuracy is not None and result.reference_accuracy > 0.5  # learned
    assert result.agreement >= 0.95
    assert result.accuracy_drop is not None and abs(result.accuracy_drop) <= 2.0


def test_quantize_returns_the_runnable_int8_model(trained, data, tmp_path: Path) -> None:
    train, test, mean, std = data
    path = tmp_path / "net.int8.onnx"
    int8 = quantize(trained, train, path, mean=mean, std=std, num_samples=32, batch_size=4)
    assert (int8.backend, int8.precision, int8.path, int8.input_shape) == (
        "onnxruntime",
        "int8",
        path,
        (4, 1, 28, 28),
    )
    assert [p.name for p in tmp_path.iterdir()] == ["net.int8.onnx"]  # no temporary left over
    assert int8.max_rel_error is not None and 0 < int8.max_rel_error < 0.2
    out = int8(prepare_images(test.images[:4], mean=mean, std=std))
    assert out.shape == (4, 10) and out.dtype == torch.float32


def test_int8_graph_runs_conv_silu_and_add_in_integer_kernels(int8_path: Path) -> None:
    ops = quantized_ops(int8_path)
    modules = list(small_net().modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in modules)
    silus = sum(isinstance(m, nn.SiLU) for m in modules)  # exported as x * sigmoid(x)
    gates = sum(isinstance(m, nn.Sigmoid) for m in modules)  # SE: x * sigmoid(excitation)
    assert ops.get("QLinearConv") == convs
    assert ops.get("QLinearSigmoid") == silus + gates
    assert ops.get("QLinearMul") == silus + gates
    assert ops.get("QLinearAdd") == 1  # the residual of the first MBConv
    assert not {"Conv", "Sigmoid", "Mul", "Add"} & set(ops)  # nothing of these left in float


def test_openvino_runs_the_same_int8_file(trained, data, int8_path: Path) -> None:
    _, test, mean, std = data
    inputs = prepare_images(test.images[:200], mean=mean, std=std)
    ort_int8 = load_onnx(int8_path, backend="onnxruntime", batch_size=50, threads=1)
    ov_int8 = load_onnx(int8_path, backend="openvino", batch_size=50, threads=1)
    assert ov_int8.precision == "int8"
    assert compare_top1(ort_int8, ov_int8, inputs, batch_size=50).agreement >= 0.95
    assert compare_top1(trained, ov_int8, inputs, batch_size=50).agreement >= 0.9


def test_nncf_file_runs_in_int8_on_openvino_and_agrees(trained, data, tmp_path: Path) -> None:
    train, test, mean, std = data
    path = tmp_path / "net.int8.onnx"
    ov_int8 = quantize(
        trained,
        train,
        path,
        mean=mean,
        std=std,
        num_samples=128,
        backend="openvino",
        quantizer="nncf",
        threads=1,
    )
    assert (ov_int8.backend, ov_int8.precision) == ("openvino", "int8")
    inputs = prepare_images(test.images[:1000], mean=mean, std=std)
    result = compare_top1(trained, ov_int8, inputs, test.labels[:1000])
    assert result.agreement >= 0.95
    assert result.accuracy_drop is not None and abs(result.accuracy_drop) <= 2.0
    layers = openvino_layers(path)
    modules = list(small_net().modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in modules)
    se_convs = sum(
        isinstance(c, nn.Conv2d)
        for se in modules
        if isinstance(se, SqueezeExcite)
        for c in se.modules()
    )
    # Every conv outside squeeze-excite runs as an int8 kernel, SiLU fused into it.
    int8_convs = layers.get("Convolution i8", 0) + layers.get("Convolution u8", 0)
    assert int8_convs >= convs - se_convs
    assert not any(name.startswith("Eltwise") and name.endswith("f32") for name in layers)
    assert openvino_layers(path) == layers  # counting compiles the file anew, and is repeatable


def weight_ranges(path: Path) -> dict[str, int]:
    """Largest |int8 value| of each quantized weight tensor of an ONNX QDQ file, by its name."""
    model = onnx.load(str(path))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        node.input[0]: int(abs(constants[node.input[0]].astype(np.int32)).max())
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and constants.get(node.input[0]) is not None
        and constants[node.input[0]].dtype == np.int8
    }


def test_nncf_reduce_range_keeps_every_dense_weight_to_7_bits(
    trained, data, tmp_path: Path
) -> None:
    # Without VNNI, u8 x s8 kernels saturate unless weights stay within 7 bits (NNCF's overflow
    # fix); NNCF leaves depthwise kernels at 8 bits, which do not go through that kernel.
    train, _, mean, std = data
    depthwise = {
        f"{name}.weight"
        for name, m in trained.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1
    }
    ranges = {}
    for reduce_range in (True, False):
        path = tmp_path / f"{reduce_range}.onnx"
        quantize(
            trained,
            train,
            path,
            mean=mean,
            std=std,
            num_samples=32,
            backend="openvino",
            quantizer="nncf",
            reduce_range=reduce_range,
            threads=1,
        )
        ranges[reduce_range] = weight_ranges(path)
    dense = {k: v for k, v in ranges[True].items() if not any(d in k for d in depthwise)}
    assert len(dense) >= 5 and len(ranges[True]) > len(dense)  # the net has both kinds
    assert max(dense.values()) <= 64
    assert min(v for k, v in ranges[True].items() if k not in dense) == 127
    assert min(ranges[False].values()) == 127  # 8 bits everywhere: each tensor's max at +-127


def test_quantize_rejects_invalid_settings_before_writing(trained, tmp_path: Path) -> None:
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"`quantizer`: expected one of 'onnxruntime', 'nncf'"):
        quantize(trained, images, tmp_path / "net.onnx", quantizer="tflite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`per_channel`.*NNCF always uses per-channel"):
        quantize(trained, images, tmp_path / "net.onnx", quantizer="nncf", per_channel=False)
    with pytest.raises(ValueError, match=r"`reduce_range`: expected None, True or False"):
        quantize(trained, images, tmp_path / "net.onnx", reduce_range="on")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`backend`: expected one of 'onnxruntime', 'openvino', received 'eager'"
    ):
        quantize(trained, images, tmp_path / "net.onnx", backend="eager")
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_prepare_images_normalises_and_resizes() -> None:
    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    x = prepare_images(images)
    assert x.dtype == torch.float32 and x.shape == (6, 3, 20, 20)
    # own statistics: every channel ends up with mean 0 and std 1
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    given = prepare_images(images, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.allclose(given, (images.float() / 255 - 0.5) / 0.25)
    assert prepare_images(images, input_size=(3, 32, 24)).shape == (6, 3, 32, 24)
    floats = torch.randn(2, 3, 8, 8)
    assert torch.equal(prepare_images(floats), floats)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (torch.zeros(2, 8, 8, dtype=torch.uint8), {}, r"`images`: expected an ImageDataset"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), {"input_size": (3, 8, 8)}, "3 channels"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), {"mean": (0.5,)}, "both or neither"),
        (torch.zeros(2, 1, 8, 8), {"mean": (0.5,), "std": (1.0,)}, "None for float images"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int32), {}, "uint8 or floating-point"),
        (
            torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
            {"mean": (0.5, 0.5), "std": (1.0, 1.0)},
            "1 values each",
        ),
    ],
)
def test_prepare_images_names_bad_input(images: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prepare_images(images, **kwargs)


def test_compare_top1_counts_agreement_and_accuracy() -> None:
    # The "model" reads its logits straight from the input: one-hot rows picking a class each.
    picks_ref = torch.tensor([0, 1, 2, 2, 1])
    picks_cand = torch.tensor([0, 1, 1, 2, 0])
    labels = torch.tensor([0, 1, 1, 2, 2])

    def as_inputs(picks: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(picks, 3).float().view(-1, 1, 1, 3)

    inputs = torch.cat([as_inputs(picks_ref), as_inputs(picks_cand)], dim=1)  # (5, 2, 1, 3)
    result = compare_top1(lambda x: x[:, 0, 0], lambda x: x[:, 1, 0], inputs, labels, batch_size=2)
    assert result.samples == 5
    assert result.agreement == pytest.approx(3 / 5)  # rows 0, 1, 3
    assert result.reference_accuracy == pytest.approx(3 / 5)  # rows 0, 1, 3
    assert result.candidate_accuracy == pytest.approx(4 / 5)  # rows 0, 1, 2, 3
    assert result.accuracy_drop == pytest.approx(-20.0)
    # The reference's classes, computed once, stand for the reference: the same counts; a
    # wrong one is refused before the candidate runs.
    classes = top1_classes(lambda x: x[:, 0, 0], inputs, batch_size=2)
    assert classes.tolist() == picks_ref.tolist()

    def never(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the reference ran again")

    again = compare_top1(classes, lambda x: x[:, 1, 0], inputs, labels, batch_size=2)
    assert again == result
    with pytest.raises(ValueError, match=r"argument `reference`: expected a callable, or \(5,\)"):
        compare_top1(classes[:4], never, inputs, batch_size=2)
    with pytest.raises(ValueError, match=r"argument `reference`.*integer top-1 classes"):
        compare_top1(classes.float(), never, inputs, batch_size=2)


@pytest.mark.parametrize(
    ("agreement", "samples"), [(0.995, 1000), (0.9936, 10000), (1.0, 1000), (0.0, 10), (0.6, 5)]
)
def test_agreement_interval_is_the_set_its_definition_gives(agreement: float, samples: int):
    # Independent of the closed form: scan p over [0, 1] and keep those the Wilson inequality
    # |agreement - p| <= z sqrt(p (1 - p) / n) admits.
    p = torch.linspace(0, 1, 2_000_001, dtype=torch.float64)
    admitted = p[(agreement - p).abs() <= 1.96 * (p * (1 - p) / samples).sqrt()]
    low, high = agreement_interval(agreement, samples)
    assert low == pytest.approx(float(admitted.min()), abs=1e-6)
    assert high == pytest.approx(float(admitted.max()), abs=1e-6)
    assert low <= agreement <= high


def test_agreement_interval_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    # 4000 simulated measurements of a 99.5% rate on 1000 images each.
    rate, n = 0.995, 1000
    generator = torch.Generator().manual_seed(0)
    counts = torch.binomial(
        torch.full((4000,), float(n)), torch.full((4000,), rate), generator=generator
    )
    covered = [
        low <= rate <= high
        for low, high in (agreement_interval(float(c) / n, n) for c in counts.tolist())
    ]
    assert 0.92 <= sum(covered) / len(covered) <= 0.98


def test_an_agreements_reported_interval_and_drop_are_those_of_its_own_counts() -> None:
    # What `evaluate` prints and writes: 197 of 200 images agree, accuracy 90% -> 88%.
    result = Agreement(
        samples=200, agreement=197 / 200, reference_accuracy=0.90, candidate_accuracy=0.88
    )
    expected = agreement_interval(197 / 200, 200)
    assert result.interval == expected
    assert expected != agreement_interval(197 / 200, 200, z=1.645)  # not another level
    assert result.to_dict()["agreement_interval_95"] == list(expected)
    assert result.accuracy_drop == pytest.approx(2.0)
    assert result.to_dict()["accuracy_drop_points"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0.5, 0), "`samples`: expected a positive integer"), ((1.2, 10), "`agreement`: expected")],
)
def test_agreement_interval_names_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        agreement_interval(*args)


def test_quantize_names_bad_arguments(trained, tmp_path: Path) -> None:
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        quantize(trained, images, tmp_path / "missing" / "net.onnx")
    with pytest.raises(ValueError, match=r"`num_samples`: expected a positive integer"):
        quantize(trained, images, tmp_path / "net.onnx", num_samples=0)
    with pytest.raises(ValueError, match=r"`model`: expected an nn\.Module"):
        quantize("net", images, tmp_path / "net.onnx")  # type: ignore[arg-type]


def trained_weights_file(folder: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> Path:
    """A `sepconv train`-style weights file of a Fashion-MNIST MobileNetV1-0.25 (random weights,
    with the metadata that names its architecture and normalisation)."""
    kwargs = {"num_classes": 10, "in_chans": 1, "small_input": True}
    weights = folder / "model.safetensors"
    meta = {
        "kind": "weights",
        "model": "mobilenet_v1_025",
        "model_kwargs": kwargs,
        "normalization": {"mean": list(mean), "std": list(std)},
    }
    save_tensors(weights, create_model("mobilenet_v1_025", **kwargs).state_dict(), meta)
    return weights


def test_cli_quantizes_trained_weights(data, tmp_path: Path, capsys) -> None:
    _, _, mean, std = data
    weights = trained_weights_file(tmp_path, mean, std)
    out, report = tmp_path / "int8.onnx", tmp_path / "int8.json"
    argv = ["quantize", "mobilenet_v1_025", "--weights", str(weights), "--calib-data",
            "fashion-mnist", "--output", str(out), "--num-samples", "32", "--eval-samples",
            "200", "--threads", "1", "--json", str(report)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(report.read_text())
    assert summary["ops_after_fusion"]["QLinearConv"] == 27
    assert summary["check"]["samples"] == 200
    assert summary["normalization"] == {"mean": list(mean), "std": list(std)}
    assert out.is_file()
    assert "top-1 agreement with fp32" in capsys.readouterr().out


def test_cli_quantizes_for_openvino_with_nncf(data, tmp_path: Path, capsys) -> None:
    _, _, mean, std = data
    weights = trained_weights_file(tmp_path, mean, std)
    out, report = tmp_path / "int8.onnx", tmp_path / "int8.json"
    argv = ["quantize", "mobilenet_v1_025", "--weights", str(weights), "--calib-data",
            "fashion-mnist", "--output", str(out), "--num-samples", "16", "--eval-samples",
            "100", "--backend", "openvino", "--quantizer", "nncf", "--threads", "1", "--json",
            str(report)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(report.read_text())
    assert (summary["quantizer"], summary["backend"]) == ("nncf", "openvino")
    layers = summary["openvino_layers"]
    # All 27 convs in int8: u8 activations after ReLU, i8 where the input is signed (the stem).
    assert layers.get("Convolution u8", 0) + layers.get("Convolution i8", 0) == 27
    assert summary["check"]["backend"] == "openvino" and summary["check"]["samples"] == 100
    assert "int8 kernels (openvino)" in capsys.readouterr().out


def test_cli_rejects_weights_of_another_model(data, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "model.safetensors"
    save_tensors(weights, {"x": torch.zeros(1)}, {"kind": "weights", "model": "mobilenet_v2"})
    argv = ["quantize", "mobilenet_v1", "--weights", str(weights), "--calib-data", "fashion-mnist"]
    assert main(argv) == 2
    assert "trained for 'mobilenet_v2', received 'mobilenet_v1'" in capsys.readouterr().err


def test_a_model_with_real_batchnorm_statistics_is_checked_on_real_images(tmp_path: Path) -> None:
    """An EfficientNet whose BatchNorm statistics come from real images is ill-conditioned on
    noise (ONNX Runtime vs PyTorch: 2.9e-4 on randn, 3.2e-6 on a real image, 2-core Xeon):
    export_onnx checks it on real images when given them, and quantize on its calibration images,
    so it quantizes instead of failing the export check."""
    test = fashion_mnist("test")
    images = prepare_images(test.images[:65])
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", num_classes=10, in_chans=1, small_input=True)
    update_bn_statistics(model, images[:64].split(32))
    size = (1, 28, 28)
    noise = export_onnx(model, tmp_path / "n.onnx", input_size=size, check_batches=(1,), rtol=1.0)
    real = export_onnx(
        model, tmp_path / "r.onnx", input_size=size, check_batches=(1,), check_inputs=images[64:]
    )
    assert real.max_rel_error[1] <= 1e-4
    # better conditioned on real images (by ~90x on the machine above; how much varies)
    assert real.max_rel_error[1] < noise.max_rel_error[1]
    int8 = quantize(model, images[:64], tmp_path / "q.onnx", num_samples=16)
    assert int8.path == tmp_path / "q.onnx" and int8.precision == "int8"
