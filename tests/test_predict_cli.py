"""``sepconv calibrate``, ``predict`` and ``pick`` on the command line, with a profile of the
synthetic machine of test_predict.py: ``--json`` prints only JSON, the picker ranks by top-1
under the budget, and a user's mistake is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_predict import fake_calibration

from sepconv.cli import main
from sepconv.predict import PUBLISHED, Profile, pick


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "fake.json"
    fake_calibration(max_kernels=900, seed=7).save(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_json_prints_only_json(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "predict",
        "mobilenet_v2",
        "--profile",
        str(profile_file),
        "--width-mult",
        "0.5",
        "--input-size",
        "160",
        "--json",
    )
    assert code == 0 and err == ""
    data = json.loads(out)  # nothing else on stdout
    assert data["input_shape"] == [1, 3, 160, 160] and data["predicted_ms"] > 0
    assert data["predicted_ms"] == data["batch1_ms"]
    code, out, _ = run(
        capsys,
        "predict",
        "mobilenet_v2",
        "--profile",
        str(profile_file),
        "--batch-size",
        "4",
        "--per-layer",
        "--json",
    )
    data = json.loads(out)
    assert data["input_shape"] == [4, 3, 224, 224] and data["predicted_ms"] > data["batch1_ms"]
    assert len(data["per_kernel"]) == data["kernels"] == 54
    assert data["per_kernel"][0]["layer"] == "stem.conv"


def test_predict_table(profile_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "predict",
        "efficientnet_b0",
        "--profile",
        str(profile_file),
        "--batch-size",
        "2",
        "--per-layer",
    )
    assert code == 0
    assert "efficientnet_b0 at 224x224: predicted latency" in out
    assert "stages.0.0.se" in out and "nothing was run" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--width-mult", "0.5", "--backend", "eager"],
            "calibrated for backend 'onnxruntime', not 'eager'",
        ),
        (["--threads", "1"], r"with 2 thread\(s\), not 1"),
        (["--input-size", "0"], "`--input-size`: expected a positive integer, received 0"),
        (["--batch-size", "-2"], "`--batch-size`: expected a positive integer, received -2"),
    ],
)
def test_predict_mistakes_are_one_line(
    profile_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "predict", "mobilenet_v2", "--profile", str(profile_file), *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("sepconv predict: error: ")
    assert pytest.importorskip("re").search(message, err), err


def test_width_mult_where_the_name_fixes_it(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "predict", "efficientnet_b0", "--profile", str(profile_file), "--width-mult", "2"
    )
    assert code == 2 and "`--width-mult`: expected no value" in err


def test_a_tampered_or_missing_profile_is_one_line(
    profile_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(profile_file.read_text())
    data["threads"] = 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, _, err = run(capsys, "pick", "--budget-ms", "5", "--profile", str(bad))
    assert code == 2 and "does not match its checksum" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "predict", "mobilenet_v1", "--profile", str(tmp_path / "no.json"))
    assert code == 2 and "does not exist" in err


def test_pick_ranks_by_top1_under_the_budget(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = Profile.load(profile_file)
    within, over = pick(1e9, profile)
    times = sorted(c.ms for c in within)
    budget = times[len(times) // 3]  # a third of the configurations fit
    within, over = pick(budget, profile)
    assert within and over and len(within) + len(over) == len(PUBLISHED)
    assert all(c.ms <= budget for c in within) and all(c.ms > budget for c in over)
    top1 = [c.config.top1 for c in within]
    assert top1 == sorted(top1, reverse=True)
    code, out, err = run(
        capsys, "pick", "--budget-ms", str(budget), "--profile", str(profile_file), "--json"
    )
    data = json.loads(out)
    assert code == 0 and err == ""
    assert data["chosen"]["top1"] == max(top1) and data["chosen"]["predicted_ms"] <= budget
    assert data["chosen"]["source"] and data["measured_ms"] is None
    code, out, _ = run(capsys, "pick", "--budget-ms", str(budget), "--profile", str(profile_file))
    assert code == 0 and f"chosen: {within[0].config.label}" in out


def test_pick_under_an_impossible_budget(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "pick", "--budget-ms", "1e-6", "--profile", str(profile_file))
    assert code == 0 and "no published configuration is predicted under" in out


def test_calibrate_refuses_a_backend_it_cannot_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "calibrate",
        "--backend",
        "compile",
        "--threads",
        "2",
        "--out",
        str(tmp_path / "p.json"),
    )
    assert code == 2 and "a backend whose kernels can be timed on cpu" in err
    code, _, err = run(
        capsys, "calibrate", "--backend", "onnxruntim", "--out", str(tmp_path / "p.json")
    )
    assert code == 2 and "did you mean 'onnxruntime'" in err
    code, _, err = run(capsys, "calibrate", "--budget-s", "5", "--out", str(tmp_path / "p.json"))
    assert code == 2 and "`--budget-s`: expected a number of seconds from 20" in err
    code, _, err = run(
        capsys, "calibrate", "--backend", "eager", "--profiler", "--out", str(tmp_path / "p.json")
    )
    assert code == 2 and "`--profiler`: expected --backend onnxruntime" in err
    assert "Traceback" not in err
    assert not (tmp_path / "p.json").exists()
