"""compile_for_inference() and load_onnx(): real ONNX Runtime and OpenVINO sessions, real files.

The model is a small EfficientNet-style network built from sepconv blocks (strided stem, MBConv
with SiLU, squeeze-excite and a residual add, 1x1 head, pool, classifier) with randomised
BatchNorm statistics, so that folding changes the weights. Inputs are 32x32: the backends see
the same operators as at 224x224, only smaller activations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from nets import mbconv_net, randomize_norms
from torch import nn

import sepconv.deploy.compiled
from sepconv import export_onnx
from sepconv.bench.timing import bf16_native
from sepconv.deploy import (
    BackendMismatchError,
    InferenceModel,
    compile_for_inference,
    load_onnx,
)
from sepconv.deploy.compiled import BF16_RTOL
from sepconv.deploy.onnx_check import relative_error
from sepconv.deploy.runtime import AUTO_BACKENDS

SIZE = (3, 32, 32)
RTOL = 1e-4


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(mbconv_net(3), seed=1).eval()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return small_net()


def eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("backend", ["eager", "onnxruntime", "openvino"])
def test_backend_matches_eager(net: nn.Module, backend: str) -> None:
    compiled = compile_for_inference(net, backend=backend, input_size=SIZE, batch_size=2, threads=1)
    assert isinstance(compiled, InferenceModel)
    assert (compiled.backend, compiled.input_shape, compiled.threads) == (
        backend,
        (2, *SIZE),
        1,
    )
    assert compiled.precision == "fp32" and compiled.timings == {}
    assert compiled.max_rel_error is not None and compiled.max_rel_error <= RTOL
    x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(7))
    out = compiled(x)
    assert out.dtype == torch.float32 and out.shape == (2, 10)
    assert relative_error(out, eager(net, x)) <= RTOL
    # a second call with other data is not served from a stale buffer
    assert relative_error(compiled(2 * x), eager(net, 2 * x)) <= RTOL


@pytest.mark.parametrize("backend", ["eager", "onnxruntime", "openvino"])
def test_bf16_precision_is_used_where_a_backend_has_it(net: nn.Module, backend: str) -> None:
    compiled = compile_for_inference(
        net, backend=backend, input_size=SIZE, threads=1, precision="bf16"
    )
    # ONNX Runtime has no bf16 convolutions; OpenVINO uses bf16 only on a CPU that has it.
    in_bf16 = backend == "eager" or (backend == "openvino" and bf16_native())
    assert compiled.precision == ("bf16" if in_bf16 else "fp32")
    x = torch.randn(1, *SIZE, generator=torch.Generator().manual_seed(7))
    out = compiled(x)
    error = relative_error(out, eager(net, x))
    assert out.dtype == torch.float32
    if in_bf16:  # rounded to 8 significand bits: less exact than fp32, still close
        assert error <= BF16_RTOL
        if backend == "eager":  # the logits leave a bf16 layer: each one is a bf16 number
            assert torch.equal(out, out.to(torch.bfloat16).float())
    else:
        assert error <= RTOL


@pytest.mark.slow
def test_compile_backend_matches_eager(net: nn.Module) -> None:
    compiled = compile_for_inference(net, backend="compile", input_size=SIZE, threads=1)
    x = torch.randn(1, *SIZE, generator=torch.Generator().manual_seed(7))
    assert compiled.backend == "compile"
    assert relative_error(compiled(x), eager(net, x)) <= RTOL


def test_auto_keeps_the_fastest_measured_backend(net: nn.Module) -> None:
    compiled = compile_for_inference(net, input_size=SIZE, threads=1)
    assert set(compiled.timings) | set(compiled.skipped) == set(AUTO_BACKENDS)
    assert set(compiled.timings) == set(AUTO_BACKENDS)  # all installed in the test environment
    assert all(ms > 0 for ms in compiled.timings.values())
    assert compiled.backend in compiled.timings
    assert compiled.timings[compiled.backend] == min(compiled.timings.values())
    x = torch.randn(1, *SIZE)
    assert relative_error(compiled(x), eager(net, x)) <= RTOL


def test_auto_measures_only_the_candidates_given(net: nn.Module) -> None:
    compiled = compile_for_inference(
        net, input_size=SIZE, threads=1, candidates=("eager", "onnxruntime")
    )
    assert set(compiled.timings) == {"eager", "onnxruntime"}


def test_auto_skips_a_runtime_that_is_not_installed(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import openvino` raise ImportError, as if it were absent.
    monkeypatch.setitem(sys.modules, "openvino", None)
    compiled = compile_for_inference(
        net, input_size=SIZE, threads=1, candidates=("eager", "openvino")
    )
    assert compiled.backend == "eager" and set(compiled.timings) == {"eager"}
    assert "sepconv[openvino]" in compiled.skipped["openvino"]


def test_auto_leaves_out_a_backend_that_disagrees(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tolerance below zero fails every check: a named backend raises, auto skips each one and
    # raises only when none is left, naming every backend's error.
    monkeypatch.setattr(sepconv.deploy.compiled, "FP32_RTOL", -1.0)
    with pytest.raises(BackendMismatchError, match=r"The onnxruntime backend \(fp32\) disagrees"):
        compile_for_inference(net, backend="onnxruntime", input_size=SIZE, threads=1)
    with pytest.raises(BackendMismatchError, match=r"eager: The eager backend .* onnxruntime: The"):
        compile_for_inference(net, input_size=SIZE, threads=1, candidates=("eager", "onnxruntime"))


def test_example_input_is_checked_and_used(net: nn.Module) -> None:
    image = torch.rand(1, *SIZE)
    compiled = compile_for_inference(net, backend="onnxruntime", input_size=SIZE, example=image)
    assert compiled.max_rel_error == relative_error(compiled(image), eager(net, image))
    with pytest.raises(ValueError, match=r"`example`: expected a float tensor \(1, 3, .*\[2, 3"):
        compile_for_inference(net, input_size=SIZE, example=torch.rand(2, *SIZE))


@pytest.mark.parametrize(
    ("module", "backend", "extra"),
    [("openvino", "openvino", "openvino"), ("onnxruntime", "onnxruntime", "onnx")],
)
def test_missing_runtime_names_the_extra(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch, module: str, backend: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"{backend} backend needs the `{module}` package.*"
                       rf"pip install 'sepconv\[{extra}\]'"):  # fmt: skip
        compile_for_inference(net, backend=backend, input_size=SIZE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "tensorrt"}, r"`backend`: expected one of 'auto', 'eager', 'compile', "),
        ({"batch_size": 0}, r"`batch_size`: expected a positive integer, received 0"),
        ({"threads": 0}, r"`threads`: expected a positive integer, received 0"),
        ({"input_size": (3, 32)}, r"`input_size`: expected \(C, H, W\)"),
        ({"candidates": ("eager", "tvm")}, r"`candidates`: expected backends among .* 'tvm'"),
        ({"candidates": ()}, r"`candidates`: expected a non-empty sequence"),
        ({"backend": "eager", "candidates": ("eager",)}, r"`candidates`: expected None unless"),
        (
            {"precision": "fp16"},
            r"`precision`: expected one of 'fp32', 'bf16', 'auto', received 'fp16'",
        ),
    ],
)
def test_invalid_arguments_are_named(net: nn.Module, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compile_for_inference(net, **{"input_size": SIZE, **kwargs})


def test_model_must_be_a_module_returning_one_tensor() -> None:
    with pytest.raises(ValueError, match=r"`model`: expected an nn\.Module"):
        compile_for_inference("mobilenet_v2", backend="eager")  # type: ignore[arg-type]

    class TwoHeads(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ValueError, match="returning one tensor, its forward returns tuple"):
        compile_for_inference(TwoHeads(), backend="eager", input_size=SIZE)


def test_wrong_input_shape_is_refused(net: nn.Module) -> None:
    compiled = compile_for_inference(net, backend="eager", input_size=SIZE, threads=1)
    with pytest.raises(ValueError, match=r"compiled for input shape \[1, 3, 32, 32\], received "
                       r"\[2, 3, 32, 32\]"):  # fmt: skip
        compiled(torch.randn(2, *SIZE))
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor, received ndarray"):
        compiled(torch.randn(1, *SIZE).numpy())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def exported(net: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    return export_onnx(net, path, input_size=SIZE, check_batches=(1,)).path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_load_onnx_runs_an_exported_file(net: nn.Module, exported: Path, backend: str) -> None:
    path = exported
    loaded = load_onnx(path, backend=backend, batch_size=3, threads=1)  # type: ignore[arg-type]
    assert (loaded.backend, loaded.input_shape, loaded.precision, loaded.path) == (
        backend,
        (3, *SIZE),
        "fp32",
        path,
    )
    x = torch.randn(3, *SIZE)
    assert relative_error(loaded(x), eager(net, x)) <= RTOL


def test_load_onnx_names_a_bad_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx' does not exist"):
        load_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model")
    with pytest.raises(ValueError, match=r"garbage\.onnx' is not a readable ONNX model"):
        load_onnx(garbage)
    with pytest.raises(ValueError, match="`backend`: expected one of 'onnxruntime', 'openvino'"):
        load_onnx(garbage, backend="eager")  # type: ignore[arg-type]


def test_relative_error_is_scaled_by_the_reference() -> None:
    reference = torch.tensor([1.0, -4.0])
    assert relative_error(torch.tensor([1.0, -3.0]), reference) == 0.25
    assert relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
    assert relative_error(torch.ones(2), torch.zeros(2)) == float("inf")
