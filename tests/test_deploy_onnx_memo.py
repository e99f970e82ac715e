"""export_onnx remembers its translations: the same model exported again is not traced again, and
a remembered graph is still checked against the model (real ONNX Runtime sessions)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sepconv import export_onnx
from sepconv.deploy import onnx as onnx_export
from sepconv.deploy.onnx_memo import TranslationMemo, fingerprint

SIZE = (3, 8, 8)


class Scaled(nn.Module):
    """A conv whose output is scaled by a plain attribute: a change no fingerprint sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


@pytest.fixture
def captures(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the model captures (``torch.export.export``) from here on, with an empty memo."""
    onnx_export.TRANSLATIONS.clear()
    calls: list[int] = []
    real = torch.export.export

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", counted)
    return calls


def ort_output(path, x: torch.Tensor) -> np.ndarray:  # type: ignore[no-untyped-def]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def test_the_same_model_again_reuses_the_translation(tmp_path, captures):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    first = export_onnx(model, tmp_path / "a.onnx", input_size=SIZE)
    again = export_onnx(model, tmp_path / "b.onnx", input_size=SIZE)
    assert len(captures) == 1
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert again.max_rel_error == first.max_rel_error and set(again.max_rel_error) == {1, 8}
    # Other options are another translation.
    export_onnx(model, tmp_path / "c.onnx", input_size=SIZE, dynamic_batch=False)
    export_onnx(model, tmp_path / "d.onnx", input_size=(3, 9, 9))
    assert len(captures) == 3


def test_changed_weights_are_translated_afresh(tmp_path, captures):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    export_onnx(model, tmp_path / "a.onnx", input_size=SIZE)
    with torch.no_grad():
        model[0].weight.mul_(-2.0)
    export_onnx(model, tmp_path / "b.onnx", input_size=SIZE)
    assert len(captures) == 2
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(ort_output(tmp_path / "b.onnx", x), expected, rtol=1e-4, atol=1e-5)


def test_a_change_the_fingerprint_cannot_see_fails_the_check_and_is_translated_afresh(
    tmp_path, captures
):
    torch.manual_seed(0)
    model = Scaled().eval()
    export_onnx(model, tmp_path / "a.onnx", input_size=SIZE)
    key = fingerprint(model)
    model.scale = 3.0
    assert fingerprint(model) == key  # invisible to it ...
    export_onnx(model, tmp_path / "b.onnx", input_size=SIZE)
    assert len(captures) == 2  # ... but the remembered graph failed its check
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(ort_output(tmp_path / "b.onnx", x), expected, rtol=1e-4, atol=1e-5)
    # The fresh translation replaced the stale one.
    export_onnx(model, tmp_path / "c.onnx", input_size=SIZE)
    assert len(captures) == 2


def test_fingerprint_sees_structure_weights_and_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    key = fingerprint(model, 1)
    assert fingerprint(model, 1) == key and fingerprint(model, 2) != key
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())
    strided[0].load_state_dict(model[0].state_dict())
    assert fingerprint(strided, 1) != key
    assert fingerprint(nn.Sequential(model[0], nn.ReLU6()), 1) != key
    assert fingerprint(model.eval(), 1) != key
    with torch.no_grad():
        model[0].bias[0] += 1e-6
    assert fingerprint(model, 1) not in (key, fingerprint(model.train(), 1))


def test_memo_keeps_the_most_recent_within_its_bytes():
    memo = TranslationMemo(max_bytes=100)
    memo.put("a", b"x" * 20)
    memo.put("b", b"x" * 20)
    memo.put("big", b"x" * 26)  # over a quarter: not kept
    assert memo.get("big") is None and len(memo) == 2
    assert memo.get("a") is not None  # "a" is now the most recent
    for key in "cde":
        memo.put(key, b"x" * 20)
    memo.put("f", b"x" * 5)  # 105 bytes: the least recently used ("b") goes
    assert memo.get("b") is None and memo.get("a") is not None and len(memo) == 5
    memo.discard("a")
    assert memo.get("a") is None
    memo.clear()
    assert len(memo) == 0


def test_weights_larger_than_a_memo_entry_are_not_fingerprinted():
    memo = TranslationMemo(max_bytes=4 * 4 * 100)
    assert memo.key(nn.Linear(10, 9)) is not None  # 99 floats
    assert memo.key(nn.Linear(10, 10)) is None  # 110 floats: more than a quarter
