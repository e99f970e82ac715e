"""Every device-aware path on CUDA: models, training with resume, compiled inference, the CLI.

Each test is parametrised over the device. The ``cuda`` variants carry the ``cuda`` marker and
skip cleanly on a machine without a GPU (``pytest -m cuda`` selects them where there is one);
the ``cpu`` variants run everywhere, so the test logic itself is exercised in CI. The reference
is always the CPU fp32 model: an independent oracle for every CUDA result.

Facts a CUDA run records rather than asserts (whether a resumed run is bit-exact) are appended
as JSON lines to the file named by ``SEPCONV_CUDA_RECORD`` when it is set.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from nets import mbconv_net, randomize_norms
from torch import nn

import sepconv.deploy.cuda
from sepconv.cli import main
from sepconv.data import ImageDataset
from sepconv.deploy import BackendMismatchError, compile_for_inference
from sepconv.deploy.compiled import BF16_RTOL, FP16_RTOL, FP32_RTOL, InferenceModel
from sepconv.deploy.cuda import CUDA_BACKENDS, CUDA_PRECISIONS, compile_for_cuda
from sepconv.deploy.onnx_check import relative_error
from sepconv.models import create_model, list_models
from sepconv.train import TrainConfig, Trainer, load_tensors
from sepconv.train.distributed import DistributedContext

HAS_CUDA = torch.cuda.is_available()
CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")],
)
DEVICES = ["cpu", CUDA]
# One member of each family on the CPU (the CPU variant checks the test, not the hardware);
# every registered model on the GPU.
CPU_MODELS = ("efficientnet_b0", "mobilenet_v1_025", "mobilenet_v2_050", "resnet50", "xception")
SIZE = 32  # small_input models at 32x32: enough for every stage, fast everywhere

# Tolerances, as max|out - cpu_fp32| / max|cpu_fp32| over the logits (or all gradients) of a
# random-weight model (num_classes=10, 32x32 inputs, eval mode). fp32 runs with TF32 off:
# cuDNN and the CPU then differ only in summation order (~1e-6 relative per layer, growing
# through up to ~100 random layers), held to the deployment check's 1e-3. Gradients are sums of
# more terms in another order; 5e-3 still separates that from a wrong kernel (errors of order
# 1). bf16 autocast rounds every conv input to 8 significand bits: CPU autocast moves these
# logits by 0.003-0.012 (efficientnet_b0 0.012, xception 0.003), so 0.1 leaves room for deeper
# members (b7, vgg16) and cuDNN's own bf16 kernels while still failing a broken bf16 path.
FORWARD_RTOL = 1e-3
GRAD_RTOL = 5e-3
AUTOCAST_RTOL = 0.1


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for the block (PyTorch allows it for cuDNN convolutions by default)."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def record(fact: dict[str, Any]) -> None:
    """Append ``fact`` as one JSON line to ``$SEPCONV_CUDA_RECORD``, when set."""
    target = os.environ.get("SEPCONV_CUDA_RECORD")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(fact) + "\n")


def forward_backward(
    model: nn.Module, x: torch.Tensor, device: str, autocast: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and all parameter gradients concatenated (CPU)."""
    model = copy.deepcopy(model).to(device)
    x = x.to(device).requires_grad_(False)
    with strict_fp32(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    out.float().square().mean().backward()
    grads = [
        p.grad.flatten() if p.grad is not None else torch.full_like(p.flatten(), float("nan"))
        for p in model.parameters()
    ]
    return out.detach().float().cpu(), torch.cat(grads).float().cpu()


def models_for(device: str) -> list[str]:
    return list_models() if device == "cuda" else list(CPU_MODELS)


def model_cases() -> list[Any]:
    cases: list[Any] = [pytest.param("cpu", name, id=f"cpu-{name}") for name in CPU_MODELS]
    cases += [
        pytest.param(
            "cuda",
            name,
            id=f"cuda-{name}",
            marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")],
        )
        for name in list_models()
    ]
    return cases


@pytest.mark.parametrize(("device", "name"), model_cases())
def test_forward_and_backward_match_the_cpu_fp32_model(device: str, name: str) -> None:
    model = create_model(name, num_classes=10, small_input=True).eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    want_out, want_grad = forward_backward(model, x, "cpu", autocast=False)
    out, grad = forward_backward(model, x, device, autocast=False)
    assert out.shape == (2, 10) and torch.isfinite(grad).all()
    assert relative_error(out, want_out) <= FORWARD_RTOL
    assert relative_error(grad, want_grad) <= GRAD_RTOL
    amp_out, amp_grad = forward_backward(model, x, device, autocast=True)
    error = relative_error(amp_out, want_out)
    record({"test": "bf16_autocast", "device": device, "model": name, "rel_error": error})
    assert torch.isfinite(amp_grad).all() and error <= AUTOCAST_RTOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["mobilenet_v2_050", "efficientnet_b0"])
def test_channels_last_gives_the_nchw_result(device: str, name: str) -> None:
    model = create_model(name, num_classes=10, small_input=True).eval().to(device)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    with strict_fp32(), torch.no_grad():
        nchw = model(x)
        nhwc_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        nhwc = nhwc_model(x.contiguous(memory_format=torch.channels_last))
    assert relative_error(nhwc.cpu(), nchw.cpu()) <= FORWARD_RTOL


# ------------------------------------------------------------------ training, checkpoint, resume
def tiny_data(n: int = 64, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    images = torch.randint(0, 100, (n, 1, 12, 12), generator=gen, dtype=torch.uint8)
    images[:, :, :3, :] += (labels * 40).to(torch.uint8).view(n, 1, 1, 1)  # learnable
    return ImageDataset(images, labels, ("a", "b", "c", "d"))


def tiny_trainer(out: Path, device: str, model_seed: int = 0) -> Trainer:
    torch.manual_seed(model_seed)
    model = create_model("mobilenet_v2_050", num_classes=4, in_chans=1, small_input=True)
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, ema_decay=0.9, checkpoint_every=2)
    context = DistributedContext(rank=0, world_size=1, device=torch.device(device))
    return Trainer(model, config, tiny_data(), out_dir=out, context=context)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("deterministic", [False, True], ids=["cudnn-default", "deterministic"])
def test_trainer_resumes_from_a_checkpoint(
    tmp_path: Path, device: str, deterministic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    straight = tiny_trainer(tmp_path / "a", device)
    straight.fit()
    first = tiny_trainer(tmp_path / "b", device)
    first.fit(max_steps=3)
    assert first.global_step == 3 < straight.global_step
    torch.manual_seed(1234)  # nothing but the checkpoint may carry state across
    resumed = tiny_trainer(tmp_path / "b", device, model_seed=99)
    resumed.fit(resume=tmp_path / "b" / "last.safetensors")

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    exact = all(torch.equal(a[k], b[k]) for k in a)
    worst = max(relative_error(b[k].cpu(), a[k].cpu()) for k in a if a[k].is_floating_point())
    record(
        {
            "test": "trainer_resume",
            "device": device,
            "cudnn_deterministic": deterministic,
            "bf16_autocast": straight.bf16,
            "bit_exact": exact,
            "max_rel_param_diff": worst,
        }
    )
    weights, meta = load_tensors(tmp_path / "b" / "model.safetensors")
    assert meta["kind"] == "weights" and set(weights) == set(a)
    if device == "cpu":
        assert exact  # the CPU kernels are deterministic: resume is bit-exact
    else:
        # Recorded, not assumed: cuDNN may pick non-deterministic kernels (and the depthwise
        # and pooling backward use atomics), so only closeness is required.
        assert worst < 0.05


# ------------------------------------------------------------------ compiled inference
@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(mbconv_net(3)).eval()


def compile_cases() -> list[Any]:
    cases: list[Any] = [pytest.param("cpu", "eager", "fp32", id="cpu-eager-fp32")]
    for backend in CUDA_BACKENDS:
        for precision in CUDA_PRECISIONS:
            cases.append(
                pytest.param(
                    "cuda",
                    backend,
                    precision,
                    id=f"cuda-{backend}-{precision}",
                    marks=[
                        pytest.mark.cuda,
                        pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU"),
                    ],
                )
            )
    return cases


@pytest.mark.parametrize(("device", "backend", "precision"), compile_cases())
def test_each_inference_candidate_matches_eager_fp32(
    net: nn.Module, device: str, backend: str, precision: str
) -> None:
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    compiled = compile_for_inference(
        net,
        backend=backend,  # type: ignore[arg-type]
        input_size=(3, SIZE, SIZE),
        batch_size=2,
        precision=precision,  # type: ignore[arg-type]
        device=device,
        example=x,
        threads=1,
        # max-autotune (the default) once; the default mode elsewhere keeps the run short
        compile_mode="max-autotune" if precision == "fp32" else "default",
    )
    rtol = {"fp32": FP32_RTOL, "bf16": BF16_RTOL, "fp16": FP16_RTOL}[precision]
    assert (compiled.backend, compiled.precision) == (backend, precision)
    assert compiled.device.startswith(device)
    with torch.no_grad():
        want = net(x)
    for _ in range(2):  # a replayed CUDA graph must not hand back a buffer it then overwrites
        first = compiled(x)
        second = compiled(x + 1)
    assert first.dtype == torch.float32 and str(first.device).startswith(device)
    assert relative_error(first.cpu(), want) <= rtol
    assert not torch.equal(first, second)


@pytest.mark.parametrize("device", [CUDA])
def test_every_precision_matches_fp32_on_weights_that_keep_their_scale(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On random weights with fresh BatchNorm statistics the activations shrink to ~1e-8 and
    fp16 underflows; with the calibrated ones of benchmarks/gpu_inference.py (activations at
    unit scale) every precision's candidate passes its check."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from gpu_inference_models import calibrate_norms

    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=10, small_input=True).eval()
    calibrate_norms(model, SIZE, torch.device(device))
    model.cpu()
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    errors = {}
    for precision in CUDA_PRECISIONS:
        compiled = compile_for_inference(
            model, backend="eager", input_size=(3, SIZE, SIZE), batch_size=4,
            precision=precision,  # type: ignore[arg-type]
            device=device, example=x,
        )  # fmt: skip
        errors[precision] = compiled.max_rel_error
    record({"test": "precisions_on_calibrated_weights", "max_rel_error": errors})


@pytest.mark.parametrize("device", DEVICES)
def test_auto_reports_what_it_picked_and_why(net: nn.Module, device: str) -> None:
    candidates = ("eager", "cudagraph") if device == "cuda" else ("eager",)
    compiled = compile_for_inference(
        net, input_size=(3, SIZE, SIZE), candidates=candidates, device=device, threads=1
    )
    assert compiled.timings and all(ms > 0 for ms in compiled.timings.values())
    picked = f"{compiled.backend}/{compiled.precision}" if device == "cuda" else compiled.backend
    assert compiled.timings[picked] == min(compiled.timings.values())
    assert compiled.why.startswith(f"{picked}: ")
    if device == "cuda":
        # eager in every precision (unless its check failed), CUDA graphs at the fastest one
        measured = set(compiled.timings) | set(compiled.skipped)
        assert measured >= {f"eager/{p}" for p in CUDA_PRECISIONS}
        assert any(k.startswith("cudagraph/") for k in compiled.timings)
        record({"test": "auto", "picked": picked, "timings_ms": dict(compiled.timings)})


@pytest.mark.skipif(HAS_CUDA, reason="checks the error a machine without a GPU gives")
def test_cuda_without_a_gpu_is_refused_by_name(net: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"`device`: expected a device this machine has"):
        compile_for_inference(net, input_size=(3, SIZE, SIZE), device="cuda")


def test_a_cuda_backend_is_refused_on_the_cpu(net: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"`backend`: expected one of .*'cudagraph'"):
        compile_for_inference(net, backend="cudagraph", input_size=(3, SIZE, SIZE))


# ------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("device", DEVICES)
def test_cli_bench_runs_end_to_end(tmp_path: Path, device: str) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "mobilenet_v1_025", "--input-size", "32", "--device", device]
    argv += ["--batch", "1,4", "--channels-last", "--repeats", "3", "--json", str(out)]
    if device == "cuda":
        argv += ["--dtype", "fp32,bf16,fp16", "--per-layer", "--twin"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["device"].startswith(device)
    points = result["points"]
    assert {p["device"] for p in points} == {result["device"]}
    assert {(p["batch"], p["channels_last"]) for p in points} == {
        (b, c) for b in (1, 4) for c in (False, True)
    }
    if device == "cuda":
        assert {p["dtype"] for p in points} == {"fp32", "bf16", "fp16"}
        ceilings = result["per_layer"]["ceilings"]
        assert ceilings["device"].startswith("cuda") and ceilings["bf16_peak_gflops"] > 0
        assert result["twin"]["pairs"] == 13


@pytest.mark.skipif(HAS_CUDA, reason="checks the error a machine without a GPU gives")
def test_cli_bench_cuda_without_a_gpu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "mobilenet_v1_025", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`--device`" in err and "Traceback" not in err


def test_cuda_selection_logic_runs_anywhere(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CUDA path's choice (eager in every precision, timed; the rest at the fastest one;
    # alternating timing; the reason) does not depend on the device: run it on the CPU.
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = net(x)
    checked: list[str] = []

    def check(name, runner, precision, shape, example, reference, *, device):  # type: ignore[no-untyped-def]
        checked.append(f"{name}/{precision}")
        error = relative_error(runner(example).cpu(), reference)
        if precision == "fp16":  # stands for a candidate that fails its check
            raise BackendMismatchError(f"{name}: error {error:.3g} > -1")
        return InferenceModel(name, shape, 1, runner, precision, max_rel_error=error)

    monkeypatch.setattr(sepconv.deploy.cuda, "checked", check)
    picked = compile_for_cuda(
        net,
        x,
        reference,
        torch.device("cpu"),
        backends=("eager",),
        precisions=CUDA_PRECISIONS,
        auto=True,
        compile_mode="default",
        rounds=2,
    )
    assert checked == ["eager/fp32", "eager/bf16", "eager/fp16"]
    assert set(picked.timings) == {"eager/fp32", "eager/bf16"} and set(picked.skipped) == {
        "eager/fp16"
    }
    assert (
        picked.why.startswith(f"eager/{picked.precision}: ")
        and "left out: eager/fp16" in picked.why
    )
    assert picked.max_rel_error is not None and picked.max_rel_error <= BF16_RTOL
