"""The deployment backends as one table: where each runs, what it runs from, the precisions it
computes in, the package it needs, and how it is built.

Everything that varies by backend reads :data:`BACKEND_TABLE`:
:func:`~sepconv.deploy.runtime.compile_for_inference` (the backends of a device, those that
``backend="auto"`` measures by default, the precisions it accepts, which ones need the ONNX
export), its CUDA path (:mod:`sepconv.deploy.cuda`), :func:`~sepconv.deploy.load.load_onnx` and
:func:`~sepconv.deploy.quantize.quantize` (the runtimes of ONNX and int8 files), the precision
search (:mod:`sepconv.deploy.precision`: which backends compute in bf16, which run int8), and
the command line's ``--backend`` choices. Adding a backend is one module with its build function
and one row here (``docs/guides/deployment.md``, "Adding a backend").
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import torch
from torch import nn

from sepconv.deploy import backends, cuda_backends
from sepconv.deploy._extras import ONNXRUNTIME, OPENVINO, TRITON, Extra, require
from sepconv.deploy.compiled import Runner, Target
from sepconv.deploy.fused_backend import build_fused
from sepconv.deploy.onnx import export_onnx
from sepconv.deploy.runtime_ops import (
    is_int8_layer,
    is_int8_op,
    openvino_layers,
    quantized_ops,
)
from sepconv.utils.validation import invalid

__all__ = [
    "BACKEND_TABLE",
    "DEFAULT_ONNX_BACKEND",
    "Backend",
    "Device",
    "FromModel",
    "FromOnnx",
    "Int8Report",
    "backend_names",
    "device_precisions",
    "find",
    "int8_report",
    "int8_runtimes",
    "rows",
]

Device = Literal["cpu", "cuda"]
DEVICES: Final[tuple[str, ...]] = get_args(Device)

#: Builds a backend from the PyTorch model: ``(model, an input of the target's shape, target)``
#: -> ``(runner, the precision it computes in)``.
FromModel = Callable[[nn.Module, torch.Tensor, Target], tuple[Runner, str]]
#: Builds a backend from an ONNX file: ``(file, target)`` -> ``(runner, its precision)``.
FromOnnx = Callable[[Path, Target], tuple[Runner, str]]


@dataclass(frozen=True)
class Int8Report:
    """How a runtime of int8 ONNX files reports what it executes (``sepconv quantize``).

    Attributes:
        key: The key of the counts in the JSON summary of ``sepconv quantize --json``.
        count: ONNX file -> ``{op: count}`` of what the runtime executes after its fusions.
        is_int8: Whether an op (a key of ``count``'s result) is an int8 kernel.
    """

    key: str
    count: Callable[[str | os.PathLike[str]], dict[str, int]]
    is_int8: Callable[[str], bool]


@dataclass(frozen=True)
class Backend:
    """One row of :data:`BACKEND_TABLE`: a backend of one device.

    Attributes:
        name: What ``backend=`` (``--backend``) takes; unique per device.
        device: ``"cpu"`` or ``"cuda"``: where it runs.
        precisions: What it computes in when asked (``compile_for_inference(precision=...)``),
            its default first; asked for another, it is built in its default. A build still
            reports what it really used (OpenVINO's bf16 only where the CPU has it).
        from_model: Builds it from the PyTorch model; or
        from_onnx: builds it from an ONNX file: the static-shape file
            :func:`sepconv.export_onnx` writes, or any file :func:`load_onnx` is given.
            Exactly one of the two is set.
        extra: The optional package its runtime needs (``None``: PyTorch alone); imported
            before anything is built, else an ImportError names the extra to install.
        int8: Set for a runtime of int8 QDQ ONNX files (what :func:`sepconv.deploy.quantize`
            writes): how it reports the ops it executes. ``None``: no int8.
        auto: Whether ``backend="auto"`` measures it when ``candidates`` is not given.
    """

    name: str
    device: Device
    precisions: tuple[str, ...]
    from_model: FromModel | None = None
    from_onnx: FromOnnx | None = None
    extra: Extra | None = None
    int8: Int8Report | None = None
    auto: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise invalid("device", f"one of {_quoted(DEVICES)}", self.device)
        if (self.from_model is None) == (self.from_onnx is None):
            raise ValueError(
                f"Backend {self.name!r}: expected exactly one of `from_model` and `from_onnx`."
            )
        if not self.precisions:
            raise invalid("precisions", "at least one precision", self.precisions)
        if self.int8 is not None and self.from_onnx is None:
            raise ValueError(f"Backend {self.name!r}: `int8` needs `from_onnx` (int8 files).")

    @property
    def onnx(self) -> bool:
        """Whether it runs from an ONNX file (and so needs the export)."""
        return self.from_onnx is not None

    def require(self) -> None:
        """Import its runtime, or raise the ImportError that names the extra to install."""
        if self.extra is not None:
            require(self.extra, f"The {self.name} backend")

    def build(
        self, model: nn.Module, example: torch.Tensor, target: Target, onnx_file: Path
    ) -> tuple[Runner, str]:
        """Build its runner for ``target``, and the precision it computes in.

        The runtime is imported first (before an export, which takes a while). A backend that
        runs from ONNX gets ``onnx_file``, exported from ``model`` at ``target.shape`` and
        checked on ``example`` unless it exists already (one export serves every such backend
        of a build).
        """
        self.require()
        asked = target.precision if target.precision in self.precisions else self.precisions[0]
        target = dataclasses.replace(target, precision=asked)
        if self.from_model is not None:
            return self.from_model(model, example, target)
        if not onnx_file.exists():
            batch, channels, height, width = target.shape
            export_onnx(
                model,
                onnx_file,
                input_size=(channels, height, width),
                dynamic_batch=False,
                check_batches=(batch,),
                check_inputs=example,
            )
        return self.run_file(onnx_file, target)

    def run_file(self, path: Path, target: Target) -> tuple[Runner, str]:
        """Run the ONNX file ``path`` for ``target`` (a backend built ``from_onnx`` only), and
        the precision it computes in."""
        self.require()
        if self.from_onnx is None:
            raise ValueError(
                f"The {self.name} backend runs no ONNX files; it is built from the model."
            )
        return self.from_onnx(path, target)


# One row per backend and device: the name `backend=` takes, the device, the precisions it
# computes in (its default first), how it is built (from the model, or from the exported ONNX
# file), the optional package its runtime needs, how it reports an int8 file's ops (runtimes of
# int8 files only), and whether "auto" measures it by default. Order is the order of the
# choices and of the candidates of "auto".
BACKEND_TABLE: tuple[Backend, ...] = (
    Backend(
        name="eager",
        device="cpu",
        precisions=("fp32", "bf16"),  # bf16: CPU autocast
        from_model=backends.build_eager,
    ),
    Backend(
        name="compile",
        device="cpu",
        precisions=("fp32", "bf16"),
        from_model=backends.build_compiled,
        # Compiling takes far longer than any other build, and it did not beat the ONNX
        # runtimes on the models of results/benchmarks/inference.md.
        auto=False,
    ),
    Backend(
        name="onnxruntime",
        device="cpu",
        precisions=("fp32",),  # its CPU provider has no bf16 convolutions
        from_onnx=backends.run_onnxruntime,
        extra=ONNXRUNTIME,
        int8=Int8Report(key="ops_after_fusion", count=quantized_ops, is_int8=is_int8_op),
    ),
    Backend(
        name="openvino",
        device="cpu",
        precisions=("fp32", "bf16"),  # bf16 only where the CPU has it natively
        from_onnx=backends.run_openvino,
        extra=OPENVINO,
        int8=Int8Report(key="openvino_layers", count=openvino_layers, is_int8=is_int8_layer),
    ),
    Backend(
        name="eager",
        device="cuda",
        precisions=cuda_backends.CUDA_PRECISIONS,
        from_model=cuda_backends.build_eager,
    ),
    Backend(
        name="compile",
        device="cuda",
        precisions=cuda_backends.CUDA_PRECISIONS,
        from_model=cuda_backends.build_compiled,
    ),
    Backend(
        name="cudagraph",
        device="cuda",
        precisions=cuda_backends.CUDA_PRECISIONS,
        from_model=cuda_backends.build_graphed,
    ),
    Backend(
        name="fused",
        device="cuda",
        precisions=cuda_backends.CUDA_PRECISIONS,
        from_model=build_fused,
        extra=TRITON,
    ),
)

#: The runtime :func:`load_onnx`, :func:`quantize` and ``sepconv quantize`` use unless told.
DEFAULT_ONNX_BACKEND: Final = "onnxruntime"


def rows(device: str | None = None) -> tuple[Backend, ...]:
    """The rows of :data:`BACKEND_TABLE` for ``device`` (``"cpu"``, ``"cuda"``; ``None``: all).

    Example:
        >>> [row.name for row in rows("cuda")]
        ['eager', 'compile', 'cudagraph', 'fused']
    """
    return tuple(row for row in BACKEND_TABLE if device is None or row.device == device)


def backend_names(device: str | None = None) -> tuple[str, ...]:
    """The names of :func:`rows` of ``device``, in table order.

    Example:
        >>> backend_names("cpu")
        ('eager', 'compile', 'onnxruntime', 'openvino')
    """
    return tuple(dict.fromkeys(row.name for row in rows(device)))


def int8_runtimes() -> tuple[Backend, ...]:
    """The CPU rows that run int8 QDQ ONNX files (the runtimes :func:`quantize` can check on)."""
    return tuple(row for row in rows("cpu") if row.int8 is not None)


def int8_report(name: object, *, argument: str) -> Int8Report:
    """How the int8 runtime ``name`` reports what it executes; a ValueError naming ``argument``
    when ``name`` is not one of :func:`int8_runtimes`."""
    report = find(name, int8_runtimes(), argument=argument).int8
    if report is None:  # int8_runtimes() holds only rows that run int8 files
        raise ValueError(f"The {name} backend runs no int8 files.")
    return report


def device_precisions(device: str) -> tuple[str, ...]:
    """Every precision some backend of ``device`` computes in, in table order.

    Example:
        >>> device_precisions("cpu")
        ('fp32', 'bf16')
    """
    return tuple(dict.fromkeys(p for row in rows(device) for p in row.precisions))


def find(
    name: object,
    among: Sequence[Backend],
    *,
    argument: str,
    accepted: Sequence[str] | None = None,
    expected: str = "one of",
) -> Backend:
    """The row of ``among`` called ``name``; otherwise a ValueError naming ``argument``.

    The message lists what is accepted (``accepted``, default the names of ``among``) and
    echoes ``name``, with a hint when ``name`` is a backend of another device or close to an
    accepted name.

    Example:
        >>> find("openvino", rows("cpu"), argument="backend").onnx
        True
        >>> try:
        ...     find("openvno", rows("cpu"), argument="backend")
        ... except ValueError as err:
        ...     print(str(err).partition("received ")[2])
        'openvno' (did you mean 'openvino'?).
    """
    for row in among:
        if row.name == name:
            return row
    shown = [row.name for row in among] if accepted is None else list(accepted)
    note = ""
    devices = sorted({row.device for row in among})
    elsewhere = sorted({row.device for row in BACKEND_TABLE if row.name == name})
    if elsewhere and not set(elsewhere) & set(devices):
        note = f" (a backend of {' and '.join(elsewhere)}, not of {' or '.join(devices)})"
    elif isinstance(name, str):
        close = difflib.get_close_matches(name, shown, n=2, cutoff=0.6)
        if close:
            note = f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    raise invalid(argument, f"{expected} {_quoted(shown)}", name, note=note)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _check_table(table: Sequence[Backend]) -> None:
    """Refuse two rows of one name on one device, and a default ONNX runtime that is none."""
    seen: set[tuple[str, str]] = set()
    for row in table:
        if (row.name, row.device) in seen:
            raise ValueError(f"Backend {row.name!r} on {row.device} is in the table twice.")
        seen.add((row.name, row.device))
    if DEFAULT_ONNX_BACKEND not in [row.name for row in table if row.int8 and row.device == "cpu"]:
        raise ValueError(f"DEFAULT_ONNX_BACKEND {DEFAULT_ONNX_BACKEND!r} runs no int8 files.")


_check_table(BACKEND_TABLE)
