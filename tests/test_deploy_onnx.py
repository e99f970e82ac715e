"""export_onnx(): real files, checked by the ONNX checker and run in real ONNX Runtime sessions.

Every registered architecture is exported at 32x32 (with ``small_input``, overall stride 8)
instead of its ImageNet resolution. The check does not depend on the size: the models are fully
convolutional up to an adaptive average pool, so the exported graph holds the same operators
at any input size; only the spatial extent of the activations changes. Nor does it depend on
width or depth: the registered models are grouped by the set of module types they are built of
(EfficientNet-B0..B7 share one, MobileNetV1 at every width another), and the smallest of each
group is exported; the others put the same modules, so the same exporter code, into the graph.
"""

from __future__ import annotations

import math
import os
import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from nets import randomize_norms
from torch import nn

from sepconv import ExportError, create_model, export_onnx, list_models

SIZE = (3, 32, 32)
# The deepest and the largest architectures: 10-25 s each on a loaded 2-core CPU.
SLOW = {"vgg16", "xception", "efficientnet_v2_s"}


def module_kinds(name: str) -> tuple[frozenset[str], int]:
    """The module types a registered model is built of, and its parameter count (on meta)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10, small_input=True)
    kinds = frozenset(type(m).__name__ for m in model.modules())
    return kinds, sum(p.numel() for p in model.parameters())


def architectures() -> dict[str, list[str]]:
    """The smallest registered model of each set of module types -> the others of that set."""
    groups: dict[frozenset[str], list[tuple[int, str]]] = {}
    for name in list_models():
        kinds, params = module_kinds(name)
        groups.setdefault(kinds, []).append((params, name))
    return {min(g)[1]: [n for _, n in sorted(g)[1:]] for g in groups.values()}


ARCHITECTURES = architectures()


def test_every_registered_model_has_an_exported_architecture():
    covered = [n for smallest, rest in ARCHITECTURES.items() for n in (smallest, *rest)]
    assert sorted(covered) == sorted(list_models())
    # Width and depth variants share their family's modules; the families stay apart.
    assert ARCHITECTURES["efficientnet_b0"] == [f"efficientnet_b{i}" for i in range(1, 8)]
    assert {"mobilenet_v1_025", "mobilenet_v2_050", "efficientnet_v2_s"} <= set(ARCHITECTURES)
    assert len(ARCHITECTURES) >= 10


def session(path: os.PathLike[str] | str) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(path: os.PathLike[str] | str, x: torch.Tensor) -> np.ndarray:
    return session(path).run(None, {"input": x.numpy()})[0]


def rel_error(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.abs(a - b.numpy()).max() / b.abs().max())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ARCHITECTURES]
)
def test_export_every_registered_architecture(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, num_classes=10, small_input=True)).eval()
    path = tmp_path / f"{name}.onnx"
    result = export_onnx(model, path, input_size=SIZE)

    assert result.path == path and result.opset == 18 and result.dynamic_batch
    assert set(result.max_rel_error) == {1, 8}
    assert all(e <= 1e-4 for e in result.max_rel_error.values())
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)
    # One file, one dynamic batch axis: run it here, independently of export_onnx's own check.
    [graph_input] = session(path).get_inputs()
    assert graph_input.name == "input" and graph_input.shape == ["batch", *SIZE]
    for batch in (1, 8):
        x = torch.randn(batch, *SIZE)
        with torch.no_grad():
            expected = model(x)
        got = run(path, x)
        assert got.shape == (batch, 10)
        assert rel_error(got, expected) <= 1e-4
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left


def test_static_batch_export_without_folding(tmp_path):
    model = create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "static.onnx"
    result = export_onnx(model, path, input_size=SIZE, dynamic_batch=False, fold_bn=False)
    assert not result.dynamic_batch
    assert result.input_shape == (1, *SIZE)
    assert list(result.max_rel_error) == [1]  # only the batch the file takes is checked
    assert session(path).get_inputs()[0].shape == [1, *SIZE]
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        assert rel_error(run(path, x), model.eval()(x)) <= 1e-4
    with pytest.raises(Exception, match="input"):  # ORT refuses any other batch
        run(path, torch.randn(2, *SIZE))
    # The input model was exported from a copy: still in training mode, same values.
    model.train()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_model_stays_in_training_mode(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    export_onnx(model, tmp_path / "m.onnx", input_size=(3, 8, 8), check_batches=(2,))
    assert model.training and all(m.training for m in model.modules())


class DataDependent(nn.Module):
    """Python control flow on a tensor value: a trace would keep one branch only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


class ReturnsText(nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return "logits"


class FixedBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1)


def test_data_dependent_control_flow_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match=r"Cannot export DataDependent .*control flow") as info:
        export_onnx(DataDependent(), tmp_path / "m.onnx", input_size=(3, 8, 8))
    assert info.value.__cause__ is not None  # the torch.export error, chained
    assert os.listdir(tmp_path) == []


def test_non_tensor_output_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match=r"ReturnsText .*returns str, expected a tensor"):
        export_onnx(ReturnsText(), tmp_path / "m.onnx", input_size=(3, 8, 8))


def test_model_that_fixes_the_batch_needs_a_static_export(tmp_path):
    with pytest.raises(ExportError, match=r"FixedBatch.*dynamic_batch=False"):
        export_onnx(FixedBatch(), tmp_path / "m.onnx", input_size=(3, 4, 4))
    result = export_onnx(
        FixedBatch(), tmp_path / "m.onnx", input_size=(3, 4, 4), dynamic_batch=False,
        check_batches=(2,),
    )  # fmt: skip
    assert result.input_shape == (2, 3, 4, 4) and list(result.max_rel_error) == [2]


def test_failed_check_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")
    model = create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    # No float32 export matches eager to 1e-12: the check fails after the file was written.
    with pytest.raises(
        ExportError, match=r"mobilenet_v1_025 disagrees .* batch 1: .* > rtol"
    ) as err:
        export_onnx(model, path, input_size=SIZE, rtol=1e-12)
    # The message measures what float32 alone costs on that input, to tell noise from a bug.
    own = re.search(r"float64 on this input is (\S+?)\. If", str(err.value))
    assert own is not None and 0 < float(own.group(1)) < 1e-4
    assert path.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_check_inputs_replace_the_random_ones(tmp_path):
    """The file is compared on the images given: a NaN image fails a check that noise passes."""
    model = create_model("mobilenet_v1_025", num_classes=10, small_input=True).eval()
    export_onnx(model, tmp_path / "ok.onnx", input_size=SIZE, check_inputs=torch.rand(3, *SIZE))
    nan = torch.full((1, *SIZE), math.nan)
    with pytest.raises(ExportError, match=r"batch 8: max relative error nan > rtol"):
        export_onnx(model, tmp_path / "nan.onnx", input_size=SIZE, check_batches=(8,),
                    check_inputs=nan)  # fmt: skip
    assert os.listdir(tmp_path) == ["ok.onnx"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (32, 32)}, r"`input_size`: expected \(C, H, W\)"),
        ({"opset": 17}, r"`opset`: expected an integer >= 18"),
        ({"check_batches": ()}, r"`check_batches`: expected a non-empty sequence"),
        ({"check_batches": (1, 0)}, r"`check_batches`: expected a positive integer"),
        ({"rtol": 0.0}, r"`rtol`: expected a positive number"),
        (
            {"check_inputs": torch.zeros(2, 1, 32, 32)},
            r"`check_inputs`: expected a float tensor \(N, 3, 32, 32\), received .*\[2, 1, 32",
        ),
        ({"input_size": (1, 32, 32)}, r"`input_size`: mobilenet_v1_025 fails on an input"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, message):
    model = create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    with pytest.raises(ValueError, match=message):
        export_onnx(model, tmp_path / "m.onnx", **{"input_size": SIZE, **kwargs})
    assert os.listdir(tmp_path) == []


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(nn.Conv2d(3, 4, 3), tmp_path / "no" / "m.onnx", input_size=(3, 8, 8))


def test_several_outputs(tmp_path):
    """features_only models return a list of maps: one ONNX output each."""
    model = create_model("mobilenet_v1_025", features_only=True, small_input=True).eval()
    result = export_onnx(model, tmp_path / "f.onnx", input_size=SIZE, check_batches=(3,))
    outputs = session(result.path).get_outputs()
    assert [o.name for o in outputs] == [f"output_{i}" for i in range(len(outputs))]
    assert len(outputs) == len(model.feature_info) > 1
    assert math.isfinite(result.max_rel_error[3])


@pytest.mark.parametrize("module", ["onnx", "onnxruntime", "onnxscript"])
def test_missing_runtime_names_the_extra(tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf"`{module}` package.*pip install 'sepconv\[onnx\]'"):
        export_onnx(nn.Conv2d(3, 4, 3), tmp_path / "m.onnx", input_size=(3, 8, 8))
    assert os.listdir(tmp_path) == []
