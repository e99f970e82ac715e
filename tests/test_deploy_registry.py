"""The backend table (sepconv.deploy.registry): every place that varies by backend reads it.

A row added to the table is accepted by compile_for_inference, load_onnx, quantize's checks and
the command line's choices with nothing else changed; an unknown name is an error that names the
argument, lists the table's names and echoes what was given; no deployment command spells a
backend name itself.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from nets import mbconv_net, randomize_norms
from torch import nn

import sepconv.cli
from sepconv import export_onnx
from sepconv.cli import build_parser
from sepconv.deploy import backends, compile_for_inference, load_onnx, registry
from sepconv.deploy._extras import ONNXRUNTIME, Extra
from sepconv.deploy.compiled import Target
from sepconv.deploy.cuda import CUDA_BACKENDS, CUDA_PRECISIONS
from sepconv.deploy.registry import (
    BACKEND_TABLE,
    DEFAULT_ONNX_BACKEND,
    Backend,
    Int8Report,
    backend_names,
    find,
    int8_runtimes,
    rows,
)
from sepconv.deploy.runtime import AUTO_BACKENDS, BACKENDS, backend_choices, precision_choices
from sepconv.deploy.runtime_ops import is_int8_op, quantized_ops

SIZE = (3, 32, 32)
CLI = Path(sepconv.cli.__file__).parent
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(mbconv_net(3), seed=1).eval()


def subcommand_option(command: str, flag: str) -> argparse.Action:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[command]
    return next(a for a in sub._actions if flag in a.option_strings)


# ------------------------------------------------------------------ the table itself
def test_each_name_is_one_row_per_device_and_the_names_are_read_from_it() -> None:
    keys = [(row.name, row.device) for row in BACKEND_TABLE]
    assert len(keys) == len(set(keys))
    assert tuple(row.name for row in BACKEND_TABLE if row.device == "cpu") == BACKENDS
    assert tuple(row.name for row in BACKEND_TABLE if row.device == "cuda") == CUDA_BACKENDS
    assert tuple(row.name for row in rows("cpu") if row.auto) == AUTO_BACKENDS
    assert "compile" in BACKENDS and "compile" not in AUTO_BACKENDS
    assert all(row.precisions == CUDA_PRECISIONS for row in rows("cuda"))
    assert DEFAULT_ONNX_BACKEND in [row.name for row in int8_runtimes()]


def test_a_row_needs_exactly_one_way_to_be_built_and_a_name_once_per_device() -> None:
    with pytest.raises(ValueError, match="exactly one of `from_model` and `from_onnx`"):
        Backend(name="none", device="cpu", precisions=("fp32",))
    with pytest.raises(ValueError, match="exactly one of `from_model` and `from_onnx`"):
        Backend(
            name="both",
            device="cpu",
            precisions=("fp32",),
            from_model=backends.build_eager,
            from_onnx=backends.run_onnxruntime,
        )
    with pytest.raises(
        ValueError, match=r"`device`: expected one of 'cpu', 'cuda', received 'tpu'"
    ):
        Backend(name="x", device="tpu", precisions=("fp32",), from_model=backends.build_eager)  # type: ignore[arg-type]
    eager = rows("cpu")[0]
    with pytest.raises(ValueError, match="'eager' on cpu is in the table twice"):
        registry._check_table((*BACKEND_TABLE, eager))


def test_every_extra_a_row_names_is_an_extra_of_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    needed: list[Extra] = [row.extra for row in BACKEND_TABLE if row.extra is not None]
    assert needed, "the table names the runtimes' extras"
    for extra in needed:
        assert extra.name in extras, f"no extra {extra.name!r} in pyproject.toml"
        packages = [req.split(">")[0].split("=")[0].split("[")[0] for req in extras[extra.name]]
        assert extra.module in packages, f"sepconv[{extra.name}] does not install {extra.module}"


# ------------------------------------------------------------------ unknown names
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda net: compile_for_inference(net, backend="tensorrt", input_size=SIZE),
            r"`backend`: expected one of 'auto', 'eager', 'compile', 'onnxruntime', 'openvino', "
            r"received 'tensorrt'\.",
        ),
        (
            lambda net: compile_for_inference(net, backend="openvno", input_size=SIZE),
            r"received 'openvno' \(did you mean 'openvino'\?\)\.",
        ),
        (
            lambda net: compile_for_inference(net, backend="cudagraph", input_size=SIZE),
            r"`backend`: expected one of 'auto', .* received 'cudagraph' \(a backend of cuda, "
            r"not of cpu\)\.",
        ),
        (
            lambda net: compile_for_inference(net, candidates=("eager", "tvm"), input_size=SIZE),
            r"`candidates`: expected backends among 'eager', 'compile', 'onnxruntime', "
            r"'openvino', received 'tvm'\.",
        ),
        (
            lambda net: load_onnx("unused.onnx", backend="eager"),
            r"`backend`: expected one of 'onnxruntime', 'openvino', received 'eager'\.",
        ),
    ],
)
def test_an_unknown_backend_is_refused_naming_the_argument(net: nn.Module, call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(net)


def test_find_refuses_what_is_not_a_name() -> None:
    with pytest.raises(ValueError, match=r"`backend`: expected one of .* received None\."):
        find(None, rows("cpu"), argument="backend")


def test_the_cli_refuses_an_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["quantize", "m", "--calib-data", "x", "--backend", "eager"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--backend: invalid choice: 'eager'" in err and "'onnxruntime'" in err


# ------------------------------------------------------------------ the CLI reads the table
def test_every_cli_backend_and_precision_choice_comes_from_the_table() -> None:
    evaluate_backend = subcommand_option("evaluate", "--backend")
    assert tuple(evaluate_backend.choices) == ("auto", *backend_names("cpu"))
    evaluate_precision = subcommand_option("evaluate", "--precision")
    assert tuple(evaluate_precision.choices) == precision_choices("cpu") == ("fp32", "bf16", "auto")
    quantize_backend = subcommand_option("quantize", "--backend")
    assert list(quantize_backend.choices) == [row.name for row in int8_runtimes()]
    assert quantize_backend.default == DEFAULT_ONNX_BACKEND
    assert backend_choices("cuda") == ("auto", *CUDA_BACKENDS)


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a Python file, with its line (f-string parts included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def deployment_commands() -> list[Path]:
    """The CLI modules that reach sepconv.deploy: those that take backend names."""
    return [p for p in sorted(CLI.glob("*.py")) if "sepconv.deploy" in p.read_text()]


def spelled_backends(path: Path) -> list[str]:
    names = {row.name for row in BACKEND_TABLE}
    return [
        f"{path.name}:{line}: {text!r}" for line, text in string_constants(path) if text in names
    ]


def test_the_scan_finds_a_spelled_backend_name(tmp_path: Path) -> None:
    spelled = tmp_path / "spelled.py"
    spelled.write_text('CHOICES = ("auto", "openvino")\nhelp = f"{x} eager fp32"\n')
    assert spelled_backends(spelled) == ["spelled.py:1: 'openvino'"]


def test_no_deployment_command_spells_a_backend_name() -> None:
    commands = {p.name for p in deployment_commands()}
    assert {"evaluate.py", "quantize.py", "export.py"} <= commands
    spelled = [hit for path in deployment_commands() for hit in spelled_backends(path)]
    assert not spelled, "backend names spelled in the CLI (read the table instead):\n" + "\n".join(
        spelled
    )


# ------------------------------------------------------------------ a new row is enough
def plain_row(*, auto: bool = True) -> Backend:
    """A backend that is eager PyTorch under another name: the table is all that knows it."""
    return Backend(
        name="plain",
        device="cpu",
        precisions=("fp32",),
        from_model=backends.build_eager,
        auto=auto,
    )


def ort_twin_row() -> Backend:
    """A second ONNX Runtime backend that runs int8 files, under another name."""
    return Backend(
        name="ort_twin",
        device="cpu",
        precisions=("fp32",),
        from_onnx=backends.run_onnxruntime,
        extra=ONNXRUNTIME,
        int8=Int8Report(key="ops_after_fusion", count=quantized_ops, is_int8=is_int8_op),
    )


def test_a_new_row_is_a_backend_everywhere(net: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    eager = find("eager", rows("cpu"), argument="backend")
    monkeypatch.setattr(registry, "BACKEND_TABLE", (plain_row(), eager, *rows("cuda")))
    named = compile_for_inference(net, backend="plain", input_size=SIZE, threads=1)
    assert (named.backend, named.precision) == ("plain", "fp32")
    assert named.max_rel_error is not None and named.max_rel_error <= 1e-4
    measured = compile_for_inference(net, input_size=SIZE, threads=1)  # "auto", default candidates
    assert set(measured.timings) == {"plain", "eager"}
    assert tuple(subcommand_option("evaluate", "--backend").choices) == ("auto", "plain", "eager")
    monkeypatch.setattr(registry, "BACKEND_TABLE", (plain_row(),))
    assert precision_choices("cpu") == ("fp32", "auto")  # no CPU row computes in bf16 now
    monkeypatch.setattr(registry, "BACKEND_TABLE", (plain_row(), eager))
    with pytest.raises(ValueError, match=r"`backend`: expected one of 'auto', 'plain', 'eager', "
                       r"received 'onnxruntime'"):  # fmt: skip
        compile_for_inference(net, backend="onnxruntime", input_size=SIZE)


def test_a_new_onnx_row_runs_files_and_is_a_quantize_choice(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(registry, "BACKEND_TABLE", (*BACKEND_TABLE, ort_twin_row()))
    path = export_onnx(net, tmp_path / "net.onnx", input_size=SIZE, check_batches=(1,)).path
    loaded = load_onnx(path, backend="ort_twin", batch_size=2, threads=1)
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        want = net(x)
    assert loaded.backend == "ort_twin" and torch.allclose(loaded(x), want, atol=1e-4)
    assert "ort_twin" in subcommand_option("quantize", "--backend").choices
    compiled = compile_for_inference(net, backend="ort_twin", input_size=SIZE, threads=1)
    assert compiled.backend == "ort_twin" and compiled.precision == "fp32"


def test_a_missing_runtime_names_the_extra_its_row_gives(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = Extra(name="tensorrt", module="sepconv_no_such_module")
    row = Backend(
        name="trt",
        device="cpu",
        precisions=("fp32",),
        from_onnx=backends.run_onnxruntime,
        extra=missing,
    )
    monkeypatch.setattr(registry, "BACKEND_TABLE", (*BACKEND_TABLE, row))
    monkeypatch.setitem(sys.modules, "sepconv_no_such_module", None)
    with pytest.raises(ImportError, match=r"The trt backend needs the `sepconv_no_such_module` "
                       r"package.*pip install 'sepconv\[tensorrt\]'"):  # fmt: skip
        compile_for_inference(net, backend="trt", input_size=SIZE, threads=1)


def test_a_reduced_precision_that_fails_its_check_falls_back_to_that_backends_fp32(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(model: nn.Module, example: torch.Tensor, target: Target) -> tuple:
        exact = dataclasses.replace(target, precision="fp32")
        runner, _ = backends.build_eager(model, example, exact)
        if target.precision == "bf16":  # a bf16 build whose output is wrong
            return (lambda x: 0 * runner(x)), "bf16"
        return runner, "fp32"

    flaky = Backend(name="flaky", device="cpu", precisions=("fp32", "bf16"), from_model=build)
    monkeypatch.setattr(registry, "BACKEND_TABLE", (flaky, plain_row()))
    fast = compile_for_inference(net, input_size=SIZE, threads=1, precision="bf16")
    # Both fp32 builds raced: the failed bf16 did not take its backend out of the race.
    assert set(fast.timings) == {"flaky", "plain"} and fast.precision == "fp32"
    assert "measured in fp32 instead" in fast.skipped["flaky/bf16"]
    assert "flaky/bf16" in fast.why
