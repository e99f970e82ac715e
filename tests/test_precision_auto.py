"""``compile_for_inference(precision="auto")``: fp32, bf16 and int8 candidates judged by their
top-1 agreement with eager fp32 on the user's images, and ``--precision auto`` on the CLI.

The agreement oracles here are computed independently: the returned model is run on the
calibration images batch by batch and its argmax compared with the unmodified eager model's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import sepconv.deploy.choose as choose_module
import sepconv.deploy.precision as precision_module
from sepconv import create_model, save_model
from sepconv.bench.timing import Timing, bf16_native
from sepconv.cli import main
from sepconv.data import load_fashion_mnist
from sepconv.deploy import compile_for_inference, prepare_images, quantize, split_calibration
from sepconv.deploy.compiled import BF16_RTOL, InferenceModel
from sepconv.deploy.precision import check_calibration
from sepconv.train import update_bn_statistics

SIZE = (1, 28, 28)
BATCH = 8


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    test = load_fashion_mnist("test")
    return prepare_images(test.images[:300], mean=[0.286], std=[0.353])


@pytest.fixture(scope="module")
def model(images: torch.Tensor) -> nn.Module:
    """A small MobileNetV1 whose BatchNorm statistics come from real images, so that its
    activations have a trained network's scale."""
    torch.manual_seed(0)
    net = create_model("mobilenet_v1_025", num_classes=10, in_chans=1, small_input=True)
    return update_bn_statistics(net, images[100:].split(50))


def eager_top1(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).argmax(-1)


def test_split_calibration_holds_out_the_images_int8_is_not_calibrated_on():
    # Each image is its own index, so the parts can be traced back.
    for count in (1, 2, 7, 60, 512, 1000):
        images = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1)
        calibrate, judge = split_calibration(images)
        got_c, got_j = calibrate.flatten().long().tolist(), judge.flatten().long().tolist()
        assert len(got_c) == min(256, count // 2) and len(got_j) == count - len(got_c)
        assert not set(got_c) & set(got_j) and sorted(got_c + got_j) == list(range(count))
        assert got_c == sorted(got_c) and got_j == sorted(got_j)  # the images' own order
        again, _ = split_calibration(images.clone())
        assert torch.equal(again, calibrate)  # the same images give the same split
    # A seeded draw, not the first N: a class-sorted file would otherwise give int8 one class.
    calibrate, _ = split_calibration(torch.arange(1000.0).view(1000, 1, 1, 1))
    assert calibrate.max() > 500


def test_reported_agreement_is_the_chosen_models_own(model: nn.Module, images: torch.Tensor):
    calibration = images[:120]  # int8 on 60 of them, judged on the 60 others
    # A low bar, so that the fastest candidate of any precision may win.
    fast = compile_for_inference(
        model, precision="auto", calibration=calibration, min_agreement=0.3,
        input_size=SIZE, batch_size=BATCH, threads=1, candidates=("onnxruntime", "openvino"),
    )  # fmt: skip
    _, judged = split_calibration(calibration)
    assert len(judged) == 60  # 7 full batches of 8 and a ragged tail of 4
    padded = torch.cat([judged, judged[:4]])
    predicted = torch.cat([fast(b).argmax(-1) for b in padded.split(BATCH)])[:60]
    expected = (predicted == eager_top1(model, judged)).double().mean().item()
    assert fast.agreement == expected
    assert fast.candidates[f"{fast.backend}/{fast.precision}"].agreement == expected
    assert all(r.samples == 60 for r in fast.candidates.values() if r.median_ms is not None)
    # Every precision was considered: fp32 on each runtime, bf16 (OpenVINO, where native), int8.
    precisions = {r.precision for r in fast.candidates.values()}
    assert {"fp32", "bf16", "int8"} <= precisions
    # The choice is the fastest candidate that qualified, and the report says so.
    kept = {n: r.median_ms for n, r in fast.candidates.items() if r.kept}
    assert f"{fast.backend}/{fast.precision}" == min(kept, key=kept.__getitem__)
    assert fast.timings == {n: r.median_ms for n, r in fast.candidates.items() if r.median_ms}
    for report in fast.candidates.values():
        if report.median_ms is not None:
            assert report.kept == (report.precision == "fp32" or report.agreement >= 0.3)
    assert fast.why.startswith(f"{fast.backend}/{fast.precision}:")
    assert "on 60 held-out calibration images" in fast.why


def test_int8_is_calibrated_only_on_its_part_of_the_split(
    model: nn.Module, images: torch.Tensor, tmp_path
):
    calibration = images[:64]
    fast = compile_for_inference(
        model, backend="onnxruntime", precision="auto", calibration=calibration,
        min_agreement=0.3, input_size=SIZE, batch_size=BATCH, threads=1,
    )  # fmt: skip
    int8_part, judged = split_calibration(calibration)
    # The same file written from the int8 part alone scores the reported agreement on the
    # held-out part; a file calibrated on all 64 images has other ranges.
    own = quantize(model, int8_part, tmp_path / "part.onnx", num_samples=len(int8_part),
                   batch_size=BATCH, threads=1)  # fmt: skip
    with torch.no_grad():
        predicted = torch.cat([own(b).argmax(-1) for b in judged.split(BATCH)])
    expected = (predicted == eager_top1(model, judged)).double().mean().item()
    assert fast.candidates["onnxruntime/int8"].agreement == expected
    assert fast.candidates["onnxruntime/int8"].samples == len(judged) == 32


def test_one_calibration_image_leaves_int8_out(model: nn.Module, images: torch.Tensor):
    fast = compile_for_inference(
        model, backend="onnxruntime", precision="auto", calibration=images[:1],
        input_size=SIZE, threads=1,
    )  # fmt: skip
    report = fast.candidates["onnxruntime/int8"]
    assert not report.kept and report.median_ms is None
    assert "int8 needs at least 2 calibration images" in report.reason
    assert fast.precision == "fp32" and fast.candidates["onnxruntime/fp32"].samples == 1


class NearTie(nn.Module):
    """Logits of ~100 that differ by ~0.05: fp32 (spacing 8e-6 there) keeps their order, bf16
    (spacing 0.5) and int8 (a scale of ~0.4 over [0, 100]) cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)
        torch.manual_seed(0)
        with torch.no_grad():
            self.fc.weight.mul_(0.1)
            self.fc.bias.fill_(100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_lower_precisions_that_flip_a_prediction_are_dropped(images: torch.Tensor):
    net = NearTie().eval()
    calibration = images[:32]
    truth = eager_top1(net, calibration)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = net(calibration).float().argmax(-1)
    assert (in_bf16 != truth).any()  # the premise: bf16 flips predictions of this model
    fast = compile_for_inference(
        net, precision="auto", calibration=calibration, min_agreement=1.0,
        input_size=SIZE, batch_size=BATCH, threads=1, candidates=("eager", "openvino"),
    )  # fmt: skip
    # Whatever won agrees on every image (fp32 qualifies regardless).
    assert fast.precision == "fp32" or fast.agreement == 1.0
    lower = {n: r for n, r in fast.candidates.items() if r.precision in ("bf16", "int8")}
    for name, report in lower.items():
        if report.median_ms is None:  # not built (a runtime missing)
            assert not report.kept and name in fast.skipped
        elif report.agreement < 1.0:  # built, measured, dropped for its agreement
            assert not report.kept and name in fast.skipped
            assert report.reason == f"top-1 agreement {report.agreement:.4f} < 1"
            assert fast.skipped[name] == report.reason
        else:  # e.g. a runtime that keeps the last layer in fp32: every prediction kept
            assert report.kept
    if not bf16_native():
        return  # no bf16 candidate is built on such a CPU
    # Eager bf16 flips predictions (the premise above) while its error passes the old bound.
    eager_bf16 = fast.candidates["eager/bf16"]
    assert not eager_bf16.kept and eager_bf16.agreement is not None
    assert eager_bf16.agreement < 1.0
    assert eager_bf16.max_rel_error is not None and eager_bf16.max_rel_error < BF16_RTOL


def _race(
    monkeypatch: pytest.MonkeyPatch, stand_ins: tuple[str, ...], min_agreement: float
) -> tuple[InferenceModel, list[int]]:
    """``precision="auto"`` on eager fp32 and stand-in int8 candidates, with the race's timings
    set here: "flipped/int8" (predicts every image's least likely class) at 0.1 ms,
    "exact/int8" (eager's own outputs) at 0.5 ms, eager fp32 at 1 ms; and the sizes of the
    batches the stand-ins were judged on."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    ).eval()
    outputs = {"flipped": lambda x: -net(x), "exact": net}
    latency_ms: dict[Callable, float] = {}
    batches: list[int] = []

    def stand_in_int8(model, calibration, backends, batch_size, threads, folder, built, skipped):  # type: ignore[no-untyped-def]
        for name in stand_ins:

            def run(x: torch.Tensor, output: Callable = outputs[name]) -> torch.Tensor:
                batches.append(len(x))
                with torch.no_grad():
                    return output(x)

            shape = (batch_size, 1, 8, 8)
            built[f"{name}/int8"] = InferenceModel(name, shape, threads, run, precision="int8")
            latency_ms[run] = {"flipped": 0.1, "exact": 0.5}[name]

    def fake_measure(fn: functools.partial, **_: object) -> Timing:
        ms = latency_ms.get(fn.func, 1.0)  # fn is partial(candidate.run, example)
        return Timing.from_samples([ms / 1e3] * 3, threads=1, device="cpu")

    monkeypatch.setattr(precision_module, "_build_int8", stand_in_int8)
    monkeypatch.setattr(precision_module, "bf16_native", lambda: False)
    monkeypatch.setattr(choose_module, "measure", fake_measure)
    # No time passes in the race: what other processes did meanwhile is no warning here.
    quiet = SimpleNamespace(share=lambda: 0.0, note=lambda share=None: None)
    monkeypatch.setattr(choose_module, "OtherLoad", lambda: quiet)
    calibration = torch.randn(14, 1, 8, 8)  # judged on 7 of them: batches of 4, 1 padded
    fast = compile_for_inference(
        net, backend="eager", precision="auto", calibration=calibration,
        min_agreement=min_agreement, input_size=(1, 8, 8), batch_size=4, threads=1,
    )  # fmt: skip
    return fast, batches


def test_a_candidate_that_failed_its_agreement_never_wins_however_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, batches = _race(monkeypatch, ("flipped",), min_agreement=0.5)
    assert fast.timings == {"eager/fp32": 1.0, "flipped/int8": 0.1}
    flipped = fast.candidates["flipped/int8"]
    assert (flipped.kept, flipped.agreement, flipped.median_ms) == (False, 0.0, 0.1)
    assert fast.skipped["flipped/int8"] == flipped.reason == "top-1 agreement 0.0000 < 0.5"
    assert (fast.backend, fast.precision, fast.agreement) == ("eager", "fp32", 1.0)
    assert fast.why.endswith("; faster but dropped: flipped/int8 0.1 ms, agreement 0.0000.")
    # Judged on the 7 held-out images in batches of exactly the compiled 4.
    assert flipped.samples == 7 and batches == [4, 4]


def test_the_fastest_candidate_that_reaches_min_agreement_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "exact" reaches min_agreement=1.0 exactly: it qualifies, and beats fp32.
    fast, _ = _race(monkeypatch, ("flipped", "exact"), min_agreement=1.0)
    assert fast.timings == {"eager/fp32": 1.0, "flipped/int8": 0.1, "exact/int8": 0.5}
    assert (fast.backend, fast.precision, fast.agreement) == ("exact", "int8", 1.0)
    assert [n for n, r in fast.candidates.items() if r.kept] == ["eager/fp32", "exact/int8"]
    assert fast.why == (
        "exact/int8: 0.5 ms median, fastest of 2 of 3 candidates that qualified (fp32, or top-1 "
        "agreement with eager fp32 >= 1 on 7 held-out calibration images); its agreement "
        "1.0000; faster but dropped: flipped/int8 0.1 ms, agreement 0.0000."
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "auto"}, r"argument `calibration`: expected a float tensor"),
        (
            {"precision": "auto", "calibration": torch.zeros(4, 1, 28, 28, dtype=torch.uint8)},
            r"argument `calibration`: expected a float tensor \(N, 1, 28, 28\) of normalised",
        ),
        (
            {"precision": "auto", "calibration": torch.zeros(4, 3, 28, 28)},
            r"argument `calibration`: .*received 'torch.float32 tensor of shape \[4, 3, 28, 28\]",
        ),
        (
            {"precision": "auto", "calibration": torch.zeros(0, 1, 28, 28)},
            r"argument `calibration`",
        ),
        (
            {"precision": "auto", "calibration": torch.full((2, 1, 28, 28), float("nan"))},
            r"argument `calibration`: expected finite values",
        ),
        ({"precision": "fp32", "calibration": torch.zeros(2, *SIZE)}, r"`calibration`: .*'auto'"),
        (
            {"precision": "auto", "calibration": torch.zeros(2, *SIZE), "min_agreement": 0.0},
            r"argument `min_agreement`: expected a value in \(0, 1\], received 0.0",
        ),
        (
            {"precision": "auto", "calibration": torch.zeros(2, *SIZE), "min_agreement": 1.5},
            r"argument `min_agreement`",
        ),
    ],
)
def test_invalid_arguments_are_refused_before_any_work(kwargs, match):
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the model must not run before the arguments are checked")

    with pytest.raises(ValueError, match=match):
        compile_for_inference(Boom(), input_size=SIZE, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"calibration": torch.zeros(2, *SIZE), "precision": None},
            r"argument `calibration`: .*only on the CPU.*precision=None already measures",
        ),
        ({"calibration": None, "precision": "auto"}, r"argument `precision`: .*only on the CPU"),
    ],
)
def test_auto_precision_is_refused_on_cuda(kwargs, match):
    # The check compile_for_inference runs first for device="cuda" (no GPU needed to test it).
    with pytest.raises(ValueError, match=match):
        check_calibration(**kwargs, min_agreement=0.995, size=SIZE, cuda=True)


def test_cli_export_reports_the_choice(
    tmp_path, model: nn.Module, capsys: pytest.CaptureFixture[str]
):
    weights = tmp_path / "w.safetensors"
    save_model(model, weights)
    out = tmp_path / "m.onnx"
    argv = ["export", "mobilenet_v1_025", "--format", "onnx", "--weights", str(weights),
            "--input-size", "28", "--output", str(out), "--precision", "auto",
            "--calib-data", "fashion-mnist", "--calib-samples", "24", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "precision auto: batch 1, CPU, 1 thread(s)" in printed
    assert "openvino/fp32" in printed and "onnxruntime/int8" in printed
    # The sentence wraps at the terminal's width: read it with the line breaks undone.
    flat = " ".join(printed.split())
    assert flat.count("chosen: ") == 1
    chosen = [flat[flat.index("chosen: ") :].partition(" int8 file:")[0]]
    assert "on 12 held-out calibration images of fashion-mnist" in chosen[0]
    assert "(95% interval " in chosen[0]
    assert out.is_file()
    assert out.with_suffix(".int8.onnx").is_file() == ("/int8," in chosen[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "auto"], "`--calib-data`: expected a data spec with --precision auto"),
        (["--calib-data", "fashion-mnist"], "`--calib-data`: expected nothing unless"),
        (
            ["--precision", "auto", "--calib-data", "fashion-mnist", "--min-agreement", "2"],
            "`--min-agreement`: expected a value in (0, 1], received 2.0",
        ),
        (["--threads", "2"], "`--threads`: expected nothing unless --precision auto, received 2"),
        (
            ["--precision", "auto", "--calib-data", "fashion-mnist", "--threads", "0"],
            "`--threads`: expected a positive integer, received 0",
        ),
    ],
)
def test_cli_flag_errors_are_one_line(tmp_path, capsys, extra, message):
    argv = ["export", "mobilenet_v1_025", "--format", "onnx", "--output",
            str(tmp_path / "m.onnx"), *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_evaluate_needs_a_backend_for_auto(tmp_path, capsys):
    argv = ["evaluate", "mobilenet_v1_025", "--weights", str(tmp_path / "w.safetensors"),
            "--data", "fashion-mnist", "--precision", "auto",
            "--calib-data", "fashion-mnist"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "`--precision`: expected 'auto' only with --backend" in err


def test_cli_notes_a_candidate_too_close_to_the_bar_to_tell():
    from types import SimpleNamespace

    from sepconv.cli._calibration import chosen_line
    from sepconv.deploy import CandidateReport

    # On 1000 images an agreement of 0.993 has the 95% interval 0.9856-0.9966, which holds
    # 0.995; 0.980 (0.9693-0.9870) does not; fp32 is never in question.
    fast = SimpleNamespace(
        backend="onnxruntime", precision="fp32", agreement=1.0,
        candidates={
            "onnxruntime/fp32": CandidateReport(
                "onnxruntime", "fp32", True, agreement=1.0, samples=1000),
            "openvino/int8": CandidateReport(
                "openvino", "int8", False, agreement=0.993, samples=1000),
            "onnxruntime/int8": CandidateReport(
                "onnxruntime", "int8", False, agreement=0.980, samples=1000),
        },
    )  # fmt: skip
    chosen, note = chosen_line(fast, "fashion-mnist", 0.995).splitlines()  # type: ignore[arg-type]
    assert chosen.startswith(
        "chosen: onnxruntime/fp32, top-1 agreement 1.0000 (95% interval 0.9962-1.0000)"
    )
    assert "interval of openvino/int8 on 1000 images" in note
    assert "onnxruntime/int8" not in note and "onnxruntime/fp32" not in note
    for report in fast.candidates.values():
        object.__setattr__(report, "samples", 100_000)
    many = chosen_line(fast, "fashion-mnist", 0.995)  # type: ignore[arg-type]
    assert len(many.splitlines()) == 1


def test_cli_evaluate_refuses_bad_calibration_data_before_evaluating(
    tmp_path, model: nn.Module, capsys: pytest.CaptureFixture[str]
):
    weights = tmp_path / "w.safetensors"
    save_model(model, weights)
    missing = tmp_path / "no-such-folder"
    argv = ["evaluate", "mobilenet_v1_025", "--weights", str(weights), "--data", "fashion-mnist",
            "--backend", "onnxruntime", "--precision", "auto", "--calib-data",
            f"imagefolder:{missing}", "--json", str(tmp_path / "e.json")]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err
    assert "accuracy" not in captured.out  # the evaluation never ran
    assert not (tmp_path / "e.json").exists()
