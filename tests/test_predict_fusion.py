"""Fusions read from ONNX Runtime's own plan of each test case, and the verdicts' record."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sepconv.predict import Kernel
from sepconv.predict.fusion import FUSION_CASES, FusionVerdict, detect_fusions
from sepconv.predict.timers import OnnxTimer


def test_a_plan_judges_every_case_and_nothing_is_timed() -> None:
    def never_timed(kernels: Sequence[Kernel]) -> float:
        raise AssertionError("timed a test case the plan had judged")

    def plan(kernels: Sequence[Kernel]) -> bool:
        return kernels[1].kind == "add" or kernels[1].act in ("relu", "relu6")

    fused, verdicts = detect_fusions(never_timed, plan_fuses=plan)
    assert fused == ["conv+relu", "conv+relu6", "conv+add"]
    assert len(verdicts) == len(FUSION_CASES)
    record = verdicts[0].to_dict()
    assert record["method"] == "plan" and record["fused"] is True
    assert record["saved_share"] is None and record["pair_s"] is None
    # A runtime whose plan cannot be read (None) is timed as before.
    timed = detect_fusions(lambda ks: 1.0 if len(ks) == 2 else 0.5, plan_fuses=lambda ks: None)
    assert all(v.to_dict()["method"] == "timing" for v in timed[1])
    assert FusionVerdict("conv+relu", 1.0, 1.0, 1.2).fused  # saved 80% of the second op


def test_onnxruntime_plans_its_fusions_as_inside_a_model() -> None:
    pytest.importorskip("onnxruntime")
    timer = OnnxTimer("onnxruntime", 1)
    try:
        fused, verdicts = detect_fusions(timer.isolated, plan_fuses=timer.plan_fuses)
    finally:
        timer.close()
    assert all(v.planned is not None for v in verdicts)
    # Between convs in its blocked layout ONNX Runtime folds these into the conv kernel (an
    # activation attribute, the residual as a summed input) ...
    for rule in ("conv+relu", "conv+relu6", "conv+sigmoid", "conv+hardsigmoid", "conv+add"):
        assert rule in fused
    # ... and runs SiLU (Sigmoid, Mul: one QuickGelu kernel) and GELU on their own.
    assert "conv+silu" not in fused and "conv+gelu" not in fused


def test_openvinos_plan_is_not_read_so_its_cases_are_timed() -> None:
    pytest.importorskip("openvino")
    timer = OnnxTimer("openvino", 1)
    try:
        assert timer.plan_fuses([FUSION_CASES[0].first, FUSION_CASES[0].second]) is None
    finally:
        timer.close()
