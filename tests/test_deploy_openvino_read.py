"""OpenVINO reads sepconv's ONNX files with its native reader: the graph ``convert_model``
would give, without the conversion tool's usage telemetry running on while candidates are timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nets import mbconv_net, randomize_norms

from sepconv.deploy import export_onnx, load_onnx, quantize
from sepconv.deploy.backends import read_onnx_graph

ov = pytest.importorskip("openvino")

SHAPE = (2, 1, 28, 28)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    net = randomize_norms(mbconv_net(1)).eval()
    folder = tmp_path_factory.mktemp("openvino_read")
    fp32 = folder / "net.onnx"
    export_onnx(net, fp32, input_size=SHAPE[1:])
    int8 = folder / "net.int8.onnx"
    calibration = torch.randn(16, *SHAPE[1:], generator=torch.Generator().manual_seed(1))
    quantize(net, calibration, int8, num_samples=16, threads=1)
    return {"fp32": fp32, "int8": int8}


def _outputs(graph: object, x: np.ndarray) -> np.ndarray:
    graph.reshape(list(SHAPE))  # type: ignore[attr-defined]
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(graph, "CPU", config)
    return np.array(compiled.create_infer_request().infer({0: x})[0], copy=True)


def test_native_reader_computes_what_convert_model_does(files) -> None:
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    outputs = {
        kind: (_outputs(read_onnx_graph(path), x), _outputs(ov.convert_model(str(path)), x))
        for kind, path in files.items()
    }
    for read, _ in outputs.values():
        assert read.shape == (2, 10) and np.isfinite(read).all() and read.std() > 0
    # fp32: the same graph, bit for bit.
    assert np.array_equal(*outputs["fp32"])
    # int8: convert_model folds the dequantisation before the plugin sees the graph, which
    # changes how the plugin runs it; on this small network only the last bits move.
    read, converted = outputs["int8"]
    assert np.abs(read - converted).max() <= 1e-5 * np.abs(converted).max()


def test_openvino_backend_sends_no_usage_telemetry(files, monkeypatch) -> None:
    telemetry = pytest.importorskip("openvino_telemetry")
    events: list[tuple[object, ...]] = []
    send = telemetry.Telemetry.send_event

    def counted(self: object, *args: object, **kwargs: object) -> object:
        events.append(args)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(telemetry.Telemetry, "send_event", counted)
    model = load_onnx(files["fp32"], backend="openvino", batch_size=2, threads=1)
    assert model.backend == "openvino" and model(torch.zeros(SHAPE)).shape == (2, 10)
    assert events == []
    # The same spy sees the conversion tool's events, so the empty list above means something.
    ov.convert_model(str(files["fp32"]))
    assert events
