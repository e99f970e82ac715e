"""ONNX export with a check: the written file is run in ONNX Runtime and compared with PyTorch.

The graph is captured with ``torch.export`` (non-strict) and translated by the exporter of
``torch.onnx.export(..., dynamo=True)``. ``torch.export`` refuses data-dependent Python control
flow (``if x.sum() > 0:``), where the TorchScript exporter (``dynamo=False``) records the branch
its example input took and exports a model that is wrong for other inputs, with only a
warning. The price is time: capturing with ``torch.export`` and checking the file takes many
times as long as a TorchScript export (measured in ``results/deploy/README.md``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepconv.deploy._extras import ONNX, ONNXRUNTIME, ONNXSCRIPT, require
from sepconv.deploy.fuse import fuse
from sepconv.deploy.inputs import (
    check_batch_sizes,
    check_images,
    check_input_size,
    first_images,
    random_inputs,
)
from sepconv.deploy.onnx_check import (
    INPUT_NAME,
    MIN_OPSET,
    ExportError,
    first_line,
    run_eager,
    write_checked,
)
from sepconv.deploy.onnx_memo import TranslationMemo
from sepconv.utils.validation import invalid, positive_number

__all__ = ["OnnxExport", "check_opset", "export_onnx"]

BATCH_AXIS = "batch"
# The batch of the example input traced for a dynamic batch axis: torch.export specialises a
# size-1 axis to the constant 1.
_DYNAMIC_EXAMPLE_BATCH = 2
#: Recent translations of this process (:mod:`sepconv.deploy.onnx_memo`).
TRANSLATIONS = TranslationMemo()


def check_opset(opset: int) -> int:
    """Return ``opset`` if it is an integer from :data:`MIN_OPSET` (the torch.export-based
    exporter starts there) to the newest opset the installed onnx knows, else raise naming it."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise invalid(
            "opset",
            f"an integer >= {MIN_OPSET} (the torch.export-based exporter starts at opset 18)",
            opset,
        )
    try:
        import onnx
    except ImportError:  # the export says what to install
        return opset
    newest = int(onnx.defs.onnx_opset_version())
    if opset > newest:
        raise invalid(
            "opset", f"an integer from {MIN_OPSET} to {newest} (the installed onnx's)", opset
        )
    return opset


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how it was checked.

    Attributes:
        path: The ONNX file.
        opset: Its ONNX opset (default domain).
        input_shape: ``(N, C, H, W)`` of the example input that was traced. With
            ``dynamic_batch`` the file's batch axis is the symbol ``"batch"`` and takes any N.
        dynamic_batch: Whether the batch axis is dynamic.
        max_rel_error: Batch size -> ``max|onnx - eager| / max|eager|`` over all output elements
            (the worst output when the model has several), measured in ONNX Runtime against the
            unfolded model in eval mode.
    """

    path: Path
    opset: int
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    max_rel_error: dict[int, float]


def _out_of_place(model: nn.Module) -> nn.Module:
    """``model`` with every in-place activation (``ReLU6(inplace=True)``) made out-of-place.

    The result is the same; the capture is not: an in-place ``hardtanh_`` goes through
    functionalisation and a decomposition of its own, a slow path of the exporter.
    """
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False  # type: ignore[assignment]
    return model


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int, int] = (3, 224, 224),
    dynamic_batch: bool = True,
    fold_bn: bool = True,
    opset: int = 18,
    check_batches: Sequence[int] = (1, 8),
    check_inputs: torch.Tensor | None = None,
    rtol: float = 1e-4,
) -> OnnxExport:
    """Export ``model`` to an ONNX file, then prove the file computes what the model does.

    Steps: fold every BatchNorm into its conv (:func:`sepconv.fuse`, when ``fold_bn``), capture
    the eval-mode forward with ``torch.export`` (batch axis dynamic when ``dynamic_batch``),
    translate it to ONNX, validate the file with ``onnx.checker.check_model(full_check=True)``
    (which includes strict shape inference), load it in an ONNX Runtime ``InferenceSession``
    (CPU, as many intra-op threads as ``torch.get_num_threads()``) and compare its outputs with
    the *unfolded* model in eval mode on seeded ``randn`` inputs (or ``check_inputs``) at every
    batch size of ``check_batches``. The relative error of one batch is
    ``max|onnx - eager| / max|eager|`` over all output elements: scale-free, and not dominated
    by the tiny elements a per-element ratio would divide by.

    A model exported earlier in the same process with the same options (the same modules,
    weights and ``forward`` functions: :mod:`sepconv.deploy.onnx_memo`) reuses that
    translation instead of being captured again, which saves seconds a model when one build
    exports it several times (fp32, int8, bf16); the file is checked as above all the same, and
    translated afresh if the remembered graph fails.

    The file is written to a temporary file beside ``path`` and renamed into place only after
    every check passed, so ``path`` never holds a half-written or unchecked file, and a failed
    export leaves an existing file at ``path`` untouched. The input is named ``"input"``; the
    outputs ``"output"`` (or ``"output_0"``, ``"output_1"``, ... for a list or tuple). Weights
    are stored inside the file (the protobuf limit of 2 GiB holds every sepconv model). The model
    is exported in float32 on the CPU, from a copy; ``model`` itself is not modified.

    Args:
        model: Any ``nn.Module`` whose ``forward`` takes one ``(N, C, H, W)`` tensor and returns
            a tensor or a list/tuple of tensors.
        path: Destination file; its directory must exist.
        input_size: ``(C, H, W)`` of the example input (default ``(3, 224, 224)``).
        dynamic_batch: Make the batch axis dynamic (default ``True``); otherwise the file takes
            exactly ``check_batches[0]`` images and only that batch is checked.
        fold_bn: Fold BatchNorms into convs with :func:`sepconv.fuse` before export (default
            ``True``). The ONNX optimizer run by the exporter folds a Conv -> BatchNormalization
            it recognises on its own as well, so ``False`` rarely changes the file; it exports
            the model exactly as it is, which tells folding errors from translation errors.
        opset: ONNX opset, at least 18 (default 18).
        check_batches: Batch sizes the file is checked at (default ``(1, 8)``).
        check_inputs: Float images ``(N, C, H, W)`` of ``input_size`` to compare on instead of
            ``randn``; each batch size ``b`` takes the first ``b`` of them (repeated when there
            are fewer). Pass real images for a trained model: noise can drive its activations
            far outside what it was trained on, where float32 itself loses the digits the check
            compares (the error message then gives eager PyTorch's own float32 error).
        rtol: Largest accepted relative error (default ``1e-4``).

    Returns:
        An :class:`OnnxExport` describing the file and the errors measured.

    Raises:
        ExportError: the model cannot be captured (data-dependent control flow, non-tensor
            outputs, a batch size fixed inside the model with ``dynamic_batch``), the translation
            or the ONNX checker fails, or ONNX Runtime disagrees with PyTorch by more than
            ``rtol``; the message names the model and, for a mismatch, the batch and the error.
        ValueError: an invalid argument, or a model that fails on an input of ``input_size``.
        FileNotFoundError: the directory of ``path`` does not exist.
        ImportError: onnx, onnxruntime or onnxscript is missing (``pip install 'sepconv[onnx]'``).

    Example:
        >>> import sepconv
        >>> model = sepconv.create_model("mobilenet_v2", num_classes=10, small_input=True)
        >>> result = export_onnx(model, "mnv2.onnx", input_size=(3, 32, 32))
        >>> sorted(result.max_rel_error)
        [1, 8]
    """
    onnx = require(ONNX, "ONNX export")
    require(ONNXSCRIPT, "ONNX export")
    require(ONNXRUNTIME, "ONNX export check")
    if not isinstance(model, nn.Module):
        raise invalid("model", "an nn.Module", type(model).__name__)
    size = check_input_size(input_size)
    check_opset(opset)
    batches = check_batch_sizes(check_batches)
    if check_inputs is not None:
        check_images("check_inputs", check_inputs, size)
    positive_number("rtol", rtol)
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {str(target)!r}: directory {str(target.parent)!r} does not exist; "
            "create it first."
        )
    if not dynamic_batch:
        batches = batches[:1]

    name = getattr(model, "arch_name", None) or type(model).__name__
    # Float32 CPU copies: the reference keeps its BatchNorms, the exported one has them folded.
    reference = copy.deepcopy(model).float().cpu().eval()
    exported = _out_of_place(fuse(reference) if fold_bn else reference)
    inputs = random_inputs((_DYNAMIC_EXAMPLE_BATCH, *batches) if dynamic_batch else batches, size)
    example = inputs[_DYNAMIC_EXAMPLE_BATCH if dynamic_batch else batches[0]]
    checked = {
        b: inputs[b] if check_inputs is None else first_images(check_inputs, b) for b in batches
    }
    num_outputs = len(run_eager(reference, example, name))

    # A model exported before with the same options reuses that translation; the file is
    # checked against the model all the same, and translated afresh if it fails.
    key = TRANSLATIONS.key(exported, size, dynamic_batch, opset, tuple(example.shape), num_outputs)
    remembered = None if key is None else TRANSLATIONS.get(key)
    errors: dict[int, float] | None = None
    if key is not None and remembered is not None:
        try:
            proto = onnx.load_model_from_string(remembered)
            errors = write_checked(proto, target, reference, checked, name, rtol)
        except ExportError:  # a change the fingerprint cannot see (onnx_memo)
            TRANSLATIONS.discard(key)
    if errors is None:
        proto = _translate(exported, example, name, dynamic_batch, opset, num_outputs)
        errors = write_checked(proto, target, reference, checked, name, rtol)
        if key is not None:
            TRANSLATIONS.put(key, proto.SerializeToString())
    return OnnxExport(
        path=target,
        opset=opset,
        input_shape=tuple(example.shape),
        dynamic_batch=dynamic_batch,
        max_rel_error=errors,
    )


def _translate(
    exported: nn.Module,
    example: torch.Tensor,
    name: str,
    dynamic_batch: bool,
    opset: int,
    num_outputs: int,
) -> Any:
    """Capture ``exported`` and translate it to an ONNX ``ModelProto`` at ``opset``."""
    program = _capture(exported, example, name, dynamic_batch=dynamic_batch)
    output_names = ["output"] if num_outputs == 1 else [f"output_{i}" for i in range(num_outputs)]
    try:
        onnx_program = torch.onnx.export(
            program,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=output_names,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    except Exception as err:
        raise ExportError(
            f"Cannot translate {name} to ONNX opset {opset}: {first_line(err)}. The graph was "
            "captured, so an operator has no ONNX translation at this opset; try a newer "
            "`opset`, or replace the operator."
        ) from err
    if onnx_program is None:  # only returned for the TorchScript exporter without a file
        raise ExportError(f"torch.onnx.export returned no ONNX program for {name}.")
    proto = onnx_program.model_proto
    graph_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if graph_opset != opset:
        raise ExportError(
            f"Cannot export {name} at ONNX opset {opset}: the exporter produced opset "
            f"{graph_opset}; use `opset={graph_opset}`."
        )
    if dynamic_batch:
        _name_batch_axis(proto)
    return proto


def _capture(
    model: nn.Module, example: torch.Tensor, name: str, *, dynamic_batch: bool
) -> torch.export.ExportedProgram:
    """``torch.export`` the forward, turning every capture failure into an ExportError."""
    dynamic_shapes = ({0: torch.export.Dim(BATCH_AXIS, min=1)},) if dynamic_batch else None
    try:
        return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as err:
        hint = (
            " If the model fixes the batch size (e.g. a reshape to a constant batch), export "
            "with `dynamic_batch=False`."
            if dynamic_batch
            else ""
        )
        raise ExportError(
            f"Cannot export {name} to ONNX: torch.export could not capture its forward on an "
            f"input of shape {tuple(example.shape)} ({type(err).__name__}: {first_line(err)}). "
            "Python control flow on tensor values (`if x.sum() > 0:`), `.item()` or "
            "`float(tensor)` on activations cannot be recorded in a graph; express them with "
            f"tensor operations (`torch.where`, `torch.cond`).{hint}"
        ) from err


def _name_batch_axis(proto: Any) -> None:
    """Rename the symbol torch.export gave the batch axis (``s77``, ...) to ``"batch"``."""
    symbol = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    graph = proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_AXIS
