"""ONNX Runtime's int8 quantizer as sepconv calls it, for the int8 benchmarks
(``int8_recipes.py``, ``int8_layers.py``): the quantizer call with sepconv's settings and the
reader that feeds it calibration images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from onnxruntime import quantization

from sepconv.deploy.quantize import needs_reduce_range

CHUNK = 250  # images per call when scoring (calibration and test counts are multiples of it)


def quantize_file(
    prepared: Path, out: Path, data: quantization.CalibrationDataReader, **options: Any
) -> None:
    """ONNX Runtime's ``quantize_static`` of the pre-processed fp32 file ``prepared`` into
    ``out`` with sepconv's settings (QDQ, MinMax ranges, per-channel int8 weights, uint8
    activations, 7-bit where the CPU needs it: ``sepconv.deploy.quantize``), ``options`` on
    top."""
    quantization.quantize_static(
        str(prepared), str(out), data,
        quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        reduce_range=needs_reduce_range(),
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        **{"calibrate_method": quantization.CalibrationMethod.MinMax, **options},
    )  # fmt: skip


def reader(images: torch.Tensor, chunk: int = CHUNK) -> quantization.CalibrationDataReader:
    """Feed ``images`` in equal chunks (the histogram methods need equal batch shapes): of
    ``chunk`` images where that divides them, else all at once."""
    chunks = images.split(chunk) if len(images) % chunk == 0 else (images,)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[torch.Tensor] = iter(chunks)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch.numpy()}

    return Reader()
