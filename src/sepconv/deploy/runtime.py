"""Inference on the fastest backend this machine has: eager PyTorch, torch.compile, ONNX Runtime
or OpenVINO, each configured for low-latency CPU inference.

:func:`compile_for_inference` turns a model into an :class:`InferenceModel`, a callable
specialised to one input shape, thread count and precision. ``backend="auto"`` builds every
installed candidate, times each on the same input with :func:`sepconv.bench.timing.measure`, and
keeps the fastest; the medians stay in :attr:`InferenceModel.timings`. Every backend is checked
against the eager model before it is returned. fp32 is the default; ``precision="bf16"`` lets the
backends that can compute in bfloat16 do so (eager and torch.compile under CPU autocast, OpenVINO
with its bf16 inference precision), which pays off on CPUs with native bf16 instructions
(AVX512-BF16, AMX). :func:`load_onnx` runs an ONNX file (e.g. the int8 model of
:func:`sepconv.deploy.quantize`) on ONNX Runtime or OpenVINO with the same settings.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from sepconv.bench.timing import RUNTIME_SETTLE_S, Timing, bf16_native, measure, pinned_threads
from sepconv.deploy._extras import require
from sepconv.deploy.fuse import fuse
from sepconv.deploy.onnx import _check_input_size, check_images, export_onnx, relative_error
from sepconv.utils.validation import invalid, positive_int

__all__ = [
    "AUTO_BACKENDS",
    "BACKENDS",
    "Backend",
    "InferenceModel",
    "Precision",
    "compile_for_inference",
    "load_onnx",
]

Backend = Literal["eager", "compile", "onnxruntime", "openvino"]
OnnxBackend = Literal["onnxruntime", "openvino"]
Precision = Literal["fp32", "bf16"]
BACKENDS: tuple[str, ...] = get_args(Backend)
# What "auto" measures by default. torch.compile is left out: compiling costs a minute or more
# per model on a small CPU, and on the models measured here it does not beat the ONNX runtimes
# (results/inference.md). Pass `candidates=BACKENDS` to include it.
AUTO_BACKENDS: tuple[str, ...] = ("eager", "onnxruntime", "openvino")
# Largest accepted max|backend - eager| / max|eager| of an fp32 backend. Folding BatchNorm and
# reordering sums move float32 results by ~1e-6 relative; anything near 1e-3 is a wrong graph.
FP32_RTOL = 1e-3
# The same for a backend computing in bfloat16 (8 significand bits, rounding error 2^-9 per
# value). Trained Fashion-MNIST MobileNets land at 1.6e-2..3.0e-2 on real images, agreeing with
# fp32 on 99.7-99.9% of the test set (results/bf16_fashion_mnist); random-weight ImageNet
# models move by 0.11-0.19 and fail it (results/inference_amd_epyc.md).
BF16_RTOL = 5e-2

Runner = Callable[[torch.Tensor], torch.Tensor]


class BackendMismatchError(RuntimeError):
    """A compiled backend's output disagrees with eager PyTorch beyond the tolerance."""


@dataclass(frozen=True, eq=False)
class InferenceModel:
    """A model compiled for one input shape on one backend; call it like the model.

    Attributes:
        backend: The backend that runs it (one of :data:`BACKENDS`).
        input_shape: The ``(N, C, H, W)`` it was compiled for; other shapes are refused.
        threads: Intra-op threads the backend uses.
        precision: What the backend computes in: ``"fp32"``, ``"bf16"`` (only when
            ``precision="bf16"`` was asked for and the backend uses it), or ``"int8"`` for a
            quantized ONNX file.
        timings: Backend -> median latency in milliseconds, for every candidate ``auto``
            measured (empty when the backend was named).
        skipped: Backend -> why ``auto`` left it out: the runtime is not installed, or its
            output disagreed with eager PyTorch.
        max_rel_error: ``max|out - eager| / max|eager|`` measured at build time on the example
            input (``None`` when there was no PyTorch model to compare with).
        path: The ONNX file the runtime loaded, when it is kept on disk (:func:`load_onnx`).

    Example:
        >>> import sepconv
        >>> net = compile_for_inference(sepconv.mobilenet_v2(num_classes=10),
        ...                             backend="onnxruntime", input_size=(3, 64, 64))
        >>> net(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    backend: str
    input_shape: tuple[int, int, int, int]
    threads: int
    run: Runner = field(repr=False)
    precision: Literal["fp32", "bf16", "int8"] = "fp32"
    timings: Mapping[str, float] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    max_rel_error: float | None = None
    path: Path | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run one batch: ``x`` of shape :attr:`input_shape` (float32, CPU) -> the output."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"InferenceModel ({self.backend}) expected a torch.Tensor, "
                f"received {type(x).__name__}."
            )
        if tuple(x.shape) != self.input_shape:
            raise ValueError(
                f"InferenceModel ({self.backend}) was compiled for input shape "
                f"{list(self.input_shape)}, received {list(x.shape)}; compile another with "
                "the `batch_size` and `input_size` you need."
            )
        return self.run(x.detach().to("cpu", torch.float32))


def compile_for_inference(
    model: nn.Module,
    *,
    backend: Literal["auto", "eager", "compile", "onnxruntime", "openvino"] = "auto",
    input_size: tuple[int, int, int] = (3, 224, 224),
    batch_size: int = 1,
    threads: int | None = None,
    candidates: Sequence[str] | None = None,
    precision: Precision = "fp32",
    example: torch.Tensor | None = None,
) -> InferenceModel:
    """Compile ``model`` for CPU inference on ``backend``, or on the fastest one (``"auto"``).

    Every backend starts from the BatchNorm-folded copy :func:`sepconv.fuse` returns
    (``model`` itself is not modified) and is specialised to inputs of shape
    ``(batch_size, *input_size)``:

    - ``"eager"``: PyTorch under ``inference_mode``, in channels-last layout when that measured
      faster than NCHW on this input (oneDNN's depthwise and 1x1 kernels prefer it), else NCHW;
      with ``precision="bf16"`` under ``torch.autocast("cpu", torch.bfloat16)``.
    - ``"compile"``: ``torch.compile`` (inductor, static shapes, ``freezing``: weights become
      constants, convs get pre-packed oneDNN weights). Compiled at build time, which takes a
      minute or more; needs a C++ compiler. bf16 as for eager.
    - ``"onnxruntime"``: the file :func:`sepconv.export_onnx` writes (static shape), in a CPU
      session with all graph optimisations (constant folding, conv+activation fusion, NCHWc
      blocked layout), sequential execution and ``threads`` intra-op threads. Always fp32 (its
      CPU provider has no bf16 convolutions).
    - ``"openvino"``: the same ONNX file through ``openvino.convert_model``, compiled for the CPU
      with ``PERFORMANCE_HINT=LATENCY``, one stream, ``threads`` inference threads and the
      inference precision pinned to f32 (OpenVINO's own default is bf16 on a bf16-capable CPU,
      which would silently lower precision), or to bf16 with ``precision="bf16"`` where the CPU
      has native bf16 (elsewhere OpenVINO stays f32).
    - ``"auto"``: build each backend of ``candidates`` that is installed, time each on the same
      input (:func:`sepconv.bench.timing.measure`: two interleaved rounds of 5 blocks, so that
      load from elsewhere hits all alike) and keep the lowest median. The medians are in
      :attr:`InferenceModel.timings`; the backends that could not be built or failed the check
      below, and why, in :attr:`InferenceModel.skipped`.

    Each built backend is run once on ``example`` (default: a seeded random input) and
    compared with the eager fp32 model in eval mode; a relative error above :data:`FP32_RTOL`
    (:data:`BF16_RTOL` for a bf16 backend) raises instead of returning a wrong model (with
    ``"auto"``: leaves that backend out, and raises only when none is left).

    Args:
        model: A module mapping one ``(N, C, H, W)`` float tensor to one tensor.
        backend: ``"auto"`` or one of :data:`BACKENDS`.
        input_size: ``(C, H, W)`` of one input image.
        batch_size: ``N``; the compiled model takes exactly this batch.
        threads: Intra-op threads for every backend (default: ``torch.get_num_threads()``).
        candidates: Backends ``"auto"`` measures (default :data:`AUTO_BACKENDS`, which leaves
            out the slow-to-build ``"compile"``); only with ``backend="auto"``.
        precision: ``"fp32"`` or ``"bf16"``: the precision the eager, compile and OpenVINO
            backends compute in (ONNX Runtime stays fp32). :attr:`InferenceModel.precision`
            says what the returned backend uses.
        example: A real input of shape ``(batch_size, *input_size)``, on which every backend
            is checked (the ONNX export too) and ``"auto"`` times them. Pass one for a trained
            model: noise can take its activations where float32 itself loses the digits the
            check compares.

    Returns:
        An :class:`InferenceModel`; ``model(x)`` returns a float32 CPU tensor.

    Raises:
        ValueError: an unknown backend name (the valid ones are listed) or another invalid
            argument, or a model whose output is not a single tensor.
        ImportError: a named backend's runtime is not installed; the message names the extra
            (``pip install 'sepconv[onnx]'`` / ``'sepconv[openvino]'``).
        BackendMismatchError: (a ``RuntimeError``) the named backend, or with ``"auto"`` every
            candidate, disagrees with eager PyTorch (see :data:`FP32_RTOL`, :data:`BF16_RTOL`).

    Example:
        >>> import sepconv
        >>> fast = compile_for_inference(sepconv.mobilenet_v2(), threads=2)  # doctest: +SKIP
        >>> fast.backend, fast.timings  # doctest: +SKIP
        ('openvino', {'eager': 30.1, 'onnxruntime': 9.8, 'openvino': 8.9})
    """
    if not isinstance(model, nn.Module):
        raise invalid("model", "an nn.Module", type(model).__name__)
    if backend != "auto" and backend not in BACKENDS:
        raise invalid("backend", f"one of {_choices(('auto', *BACKENDS))}", backend)
    size = _check_input_size(input_size)
    positive_int("batch_size", batch_size)
    used_threads = _check_threads(threads)
    if candidates is not None and backend != "auto":
        raise invalid("candidates", "None unless backend='auto'", candidates)
    if precision not in get_args(Precision):
        raise invalid("precision", f"one of {_choices(get_args(Precision))}", precision)
    names = _check_candidates(AUTO_BACKENDS if candidates is None else candidates)
    shape = (batch_size, *size)
    if example is None:
        example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    else:
        example = check_images(
            "example",
            example,
            size,
            batch=batch_size,
            hint=" (pass `input_size` and `batch_size` to match it)",
        )
    reference = _reference_output(model, example)

    with tempfile.TemporaryDirectory(prefix="sepconv-deploy-") as tmp:
        onnx_file = Path(tmp) / "model.onnx"

        def build(name: str) -> InferenceModel:
            _require_runtime(name)  # before the export, which takes a while
            if name in ("onnxruntime", "openvino") and not onnx_file.exists():
                export_onnx(
                    model,
                    onnx_file,
                    input_size=size,
                    dynamic_batch=False,
                    check_batches=(batch_size,),
                    check_inputs=example,
                )
            runner, used = _build_runner(name, model, example, onnx_file, used_threads, precision)
            return _checked(name, runner, used, shape, used_threads, example, reference)

        if backend != "auto":
            return build(backend)

        built: dict[str, InferenceModel] = {}
        skipped: dict[str, str] = {}
        mismatched = False
        for name in names:
            try:
                built[name] = build(name)
            except ImportError as err:
                skipped[name] = str(err)
            except BackendMismatchError as err:
                skipped[name] = str(err)
                mismatched = True
    if not built:
        error = BackendMismatchError if mismatched else ImportError
        raise error(
            "Cannot compile for inference: no backend of `candidates` could be built: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(2):
        for name, candidate in built.items():
            samples[name].extend(_time(candidate, example, used_threads).samples_s)
    timings = {name: float(np.median(s)) * 1e3 for name, s in samples.items()}
    best = min(timings, key=timings.__getitem__)
    return dataclasses.replace(built[best], timings=timings, skipped=skipped)


def load_onnx(
    path: str | Path,
    *,
    backend: OnnxBackend = "onnxruntime",
    batch_size: int = 1,
    threads: int | None = None,
) -> InferenceModel:
    """Run an ONNX file on ONNX Runtime or OpenVINO with the settings of
    :func:`compile_for_inference` (fp32 or int8 QDQ files alike).

    The file must have one input of shape ``(N, C, H, W)`` with static ``C, H, W`` (``N`` may be
    dynamic; it is fixed to ``batch_size``) and one output. A file containing QuantizeLinear
    nodes is reported as ``precision="int8"``.

    Args:
        path: The ``.onnx`` file.
        backend: ``"onnxruntime"`` or ``"openvino"``.
        batch_size: ``N`` of the inputs the returned model takes.
        threads: Intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an invalid argument, or a file whose input or outputs do not fit.
        ImportError: the runtime (or ``onnx``) is not installed; the message names the extra.

    Example:
        >>> int8 = load_onnx("mobilenet_v2.int8.onnx", backend="openvino")  # doctest: +SKIP
        >>> int8.precision  # doctest: +SKIP
        'int8'
    """
    if backend not in get_args(OnnxBackend):
        raise invalid("backend", f"one of {_choices(get_args(OnnxBackend))}", backend)
    positive_int("batch_size", batch_size)
    used_threads = _check_threads(threads)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {str(file)!r} does not exist.")
    onnx = require("onnx", "reading an ONNX file")
    try:
        proto = onnx.load(str(file), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others for a damaged file
        raise ValueError(
            f"File {str(file)!r} is not a readable ONNX model ({err}); re-export it."
        ) from err
    graph_inputs = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in graph_inputs]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or min(dims[1:]) < 1 or len(proto.graph.output) != 1:
        raise ValueError(
            f"ONNX file {str(file)!r} does not fit: expected one input of shape (N, C, H, W) with "
            f"fixed C, H, W and one output, received {len(inputs)} input(s) of dims {dims} and "
            f"{len(proto.graph.output)} output(s)."
        )
    shape = (batch_size, dims[1], dims[2], dims[3])
    int8 = any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
    runner = (
        _onnxruntime(file, used_threads)
        if backend == "onnxruntime"
        else _openvino(file, shape, used_threads, "fp32")[0]
    )
    return InferenceModel(
        backend=backend,
        input_shape=shape,
        threads=used_threads,
        run=runner,
        precision="int8" if int8 else "fp32",
        path=file,
    )


# ---------------------------------------------------------------------------------------------
# The backends: each returns a function from a float32 CPU tensor of the compiled shape to the
# output tensor.


def _eager(model: nn.Module, example: torch.Tensor, threads: int, bf16: bool) -> Runner:
    fused = fuse(model).float().cpu()
    faster = _channels_last_faster(fused, example, threads, bf16)
    layout = torch.channels_last if faster else torch.contiguous_format
    fused = fused.to(memory_format=layout)

    def run(x: torch.Tensor) -> torch.Tensor:
        with pinned_threads(threads), torch.inference_mode(), _autocast(bf16):
            return fused(x.contiguous(memory_format=layout)).float()

    return run


def _autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _channels_last_faster(
    model: nn.Module, example: torch.Tensor, threads: int, bf16: bool
) -> bool:
    """Whether ``model`` runs ``example`` faster in channels-last than in NCHW, measured."""
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_nhwc = example.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(bf16):
        nchw_ms = measure(lambda: model(example), warmup=2, repeats=5, threads=threads).median_ms
        nhwc_ms = measure(lambda: nhwc(x_nhwc), warmup=2, repeats=5, threads=threads).median_ms
    return nhwc_ms < nchw_ms


def _compiled(model: nn.Module, example: torch.Tensor, threads: int, bf16: bool) -> Runner:
    # freezing turns parameters into constants so that inductor can fold them and pre-pack conv
    # weights for oneDNN; it is only valid for inference, which this copy is.
    fused = fuse(model).float().cpu()
    compiled = torch.compile(fused, dynamic=False, options={"freezing": True})

    def run(x: torch.Tensor) -> torch.Tensor:
        with pinned_threads(threads), torch.inference_mode(), _autocast(bf16):
            return compiled(x).float()

    run(example)  # compile now (the generated kernels bake in the thread count), not on call 1
    return run


def _require_runtime(backend: str) -> None:
    """Import the runtime ``backend`` needs, or raise the ImportError that names its extra."""
    if backend in ("onnxruntime", "openvino"):
        require(backend, f"The {backend} backend")


def _onnxruntime(path: Path, threads: int) -> Runner:
    ort = require("onnxruntime", "The onnxruntime backend")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One image at a time: parallelism comes from inside each op, not from running ops side by
    # side, so the inter-op pool would only add threads competing for the same cores.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return run


def _openvino(
    path: Path, shape: tuple[int, int, int, int], threads: int, precision: Precision
) -> tuple[Runner, Precision]:
    """The runner, and the precision OpenVINO compiled it for (bf16 only where asked for and the
    CPU has it)."""
    ov = require("openvino", "The openvino backend")
    asked = "bf16" if precision == "bf16" and bf16_native() else "f32"
    graph = ov.convert_model(str(path))
    graph.reshape(list(shape))  # static shape: the CPU plugin plans memory and kernels once
    compiled = ov.Core().compile_model(
        graph,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": asked,
        },
    )
    # What the plugin compiled for, read back rather than assumed.
    used: Precision = (
        "bf16"
        if compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        else "fp32"
    )
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.numpy()}, share_inputs=True)
        # The output buffer belongs to the request and is overwritten by the next call.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run, used


def _build_runner(
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    onnx_file: Path,
    threads: int,
    precision: Precision,
) -> tuple[Runner, Precision]:
    """The runner of backend ``name`` and the precision it computes in."""
    bf16 = precision == "bf16"
    if name == "eager":
        return _eager(model, example, threads, bf16), precision
    if name == "compile":
        return _compiled(model, example, threads, bf16), precision
    if name == "onnxruntime":
        return _onnxruntime(onnx_file, threads), "fp32"
    shape = tuple(example.shape)
    return _openvino(onnx_file, shape, threads, precision)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------


def _reference_output(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """The eval-mode output of an unmodified copy of ``model``, which every backend must match."""
    reference = copy.deepcopy(model).float().cpu().eval()
    with torch.inference_mode():
        output = reference(example)
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"Invalid value for argument `model`: expected a model returning one tensor, its "
            f"forward returns {type(output).__name__}."
        )
    return output


def _checked(
    name: str,
    runner: Runner,
    precision: Precision,
    shape: tuple[int, ...],
    threads: int,
    example: torch.Tensor,
    reference: torch.Tensor,
) -> InferenceModel:
    output = runner(example)
    error = relative_error(output, reference) if output.shape == reference.shape else math.inf
    rtol = BF16_RTOL if precision == "bf16" else FP32_RTOL
    if not error <= rtol:
        raise BackendMismatchError(
            f"The {name} backend ({precision}) disagrees with eager PyTorch: max relative error "
            f"{error:.3g} > {rtol:g} (output shape {list(output.shape)}, eager "
            f"{list(reference.shape)}); use another backend."
        )
    return InferenceModel(
        backend=name,
        input_shape=(shape[0], shape[1], shape[2], shape[3]),
        threads=threads,
        run=runner,
        precision=precision,
        max_rel_error=error,
    )


def _time(model: InferenceModel, example: torch.Tensor, threads: int) -> Timing:
    # Candidates are timed one after another: let the previous runtime's threads go idle first.
    return measure(
        lambda: model.run(example), warmup=2, repeats=5, threads=threads, settle_s=RUNTIME_SETTLE_S
    )


def _choices(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return torch.get_num_threads()
    return positive_int("threads", threads)


def _check_candidates(candidates: Sequence[str]) -> tuple[str, ...]:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        raise invalid("candidates", f"a non-empty sequence of {_choices(BACKENDS)}", candidates)
    for name in candidates:
        if name not in BACKENDS:
            raise invalid("candidates", f"backends among {_choices(BACKENDS)}", name)
    return tuple(dict.fromkeys(candidates))
