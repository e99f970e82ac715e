"""Multi-output ONNX export: every feature map, run in its own ONNX Runtime session, against
eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch
from nets import randomize_norms

from sepconv.deploy.onnx import export_onnx
from sepconv.models import create_model


def test_every_output_of_a_feature_extractor_matches_eager(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", features_only=True, small_input=True)
    model = randomize_norms(model).eval()  # BN folding then changes every weight it touches
    path = tmp_path / "features.onnx"
    export_onnx(model, path, input_size=(3, 32, 32))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(outputs) == len(expected) == len(model.feature_info) > 1
    for got, want, info in zip(outputs, expected, model.feature_info, strict=True):
        assert got.shape == tuple(want.shape)
        assert want.shape[1] == info.channels and 32 // want.shape[-1] == info.reduction
        # relative to each map's own scale: a swapped or stale output fails by far
        error = float((torch.from_numpy(got) - want).abs().max() / want.abs().max())
        assert error <= 1e-4, (info.module, error)
