"""Inference on the fastest backend this machine has: on a CPU eager PyTorch, torch.compile,
ONNX Runtime or OpenVINO, each configured for low-latency CPU inference; on a GPU eager
channels-last PyTorch in fp32/bf16/fp16, torch.compile (max-autotune) or a CUDA graph.

:func:`compile_for_inference` turns a model into an :class:`InferenceModel`, a callable
specialised to one input shape, thread count and precision. ``backend="auto"`` builds every
installed candidate, times each on the same input with :func:`sepconv.bench.timing.measure`, and
keeps the fastest; the medians stay in :attr:`InferenceModel.timings`. Every backend is checked
against the eager model before it is returned. fp32 is the default; ``precision="bf16"`` lets the
backends that can compute in bfloat16 do so (eager and torch.compile under CPU autocast, OpenVINO
with its bf16 inference precision), which pays off on CPUs with native bf16 instructions
(AVX512-BF16, AMX). :func:`load_onnx` runs an ONNX file (e.g. the int8 model of
:func:`sepconv.deploy.quantize`) on ONNX Runtime or OpenVINO with the same settings. Which
backends a device has, and what each runs from and computes in, is the backend table
(:data:`sepconv.deploy.registry.BACKEND_TABLE`); their code is in :mod:`sepconv.deploy.backends`
(CPU) and :mod:`sepconv.deploy.cuda_backends`, the CUDA choice in :mod:`sepconv.deploy.cuda`.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import torch
from torch import nn

from sepconv.bench.load import child_pids
from sepconv.deploy.choose import keep_fastest
from sepconv.deploy.compiled import (
    BackendMismatchError,
    InferenceModel,
    Target,
    checked,
    fastest_reason,
)
from sepconv.deploy.cuda import compile_for_cuda
from sepconv.deploy.inputs import check_images, check_input_size, check_threads, first_images
from sepconv.deploy.load import load_onnx
from sepconv.deploy.precision import DEFAULT_MIN_AGREEMENT, check_calibration, search_precision
from sepconv.deploy.registry import Backend, backend_names, device_precisions, find, rows
from sepconv.utils.devices import check_device
from sepconv.utils.validation import invalid, positive_int

__all__ = [
    "AUTO_BACKENDS",
    "BACKENDS",
    "InferenceModel",
    "Precision",
    "backend_choices",
    "compile_for_inference",
    "load_onnx",
    "precision_choices",
]

Precision = Literal["fp32", "bf16"]
#: The CPU backends of the backend table (:data:`sepconv.deploy.registry.BACKEND_TABLE`).
BACKENDS: Final[tuple[str, ...]] = backend_names("cpu")
#: What ``"auto"`` measures on the CPU by default: the rows marked ``auto`` (all but
#: ``"compile"``, the slowest to build). Pass ``candidates=BACKENDS`` to include it.
AUTO_BACKENDS: Final[tuple[str, ...]] = tuple(row.name for row in rows("cpu") if row.auto)


def backend_choices(device: str = "cpu") -> tuple[str, ...]:
    """What ``backend`` takes on ``device``: ``"auto"`` and the table's backends of it.

    Example:
        >>> backend_choices("cuda")
        ('auto', 'eager', 'compile', 'cudagraph')
    """
    return ("auto", *backend_names(device))


def precision_choices(device: str = "cpu") -> tuple[str, ...]:
    """What ``precision`` takes on ``device``: every precision a backend of it computes in, and
    on the CPU ``"auto"`` (measured on calibration images, :mod:`sepconv.deploy.precision`).

    Example:
        >>> precision_choices("cpu")
        ('fp32', 'bf16', 'auto')
    """
    cpu_only = ("auto",) if device == "cpu" else ()
    return (*device_precisions(device), *cpu_only)


def compile_for_inference(
    model: nn.Module,
    *,
    backend: str = "auto",
    input_size: tuple[int, int, int] | tuple[int, int, int, int] = (3, 224, 224),
    batch_size: int = 1,
    threads: int | None = None,
    candidates: Sequence[str] | None = None,
    precision: Literal["fp32", "bf16", "fp16", "auto"] | None = None,
    calibration: torch.Tensor | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    example: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    compile_mode: str = "max-autotune",
) -> InferenceModel:
    """Compile ``model`` for inference on ``backend``, or on the fastest one (``"auto"``).

    Every backend starts from the BatchNorm-folded copy :func:`sepconv.fuse` returns
    (``model`` itself is not modified) and is specialised to inputs of shape
    ``(batch_size, *input_size)``. The backends of each device, what each runs from and the
    precisions it computes in are the rows of :data:`sepconv.deploy.registry.BACKEND_TABLE`; on
    the CPU:

    - ``"eager"``: PyTorch under ``inference_mode``, in channels-last layout when that measured
      faster than NCHW on this input (oneDNN's depthwise and 1x1 kernels prefer it), else NCHW;
      with ``precision="bf16"`` under ``torch.autocast("cpu", torch.bfloat16)``.
    - ``"compile"``: ``torch.compile`` (inductor, static shapes, ``freezing``: weights become
      constants, convs get pre-packed oneDNN weights). Compiled at build time, which takes far
      longer than the other builds; needs a C++ compiler. bf16 as for eager.
    - ``"onnxruntime"``: the file :func:`sepconv.export_onnx` writes (static shape), in a CPU
      session with ``threads`` intra-op threads and otherwise ONNX Runtime's defaults (all graph
      optimisations: constant folding, conv+activation fusion, NCHWc blocked layout; sequential
      execution). Always fp32 (its CPU provider has no bf16 convolutions).
    - ``"openvino"``: the same ONNX file read by ``openvino.Core().read_model`` (no telemetry,
      unlike ``openvino.convert_model``), compiled for the CPU with ``threads`` inference
      threads, otherwise OpenVINO's defaults (one stream, latency hint), and the inference
      precision pinned to f32 (OpenVINO's own default is bf16 on a bf16-capable CPU, which
      would silently lower precision), or to bf16 with ``precision="bf16"`` where the CPU has
      native bf16 (elsewhere OpenVINO stays f32).
    - ``"auto"``: build each backend of ``candidates`` that is installed, time each on the same
      input in alternating rounds of 0.1 s blocks, so that load from elsewhere hits all alike,
      and keep the lowest median (the rule: :func:`sepconv.deploy.choose.keep_fastest`; about
      a second per runtime). The losers are released first: no other runtime's threads stay
      alive. The medians are in :attr:`InferenceModel.timings`; the backends that could not be
      built or failed the check below, and why, in :attr:`InferenceModel.skipped`.

    ``precision="auto"`` (CPU) measures precisions on the user's own images: every backend of
    ``candidates`` (or the one named) is built in fp32, in bf16 where the CPU has native bf16,
    and in int8 (:func:`sepconv.deploy.quantize`; ONNX Runtime and OpenVINO). ``calibration``
    is split: int8's ranges are set on a seeded draw of up to 256 of the images, and every
    candidate runs all the others, which the quantizer never saw
    (:func:`sepconv.deploy.split_calibration`); its top-1 agreement with eager fp32 and its max
    relative error there are recorded, and the fastest candidate whose agreement is at least
    ``min_agreement`` is returned (fp32 always qualifies). Here bf16 and int8 are judged
    by that agreement alone, not by :data:`BF16_RTOL`. :attr:`InferenceModel.agreement` is the
    chosen one's agreement, :attr:`InferenceModel.candidates` every candidate's report, and
    :attr:`InferenceModel.why` says why it won (:mod:`sepconv.deploy.precision`).

    Each built backend is run once on ``example`` (default: a seeded random input) and
    compared with the eager fp32 model in eval mode; a relative error above :data:`FP32_RTOL`
    (:data:`BF16_RTOL` for a bf16 backend; both in :mod:`sepconv.deploy.compiled`) raises
    instead of returning a wrong model (with ``"auto"``: leaves that backend out, and raises only
    when none is left).

    With ``device="cuda"`` the backends are the CUDA rows (:mod:`sepconv.deploy.cuda_backends`):
    ``"eager"``
    (channels-last, cast to the precision), ``"compile"`` (``torch.compile(mode=compile_mode)``)
    and ``"cudagraph"`` (the eager model captured once into a CUDA graph for the static shape).
    ``precision=None`` there means all of fp32, bf16 and fp16 (fp32 for a named backend):
    ``"auto"`` builds the eager candidate in each, times them, then builds the other
    ``candidates`` (default all of :data:`~sepconv.deploy.cuda.CUDA_BACKENDS`) at the precision
    whose eager candidate was fastest, and times everything again in alternating blocks with
    CUDA events. Each candidate is checked against the CPU fp32 eager output with
    :data:`FP32_RTOL`, :data:`BF16_RTOL` or :data:`FP16_RTOL`. Timings are keyed
    ``"backend/precision"``, :attr:`InferenceModel.why` says why the winner won, and the
    returned model takes inputs on any device and returns float32 on the GPU.

    Args:
        model: A module mapping one ``(N, C, H, W)`` float tensor to one tensor.
        backend: ``"auto"`` or one of :data:`BACKENDS` (on CUDA: of
            :data:`~sepconv.deploy.cuda.CUDA_BACKENDS`); :func:`backend_choices` lists them.
        input_size: ``(C, H, W)`` of one input image, or ``(N, C, H, W)`` as
            :func:`sepconv.analyze` takes it (``N`` is then the batch size; ``batch_size``
            must be left at 1 or equal ``N``).
        batch_size: ``N``; the compiled model takes exactly this batch.
        threads: Intra-op threads for every backend (default: ``torch.get_num_threads()``).
        candidates: Backends ``"auto"`` measures (default :data:`AUTO_BACKENDS`, which leaves
            out the slow-to-build ``"compile"``); only with ``backend="auto"``.
        precision: ``"fp32"`` (the CPU default) or ``"bf16"``: the precision the eager, compile
            and OpenVINO backends compute in (ONNX Runtime stays fp32); on CUDA also
            ``"fp16"``, and ``None`` (the CUDA default) measures all three.
            :attr:`InferenceModel.precision` says what the returned backend uses. On the CPU
            also ``"auto"``: measure fp32, bf16 and int8 on ``calibration`` (above).
        calibration: With ``precision="auto"`` (and only then): a float tensor
            ``(N, C, H, W)`` of real, already normalised images, ``N >= 1`` and ``C, H, W`` as
            ``input_size`` (:func:`sepconv.deploy.prepare_images` makes them from uint8 images
            or a dataset); the int8 candidates are calibrated on part of them (above; int8
            needs ``N >= 2``).
        min_agreement: With ``precision="auto"``: lowest top-1 agreement with eager fp32, in
            ``(0, 1]``, at which a bf16 or int8 candidate qualifies (default 0.995).
        example: A real input of shape ``(batch_size, *input_size)``, on which every backend
            is checked (the ONNX export too) and ``"auto"`` times them. Pass one for a trained
            model: noise can take its activations where float32 itself loses the digits the
            check compares. With ``precision="auto"`` it defaults to the first ``batch_size``
            calibration images.
        device: ``"cpu"`` (default) or a CUDA device (``"cuda"``, ``"cuda:1"``).
        compile_mode: The ``torch.compile`` mode of the CUDA ``"compile"`` backend.

    Returns:
        An :class:`InferenceModel`; ``model(x)`` returns a float32 tensor on the CPU (on the GPU
        for ``device="cuda"``).

    Raises:
        ValueError: an unknown backend name (the message lists the table's names for the device)
            or another invalid
            argument (``precision="auto"`` without ``calibration``, or on CUDA), or a model
            whose output is not a single tensor.
        ImportError: a named backend's runtime is not installed; the message names the extra
            (``pip install 'sepconv[onnx]'`` / ``'sepconv[openvino]'``).
        BackendMismatchError: (a ``RuntimeError``) the named backend, or with ``"auto"`` every
            candidate, disagrees with eager PyTorch (see :data:`FP32_RTOL`, :data:`BF16_RTOL`).

    Example:
        >>> import sepconv
        >>> fast = compile_for_inference(sepconv.mobilenet_v2(), threads=2)  # doctest: +SKIP
        >>> sorted(fast.timings)  # doctest: +SKIP
        ['eager', 'onnxruntime', 'openvino']
        >>> fast.timings[fast.backend] == min(fast.timings.values())  # doctest: +SKIP
        True
        >>> images = torch.randn(256, 3, 224, 224)  # your own normalised images, in practice
        >>> best = compile_for_inference(sepconv.mobilenet_v2(), precision="auto",
        ...                              calibration=images)  # doctest: +SKIP
        >>> best.agreement >= 0.995 or best.precision == "fp32"  # doctest: +SKIP
        True
    """
    if not isinstance(model, nn.Module):
        raise invalid("model", "an nn.Module", type(model).__name__)
    dev = check_device(device)
    cuda = dev.type == "cuda"
    valid = rows(dev.type)
    named = None
    if backend != "auto":
        named = find(backend, valid, argument="backend", accepted=backend_choices(dev.type))
    positive_int("batch_size", batch_size)
    one_image, batch_size = _split_batch(input_size, batch_size)
    size = check_input_size(one_image)  # type: ignore[arg-type]
    used_threads = check_threads(threads)
    if candidates is not None and backend != "auto":
        raise invalid("candidates", "None unless backend='auto'", candidates)
    calibration = check_calibration(
        calibration, precision=precision, min_agreement=min_agreement, size=size, cuda=cuda
    )
    precisions = precision_choices(dev.type)
    if precision is not None and precision not in precisions:
        raise invalid("precision", f"one of {', '.join(map(repr, precisions))}", precision)
    default = [row.name for row in valid if row.auto] if candidates is None else candidates
    chosen = _check_candidates(default, valid) if named is None else (named,)
    names = tuple(row.name for row in chosen)
    shape = (batch_size, *size)
    if example is None and calibration is not None:
        example = first_images(calibration, batch_size)
    elif example is None:
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
    if cuda:
        return compile_for_cuda(
            model,
            example,
            reference,
            dev,
            backends=names,
            precisions=precisions if precision is None else (precision,),
            auto=named is None,
            compile_mode=compile_mode,
        )
    if calibration is not None:  # precision="auto"
        return search_precision(
            model,
            calibration,
            backends=names,
            batch_size=batch_size,
            threads=used_threads,
            example=example,
            reference=reference,
            min_agreement=min_agreement,
        )
    target = Target((batch_size, *size), precision or "fp32", used_threads)

    with tempfile.TemporaryDirectory(prefix="sepconv-deploy-") as tmp:
        onnx_file = Path(tmp) / "model.onnx"  # exported once, for the backends that run it

        def build(row: Backend, at: Target = target) -> InferenceModel:
            runner, used = row.build(model, example, at, onnx_file)
            return checked(row.name, runner, used, shape, example, reference, threads=used_threads)

        if named is not None:
            return build(named)

        built: dict[str, InferenceModel] = {}
        skipped: dict[str, str] = {}
        mismatched = False
        children = child_pids()  # the builds' own child processes are waited for
        for row in chosen:
            name = row.name
            try:
                built[name] = build(row)
            except ImportError as err:
                skipped[name] = str(err)
            except BackendMismatchError as err:
                if target.precision == "fp32":
                    skipped[name] = str(err)
                    mismatched = True
                    continue
                # A reduced precision that fails its check falls back to that backend's fp32,
                # so the request never ends on a slower backend than fp32 alone would choose.
                skipped[f"{name}/{target.precision}"] = f"{err}; measured in fp32 instead"
                try:
                    built[name] = build(row, dataclasses.replace(target, precision="fp32"))
                except BackendMismatchError as fp32_err:
                    skipped[name] = str(fp32_err)
                    mismatched = True
    if not built:
        error = BackendMismatchError if mismatched else ImportError
        raise error(
            "Cannot compile for inference: no backend of `candidates` could be built: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    race = keep_fastest(built, example, used_threads, children_before=children)  # frees the rest
    why = fastest_reason(race.winner.backend, race.timings, skipped)
    return dataclasses.replace(
        race.winner,
        timings=race.timings,
        skipped=skipped,
        why=why,
        race_busy_share=race.busy_share,
    )


def _split_batch(input_size: object, batch_size: int) -> tuple[object, int]:
    """``(C, H, W)`` and the batch size from an ``input_size`` of either convention: the
    ``(N, C, H, W)`` that :func:`sepconv.analyze` takes gives its ``N`` as the batch."""
    if not isinstance(input_size, (tuple, list)) or len(input_size) != 4:
        return input_size, batch_size
    n = input_size[0]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or batch_size not in (1, n):
        raise invalid(
            "input_size",
            f"(C, H, W), or (N, C, H, W) with N equal to `batch_size` ({batch_size})",
            input_size,
        )
    return tuple(input_size[1:]), n


def _reference_output(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """The eval-mode output of an unmodified copy of ``model``, which every backend must match.

    A model that cannot run on ``example`` (an input too small for its strides, a channel
    count it does not take) raises a ``ValueError`` naming the innermost layer that failed, as
    :func:`sepconv.analyze` does, before any backend is built.
    """
    reference = copy.deepcopy(model).float().cpu().eval()
    running: list[str] = []
    handles = []
    for name, module in reference.named_modules():

        def enter(mod: nn.Module, inputs: object, name: str = name) -> None:
            running.append(name)

        def leave(mod: nn.Module, inputs: object, output: object) -> None:
            running.pop()

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.inference_mode():
            output = reference(example)
    except RuntimeError as err:
        layer = running[-1] if running else ""
        kind = type(reference.get_submodule(layer)).__name__
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"Invalid value for argument `input_size`: {type(reference).__name__} cannot run on "
            f"inputs of shape {list(example.shape)}: layer `{layer or '(model)'}` ({kind}) "
            f"raised: {first}"
        ) from err
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"Invalid value for argument `model`: expected a model returning one tensor, its "
            f"forward returns {type(output).__name__}."
        )
    return output


def _check_candidates(candidates: Sequence[str], valid: Sequence[Backend]) -> tuple[Backend, ...]:
    """The rows of ``valid`` that ``candidates`` names, repeats dropped; else a ValueError."""
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        names = ", ".join(repr(row.name) for row in valid)
        raise invalid("candidates", f"a non-empty sequence of {names}", candidates)
    found = [
        find(name, valid, argument="candidates", expected="backends among") for name in candidates
    ]
    return tuple(dict.fromkeys(found))
