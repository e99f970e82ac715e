"""Post-training int8 quantization, calibrated on real images, and the check that it agrees.

The model is exported to ONNX (:func:`sepconv.export_onnx`, BatchNorm folded), then quantized
statically into the QDQ format: QuantizeLinear/DequantizeLinear pairs around the ops that are to
run in int8, with ranges from the calibration images (Jacob et al. 2018, "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", eq. 1:
``r = S (q - Z)``). Two quantizers can write the file; they place the pairs differently:

- ONNX Runtime (``quantizer="onnxruntime"``, its ``quantize_static``): pairs around every op it
  has an int8 kernel for; weights int8, symmetric, per output channel by default; activations
  uint8 with a scale and zero point per tensor from the min/max each reaches. ONNX Runtime fuses
  each DQ -> op -> Q group into one integer kernel when it loads the file: convolutions become
  ``QLinearConv``, EfficientNet's SiLU ``x * sigmoid(x)`` becomes ``QLinearSigmoid`` +
  ``QLinearMul``, residual adds ``QLinearAdd`` (:mod:`sepconv.deploy.runtime_ops`
  lists them).
- OpenVINO (``quantizer="nncf"``, OpenVINO's NNCF on the ONNX graph): pairs where OpenVINO's
  CPU plugin fuses them into its int8 kernels, leaving activations such as SiLU as fused
  post-ops (:func:`~sepconv.deploy.runtime_ops.openvino_layers` lists what runs in which
  precision). OpenVINO reading ONNX Runtime's file instead keeps every int8 <-> float
  conversion that file asks for, as reorders and conversions between its kernels, which can
  make the int8 model slower than fp32 where the file has many such boundaries (EfficientNet's
  SiLU and squeeze-excite; measured in ``results/deploy/README.md``).

ONNX Runtime's quantizer is the default for both runtimes: on the trained model where the two
were compared, its file agreed with fp32 more often than NNCF's, in either runtime
(``results/deploy/int8_fashion_mnist/README.md``).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import logging
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from sepconv.data.dataset import ImageDataset, channel_stats
from sepconv.data.normalize import to_model_input
from sepconv.deploy._extras import NNCF, ONNX, ONNXRUNTIME, require
from sepconv.deploy.compiled import InferenceModel
from sepconv.deploy.inputs import check_input_size
from sepconv.deploy.load import load_onnx
from sepconv.deploy.onnx import export_onnx
from sepconv.deploy.onnx_check import INPUT_NAME, relative_error
from sepconv.deploy.registry import DEFAULT_ONNX_BACKEND, find, int8_runtimes
from sepconv.utils.files import write_atomic
from sepconv.utils.validation import invalid, positive_int

__all__ = [
    "DEFAULT_QUANTIZER",
    "QUANTIZERS",
    "needs_reduce_range",
    "prepare_images",
    "quantize",
]

# Images run through the calibration session at a time (the exported file has a dynamic batch).
_CALIBRATION_BATCH = 16

#: Who writes the int8 file: ONNX Runtime's ``quantize_static`` or OpenVINO's NNCF.
Quantizer = Literal["onnxruntime", "nncf"]
QUANTIZERS: tuple[Quantizer, ...] = get_args(Quantizer)
DEFAULT_QUANTIZER: Quantizer = "onnxruntime"


def prepare_images(
    images: ImageDataset | torch.Tensor,
    *,
    input_size: tuple[int, int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Turn a dataset or a batch of images into float32 model inputs ``(N, C, H, W)``.

    ``uint8`` images (an :class:`~sepconv.data.ImageDataset`, or a ``uint8`` tensor) are scaled
    to ``[0, 1]`` and normalised with ``(x - mean) / std`` per channel; ``mean``/``std`` default
    to the statistics of the given images (:func:`sepconv.data.channel_stats`). A float tensor is
    taken as model inputs already and is not normalised. Images whose side differs from
    ``input_size`` are resized bilinearly (with antialiasing when shrinking).

    Args:
        images: An ImageDataset, or a ``(N, C, H, W)`` ``uint8`` or float tensor.
        input_size: ``(C, H, W)`` the model takes (default: that of ``images``).
        mean, std: Per-channel normalisation of ``uint8`` images (the model's training values).

    Returns:
        A float32 tensor of shape ``(N, *input_size)``, in the order of ``images``.

    Example:
        >>> images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
        >>> prepare_images(images, input_size=(1, 32, 32)).shape
        torch.Size([4, 1, 32, 32])
    """
    pixels = images.images if isinstance(images, ImageDataset) else images
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or pixels.shape[0] == 0:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise invalid("images", "an ImageDataset or a non-empty (N, C, H, W) tensor", shape)
    channels, height, width = (int(v) for v in pixels.shape[1:])
    size = (channels, height, width) if input_size is None else check_input_size(input_size)
    if size[0] != channels:
        raise invalid("images", f"{size[0]} channels, as `input_size` {size}", pixels.shape)
    if (mean is None) != (std is None):
        raise invalid("mean/std", "both or neither", (mean, std))
    if pixels.dtype == torch.uint8:
        if mean is None or std is None:
            mean, std = channel_stats(pixels)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise invalid("mean/std", f"{channels} values each, std > 0", (mean, std))
        x = to_model_input(pixels, mean, std, device=torch.device("cpu"), channels_last=False)
    elif pixels.is_floating_point():
        if mean is not None:
            raise invalid("mean/std", "None for float images (model inputs already)", (mean, std))
        x = pixels.float()
    else:
        raise invalid("images", "uint8 or floating-point pixels", pixels.dtype)
    if (height, width) != size[1:]:
        x = F.interpolate(x, size=size[1:], mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def quantize(
    model: nn.Module,
    calibration: ImageDataset | torch.Tensor,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_samples: int = 256,
    per_channel: bool = True,
    reduce_range: bool | None = None,
    backend: str = DEFAULT_ONNX_BACKEND,
    quantizer: Quantizer = DEFAULT_QUANTIZER,
    batch_size: int = 1,
    threads: int | None = None,
) -> InferenceModel:
    """Quantize ``model`` to int8 with calibration on real images; write the ONNX file to ``path``.

    Steps: ``num_samples`` calibration images are drawn (seeded, without replacement) and
    prepared by :func:`prepare_images`; the model is exported
    with :func:`sepconv.export_onnx` (BatchNorm folded, dynamic batch, checked against PyTorch
    on the first calibration image: noise inputs can be ill-conditioned for a trained model);
    ONNX Runtime's ``quant_pre_process`` runs shape inference and graph clean-up; then the
    quantizer records every activation's range on the calibration images and writes the int8
    file: ONNX Runtime's ``quantize_static`` (QDQ format, MinMax calibration) or NNCF's
    ``nncf.quantize`` (CPU target, its default preset and fast bias correction). ``path`` is
    replaced atomically, only once the file is complete. The returned model runs the file on
    ``backend``.

    Args:
        model: A module mapping one ``(N, C, H, W)`` float tensor to one tensor.
        calibration: Real images: an :class:`~sepconv.data.ImageDataset` (e.g. the training
            split of :func:`sepconv.data.load_dataset`), or a ``uint8`` or float tensor (see
            :func:`prepare_images` for normalisation and resizing).
        path: Destination ``.onnx`` file; its directory must exist.
        input_size: ``(C, H, W)`` the model takes (default: the calibration images' size).
        mean, std: Normalisation of ``uint8`` calibration images; pass the model's training
            values (default: the statistics of the calibration images).
        num_samples: Calibration images (MinMax ranges stop moving after a few hundred).
        per_channel: One weight scale per output channel (default) rather than per tensor;
            depthwise kernels differ widely from channel to channel, so per-tensor scales cost
            accuracy there. NNCF always uses per-channel scales.
        reduce_range: Quantize weights to 7 bits. x86 CPUs without VNNI multiply u8 x s8 with
            ``vpmaddubsw``, which saturates the 16-bit sum of two products (255 * 127 * 2 >
            32767); ONNX Runtime's int8 kernels then return wrong values unless weights stay
            within 7 bits. ``None`` (default) turns it on exactly on such CPUs (this one is
            assumed to be where the file runs); 8-bit weights there lose agreement with fp32
            that 7-bit ones keep. With ``quantizer="nncf"`` it sets NNCF's overflow fix:
            ``True`` on every layer, ``False`` on none, ``None`` on every layer on such CPUs and
            NNCF's own default (the first layer only) elsewhere; on such a CPU NNCF's default
            leaves a model agreeing with fp32 much less often than the fix on every layer does
            (both measured in ``results/deploy/README.md``).
        backend: Runtime of the returned model: a CPU backend that runs int8 files
            (:func:`~sepconv.deploy.registry.int8_runtimes`: ``"onnxruntime"``, the default,
            or ``"openvino"``).
        quantizer: ``"onnxruntime"`` (default) or ``"nncf"``, OpenVINO's own, which places the
            int8 ops where OpenVINO fuses them (module docstring).
        batch_size: Batch of the returned model (the file itself takes any batch).
        threads: Intra-op threads of the returned model (default: ``torch.get_num_threads()``).

    Returns:
        An :class:`~sepconv.deploy.runtime.InferenceModel` with ``precision="int8"``, ``path``
        the written file and ``max_rel_error`` its relative error against ``model`` on the
        first calibration image(s).

    Raises:
        ValueError: an invalid argument or calibration set.
        ImportError: onnx / onnxruntime (or openvino / nncf) is missing; the message names the
            extra to install.
        sepconv.deploy.ExportError: the model cannot be exported.

    Example:
        >>> import sepconv
        >>> from sepconv.data import load_fashion_mnist
        >>> train = load_fashion_mnist("train")  # doctest: +SKIP
        >>> model = sepconv.create_model("mobilenet_v1", width_mult=0.25, num_classes=10,
        ...                              in_chans=1, small_input=True)
        >>> int8 = quantize(model, train, "mnv1.int8.onnx")  # doctest: +SKIP
        >>> quantized_ops(int8.path)["QLinearConv"]  # doctest: +SKIP
        27
    """
    require(ONNXRUNTIME, "int8 quantization")
    quantization = importlib.import_module("onnxruntime.quantization")
    if not isinstance(model, nn.Module):
        raise invalid("model", "an nn.Module", type(model).__name__)
    find(backend, int8_runtimes(), argument="backend")
    if quantizer not in QUANTIZERS:
        raise invalid("quantizer", f"one of {', '.join(map(repr, QUANTIZERS))}", quantizer)
    if quantizer == "nncf":
        if not per_channel:
            raise invalid(
                "per_channel",
                "True with quantizer='nncf' (NNCF always uses per-channel weight scales)",
                per_channel,
            )
        require(NNCF, "int8 quantization with NNCF")
    if reduce_range is not None and not isinstance(reduce_range, bool):
        raise invalid("reduce_range", "None, True or False", reduce_range)
    positive_int("num_samples", num_samples)
    positive_int("batch_size", batch_size)
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {str(target)!r}: directory {str(target.parent)!r} does not exist; "
            "create it first."
        )
    pixels = calibration.images if isinstance(calibration, ImageDataset) else calibration
    if isinstance(pixels, torch.Tensor) and pixels.dim() >= 1 and num_samples < len(pixels):
        # A seeded draw without replacement: the first N of a class-sorted file would miss classes.
        keep = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))
        pixels = pixels[keep[:num_samples].sort().values]
    inputs = prepare_images(pixels, input_size=input_size, mean=mean, std=std)
    size = (int(inputs.shape[1]), int(inputs.shape[2]), int(inputs.shape[3]))

    seven_bit = needs_reduce_range() if reduce_range is None else reduce_range
    with tempfile.TemporaryDirectory(prefix="sepconv-quantize-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        prepared = Path(tmp) / "fp32.pre.onnx"
        export_onnx(model, fp32, input_size=size, check_batches=(1,), check_inputs=inputs[:1])
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)

        def write_onnxruntime(tmp_file: Path) -> None:
            quantization.quantize_static(
                str(prepared),
                str(tmp_file),
                _calibration_reader(quantization, INPUT_NAME, inputs.split(_CALIBRATION_BATCH)),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=seven_bit,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )

        if quantizer == "nncf":
            overflow_fix = None if reduce_range is None and not seven_bit else seven_bit
            write_atomic(
                target, lambda tmp_file: _nncf_quantize(prepared, tmp_file, inputs, overflow_fix)
            )
        else:
            write_atomic(target, write_onnxruntime)
    int8 = load_onnx(target, backend=backend, batch_size=batch_size, threads=threads)
    sample = inputs[:batch_size]
    if sample.shape[0] < batch_size:  # fewer calibration images than one batch: repeat them
        sample = sample.repeat(-(-batch_size // sample.shape[0]), 1, 1, 1)[:batch_size]
    reference = copy.deepcopy(model).float().cpu().eval()
    with torch.inference_mode():
        error = relative_error(int8(sample), reference(sample))
    return dataclasses.replace(int8, max_rel_error=error)


def _nncf_quantize(
    source: Path, target: Path, inputs: torch.Tensor, overflow_fix: bool | None
) -> None:
    """Quantize the ONNX file ``source`` with NNCF, calibrated on ``inputs`` one image at a time
    (its bias correction assumes batches of one), and save the QDQ file to ``target``.
    ``overflow_fix``: 7-bit weights on every layer (True), on none (False), or NNCF's default
    (None: the first layer only)."""
    onnx = require(ONNX, "int8 quantization with NNCF")
    nncf = require(NNCF, "int8 quantization with NNCF")
    parameters = importlib.import_module("nncf.quantization.advanced_parameters")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    dataset = nncf.Dataset([{INPUT_NAME: image[None].numpy()} for image in inputs])
    fixes = parameters.OverflowFix
    fix = None if overflow_fix is None else fixes.ENABLE if overflow_fix else fixes.DISABLE
    quantized = nncf.quantize(
        onnx.load(str(source)),
        dataset,
        subset_size=len(inputs),
        target_device=nncf.TargetDevice.CPU,
        advanced_parameters=parameters.AdvancedQuantizationParameters(overflow_fix=fix),
    )
    onnx.save(quantized, str(target))


def needs_reduce_range() -> bool:
    """Whether this is an x86 CPU without VNNI, whose u8 x s8 int8 kernels can saturate, so
    that weights must be quantized to 7 bits (see :func:`quantize`'s ``reduce_range``)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not torch.cpu._is_vnni_supported()


def _calibration_reader(quantization: Any, input_name: str, batches: Sequence[torch.Tensor]) -> Any:
    """An ONNX Runtime CalibrationDataReader feeding ``batches`` once each."""

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[torch.Tensor] = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch.numpy()}

    return Reader()
