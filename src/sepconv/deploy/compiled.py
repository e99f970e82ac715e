"""What :func:`sepconv.deploy.runtime.compile_for_inference` returns: a model compiled for one
input shape on one backend, and the error raised when a backend disagrees with eager PyTorch;
and what every backend is built for (:class:`Target`) and builds (a :data:`Runner`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from sepconv.deploy.onnx_check import relative_error

__all__ = [
    "BackendMismatchError",
    "CandidateReport",
    "InferenceModel",
    "Runner",
    "Target",
    "fastest_reason",
]

#: A backend's forward: a batch of the compiled shape -> the float32 output.
Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """What one backend is built for.

    Attributes:
        shape: The ``(N, C, H, W)`` of the inputs it takes.
        precision: What it is asked to compute in (``"fp32"``, ``"bf16"``, ``"fp16"``); a
            backend reports what it really uses (OpenVINO stays f32 on a CPU without bf16).
        threads: Intra-op threads of a CPU backend.
        device: Where it runs.
        compile_mode: The ``torch.compile`` mode of the CUDA ``"compile"`` backend.
    """

    shape: tuple[int, int, int, int]
    precision: str
    threads: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    compile_mode: str = "max-autotune"


class BackendMismatchError(RuntimeError):
    """A compiled backend's output disagrees with eager PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class CandidateReport:
    """How one ``backend/precision`` candidate of ``precision="auto"`` measured, and its fate.

    Attributes:
        backend: The backend (``"onnxruntime"``, ``"openvino"``, ``"eager"``, ...).
        precision: What it computes in: ``"fp32"``, ``"bf16"`` or ``"int8"``.
        kept: Whether it qualified for the choice (fp32 always does; bf16 and int8 when their
            top-1 agreement reached ``min_agreement``).
        reason: Why it was dropped, or not built at all (empty when kept).
        median_ms: Median latency per batch in milliseconds (``None`` when not built).
        agreement: Fraction of the held-out calibration images (those int8 was not calibrated
            on, :func:`sepconv.deploy.split_calibration`) whose top-1 class equals
            eager fp32's.
        max_rel_error: ``max|out - eager| / max|eager|`` over those images.
        samples: How many images ``agreement`` was measured on (``None`` when not built).
    """

    backend: str
    precision: str
    kept: bool
    reason: str = ""
    median_ms: float | None = None
    agreement: float | None = None
    max_rel_error: float | None = None
    samples: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict of the fields."""
        return asdict(self)


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
            measured (empty when the backend was named); keyed ``"backend/precision"`` on CUDA
            and with ``precision="auto"``.
        skipped: Backend -> why ``auto`` left it out: the runtime is not installed, or its
            output disagreed with eager PyTorch.
        max_rel_error: ``max|out - eager| / max|eager|`` measured at build time on the example
            input, with ``precision="auto"`` on the calibration images (``None`` when there
            was no PyTorch model to compare with).
        path: The ONNX file the runtime loaded, when it is kept on disk (:func:`load_onnx`).
        device: Where it runs: ``"cpu"`` or a CUDA device such as ``"cuda:0"``.
        why: Why ``auto`` picked this backend, in one sentence (empty when it was named).
        agreement: With ``precision="auto"``: the fraction of held-out calibration images on
            which its top-1 class equals eager fp32's (``None`` otherwise; how many images:
            its :class:`CandidateReport`'s ``samples``).
        candidates: With ``precision="auto"``: ``"backend/precision"`` -> its
            :class:`CandidateReport`, for every candidate considered (empty otherwise).
        race_busy_share: When ``auto`` timed candidates: the share of the machine's CPU time
            other processes used meanwhile (0 to 1; ``None`` when nothing was timed or the
            operating system does not say). Above :data:`sepconv.bench.load.BUSY_SHARE` the
            choice was made on a busy machine, and a ``RuntimeWarning`` said so.

    Example:
        >>> import sepconv
        >>> from sepconv.deploy.runtime import compile_for_inference
        >>> net = compile_for_inference(sepconv.mobilenet_v2(num_classes=10),
        ...                             backend="onnxruntime", input_size=(3, 64, 64))
        >>> net(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    backend: str
    input_shape: tuple[int, int, int, int]
    threads: int
    run: Runner = field(repr=False)
    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    timings: Mapping[str, float] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    max_rel_error: float | None = None
    path: Path | None = None
    device: str = "cpu"
    why: str = ""
    agreement: float | None = None
    candidates: Mapping[str, CandidateReport] = field(default_factory=dict)
    race_busy_share: float | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run one batch: ``x`` of shape :attr:`input_shape` -> the float32 output.

        On the CPU ``x`` is taken as float32 and the output is a CPU tensor; on CUDA ``x`` may
        live anywhere (it is copied to :attr:`device`) and the output stays on the GPU.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"InferenceModel ({self.backend}) expected a torch.Tensor, "
                f"received {type(x).__name__}."
            )
        if not x.is_floating_point():
            # Casting uint8 pixels 0-255 to float would return confident logits for inputs the
            # model never saw; the eager model refuses them too.
            raise ValueError(
                f"Invalid value for argument `x`: expected a float tensor of shape "
                f"{list(self.input_shape)} (normalised images), received a {x.dtype} tensor; "
                "convert and normalise the images first (sepconv.deploy.prepare_images)."
            )
        if tuple(x.shape) != self.input_shape:
            raise ValueError(
                f"InferenceModel ({self.backend}) was compiled for input shape "
                f"{list(self.input_shape)}, received {list(x.shape)}; compile another with "
                "the `batch_size` and `input_size` you need."
            )
        if self.device != "cpu":
            return self.run(x.detach())
        return self.run(x.detach().to("cpu", torch.float32))


def fastest_reason(best: str, timings: Mapping[str, float], skipped: Mapping[str, str]) -> str:
    """Why ``best`` was picked, in one sentence: its median next to the runners-up.

    Example:
        >>> fastest_reason("b", {"a": 2.0, "b": 1.0}, {"c": "not installed"})[:40]
        'b: 1 ms median, fastest of 2 candidates '
    """
    others = sorted((ms, name) for name, ms in timings.items() if name != best)
    text = (
        f"{best}: {timings[best]:.3g} ms median, fastest of {len(timings)} candidates that "
        "matched eager fp32"
    )
    if others:
        text += " (next: " + ", ".join(f"{name} {ms:.3g} ms" for ms, name in others[:3]) + ")"
    if skipped:
        text += "; left out: " + ", ".join(skipped)
    return text + "."


# Largest accepted max|backend - eager| / max|eager| of an fp32 backend. Folding BatchNorm and
# reordering sums move float32 results by ~1e-6 relative; anything near 1e-3 is a wrong graph.
# On CUDA the fp32 candidates run with TF32 off (sepconv.deploy.cuda), so the bound is the same.
FP32_RTOL = 1e-3
# The same for a backend computing in bfloat16 (8 significand bits, rounding error 2^-9 per
# value). Trained networks on real images stay inside it while agreeing with fp32 on nearly
# every image (results/deploy/bf16_fashion_mnist/README.md); random-weight ImageNet models with
# real BatchNorm statistics fail it (results/deploy/README.md).
BF16_RTOL = 5e-2
# The same for a CUDA candidate computing in float16: 11 significand bits (rounding error
# 2^-11) put it ~8x closer than bf16 on the same model, so it is held to bf16's bound; its risk
# is range (largest value 65504), and an overflow makes the error inf, which fails any bound.
FP16_RTOL = 5e-2


def checked(
    name: str,
    runner: Runner,
    precision: str,
    shape: tuple[int, ...],
    example: torch.Tensor,
    reference: torch.Tensor,
    *,
    threads: int | None = None,
    device: str = "cpu",
) -> InferenceModel:
    """Run candidate ``runner`` on ``example``: the InferenceModel if it matches ``reference``
    within the tolerance of ``precision``, else a :class:`BackendMismatchError`."""
    output = runner(example).cpu()
    error = relative_error(output, reference) if output.shape == reference.shape else math.inf
    rtol = {"bf16": BF16_RTOL, "fp16": FP16_RTOL}.get(precision, FP32_RTOL)
    if not error <= rtol:
        raise BackendMismatchError(
            f"The {name} backend ({precision}) disagrees with eager PyTorch: max relative error "
            f"{error:.3g} > {rtol:g} (output shape {list(output.shape)}, eager "
            f"{list(reference.shape)}); use another backend."
        )
    return InferenceModel(
        backend=name,
        input_shape=(shape[0], shape[1], shape[2], shape[3]),
        threads=torch.get_num_threads() if threads is None else threads,
        run=runner,
        precision=precision,  # type: ignore[arg-type]
        max_rel_error=error,
        device=device,
    )
