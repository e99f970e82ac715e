"""The profile file: a round trip keeps every measurement; a file of another machine, backend
or thread count, or one modified, truncated or of another format, is refused, saying why."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_predict import fake_calibration

import sepconv
from sepconv.predict import Profile, ProfileError, predict_latency
from sepconv.predict.profile import _digest


@pytest.fixture(scope="module")
def profile() -> Profile:
    return fake_calibration(max_kernels=300, seed=5)


@pytest.fixture
def saved(profile: Profile, tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    profile.save(path)
    return path


def test_round_trip_keeps_everything(profile: Profile, saved: Path) -> None:
    loaded = Profile.load(saved)
    for name in ("backend", "device", "threads", "variants", "fusions", "call_s", "budget_s"):
        assert getattr(loaded, name) == getattr(profile, name), name
    assert loaded.samples == profile.samples
    assert loaded.machine == profile.machine and loaded.validation == profile.validation
    model = sepconv.mobilenet_v2(width_mult=0.5)
    assert predict_latency(model, 128, saved).seconds == pytest.approx(
        predict_latency(model, 128, profile).seconds, rel=1e-12
    )


def test_another_backend_or_thread_count_is_refused(profile: Profile) -> None:
    with pytest.raises(ProfileError, match="calibrated for backend 'onnxruntime', not 'eager'"):
        profile.check_here(backend="eager")
    with pytest.raises(ProfileError, match=r"with 2 thread\(s\), not 4; .*--threads 4"):
        profile.check_here(threads=4)
    profile.check_here(backend="onnxruntime", threads=2)


def test_another_machine_is_refused(profile: Profile, tmp_path: Path) -> None:
    elsewhere = replace(profile, machine={**profile.machine, "cpu": "Some Other CPU"})
    path = tmp_path / "elsewhere.json"
    elsewhere.save(path)  # a valid file, of another machine
    with pytest.raises(
        ProfileError, match=r"cpu: 'Some Other CPU' there, .* run `sepconv calibrate`"
    ):
        predict_latency(sepconv.mobilenet_v1(), 128, path)
    newer = replace(profile, machine={**profile.machine, "runtime_version": "0.0.1"})
    with pytest.raises(ProfileError, match=r"runtime_version: '0\.0\.1' there"):
        newer.check_here()


def test_a_modified_file_is_refused(saved: Path) -> None:
    data = json.loads(saved.read_text())
    data["samples"][0]["seconds"]["native"] *= 0.5  # a faster machine, typed in
    saved.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="does not match its checksum: it was modified"):
        Profile.load(saved)


def test_truncated_foreign_and_missing_files_are_refused(saved: Path, tmp_path: Path) -> None:
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])
    with pytest.raises(ProfileError, match=r"profile\.json' is not valid JSON .* truncated"):
        Profile.load(saved)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"weights": [1, 2]}))
    with pytest.raises(ProfileError, match="is not a sepconv latency profile"):
        Profile.load(other)
    with pytest.raises(ProfileError, match=r"missing\.json' does not exist; .*sepconv calibrate"):
        Profile.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threads", "two", "threads should be an integer from 1 to 1024, found 'two'"),
        ("call_s", {"native": 1e9}, r"call_s\['native'\] should be a finite number"),
        ("variants", "native", "variants should be a list"),
    ],
)
def test_a_damaged_field_is_named(saved: Path, field: str, value: object, message: str) -> None:
    data = json.loads(saved.read_text())
    data[field] = value
    body = {k: v for k, v in data.items() if k != "sha256"}
    data["sha256"] = _digest(body)
    saved.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message):
        Profile.load(saved)


def test_infinity_is_no_measurement(saved: Path) -> None:
    saved.write_text(saved.read_text().replace('"budget_s": 60.0', '"budget_s": Infinity'))
    with pytest.raises(ProfileError, match="Infinity is not a number a profile may hold"):
        Profile.load(saved)


def test_a_damaged_kernel_is_named(saved: Path) -> None:
    data = json.loads(saved.read_text())
    data["samples"][3]["kernel"]["output"] = [1, -8, 4, 4]
    data["sha256"] = _digest({k: v for k, v in data.items() if k != "sha256"})
    saved.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="a kernel's output shape should be an integer"):
        Profile.load(saved)
