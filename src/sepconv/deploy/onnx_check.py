"""Whether an ONNX file computes what its PyTorch model does: run both, compare, and say why not.

:func:`write_checked` writes a graph only once the ONNX checker accepted it and ONNX Runtime's
outputs matched the eager model's (:func:`relative_error`); a mismatch is an
:class:`ExportError` that measures eager float32's own error on the same input, to tell an
ill-conditioned input from a wrong translation.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sepconv.deploy._extras import ONNX, ONNXRUNTIME, require
from sepconv.utils.files import write_atomic

__all__ = [
    "INPUT_NAME",
    "MIN_OPSET",
    "ExportError",
    "first_line",
    "relative_error",
    "run_eager",
    "write_checked",
]

# The torch.export-based exporter implements ONNX opset 18 and later; it "converts" to an older
# opset only on a best-effort basis and keeps 18 when that fails.
MIN_OPSET = 18
INPUT_NAME = "input"


class ExportError(RuntimeError):
    """A model could not be exported, or the exported file does not compute what the model does."""


def write_checked(
    proto: Any,
    target: Path,
    reference: nn.Module,
    inputs: dict[int, torch.Tensor],
    name: str,
    rtol: float,
) -> dict[int, float]:
    """Write ``proto`` to ``target`` once the ONNX checker accepted it and ONNX Runtime computed
    what ``reference`` does on every batch of ``inputs`` (within ``rtol``); the file appears
    only then (atomically). Returns each batch's relative error."""
    onnx = require(ONNX, "ONNX export")
    ort = require(ONNXRUNTIME, "ONNX export check")
    errors: dict[int, float] = {}

    def write_and_check(tmp: Path) -> None:
        # A failed write (full disk, read-only) is an OSError that write_atomic names.
        onnx.save_model(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as err:
            raise ExportError(
                f"The ONNX model of {name} is invalid: {first_line(err)}. This is a bug of the "
                "exporter; try another `opset` or `fold_bn=False`."
            ) from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ExportError(
                f"ONNX Runtime {ort.__version__} cannot load the ONNX model of {name}: "
                f"{first_line(err)}. Try a lower `opset` (at least {MIN_OPSET})."
            ) from err
        for batch, x in inputs.items():
            errors[batch] = _compare(reference, session, x, name, batch, rtol)

    write_atomic(target, write_and_check)
    return errors


def _flat_outputs(output: Any, name: str) -> list[torch.Tensor]:
    """The model output as a list of tensors, or an ExportError naming what was returned."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)) and output:
        return [t for item in output for t in _flat_outputs(item, name)]
    raise ExportError(
        f"Cannot export {name} to ONNX: its forward returns {type(output).__name__}, expected a "
        "tensor or a non-empty list/tuple of tensors. Wrap the model in a module whose forward "
        "returns only tensors."
    )


def run_eager(model: nn.Module, x: torch.Tensor, name: str) -> list[torch.Tensor]:
    with torch.no_grad():
        try:
            output = model(x)
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"Invalid value for argument `input_size`: {name} fails on an input of shape "
                f"{tuple(x.shape)} ({first_line(err)}); pass the (C, H, W) the model takes."
            ) from err
    return _flat_outputs(output, name)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """``max|output - reference| / max|reference|`` in float64 (NaN when either has a NaN)."""
    got = output.detach().to(torch.float64)
    want = reference.detach().to(torch.float64)
    if want.numel() == 0:
        return 0.0
    diff = float((got - want).abs().max())
    scale = float(want.abs().max())
    if math.isnan(diff) or math.isnan(scale):
        return math.nan
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _compare(
    reference: nn.Module, session: Any, x: torch.Tensor, name: str, batch: int, rtol: float
) -> float:
    """Run ``x`` through ONNX Runtime and the eager model; return the relative error."""
    expected = run_eager(reference, x, name)
    try:
        got = session.run(None, {INPUT_NAME: x.numpy()})
    except Exception as err:
        raise ExportError(
            f"ONNX Runtime fails to run the ONNX model of {name} at batch {batch}: "
            f"{first_line(err)}."
        ) from err
    if len(got) != len(expected):
        raise ExportError(
            f"The ONNX model of {name} disagrees with PyTorch at batch {batch}: it has "
            f"{len(got)} outputs, PyTorch gives {len(expected)}."
        )
    errors = []
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        if tuple(have.shape) != tuple(want.shape):
            raise ExportError(
                f"The ONNX model of {name} disagrees with PyTorch at batch {batch}: output {i} "
                f"has shape {list(have.shape)}, PyTorch gives {list(want.shape)}."
            )
        errors.append(relative_error(torch.from_numpy(np.asarray(have)), want))
    # A NaN on either side makes the error NaN, which the check below rejects.
    error = math.nan if any(math.isnan(e) for e in errors) else max(errors)
    if not error <= rtol:
        own = _float32_error(reference, x, expected, name)
        raise ExportError(
            f"The ONNX model of {name} disagrees with PyTorch at batch {batch}: max relative "
            f"error {error:.3g} > rtol {rtol:g} (max|onnx - eager| / max|eager|); eager "
            f"PyTorch's own float32 error against float64 on this input is {own:.3g}. If that is "
            "not far below rtol, the input is ill-conditioned for this model (noise into a "
            "trained model): pass real images as `check_inputs`. Otherwise try `fold_bn=False` "
            "to tell folding from translation errors."
        )
    return error


def _float32_error(
    reference: nn.Module, x: torch.Tensor, expected: list[torch.Tensor], name: str
) -> float:
    """Eager float32's relative error against the same model in float64: what float32 rounding
    alone costs on ``x``."""
    exact = run_eager(copy.deepcopy(reference).double(), x.double(), name)
    return max(relative_error(e, w) for e, w in zip(expected, exact, strict=True))


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
