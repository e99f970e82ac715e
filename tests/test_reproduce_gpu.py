"""The comparison table on a GPU: its configs, the smoke path on the CPU, the device checks,
``torch.compile`` in the trainer, time to accuracy, the GPU columns; and, on a CUDA machine,
real device runs of a few steps (``@pytest.mark.cuda``, skipped without a GPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_reproduce import write_config
from torch import nn

import sepconv.reproduce.plan as plan
import sepconv.reproduce.speed as speed
from sepconv.bench.timing import Timing, usable_cpus
from sepconv.cli import main
from sepconv.data import ImageDataset, Normalize
from sepconv.data.idx import fashion_mnist_root
from sepconv.reproduce import (
    RowCost,
    load_config,
    render_markdown,
    run_sweep,
    smoke_config,
    summarize,
    time_to_accuracy,
    with_epochs,
)
from sepconv.reproduce.plan import split_threads, steps_per_run
from sepconv.reproduce.speed import format_reached
from sepconv.train import TrainConfig, Trainer
from sepconv.train.distributed import DistributedContext
from sepconv.train.loop import compile_warm_up
from sepconv.utils.seeding import mix_seed

ROOT = Path(__file__).resolve().parents[1]
GPU_CONFIG = ROOT / "configs" / "reproduce_gpu.toml"
GPU_TRAIN = ROOT / "scripts" / "gpu-train"
HAS_FASHION = all(
    (fashion_mnist_root() / f"{stem}-ubyte.gz").is_file()
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
)
needs_fashion = pytest.mark.skipif(not HAS_FASHION, reason="needs the Fashion-MNIST .gz files")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL_ROWS = ["mobilenet_v1_025", "conv_mobilenet_v1_025"]


def _tiny_set(n: int = 128, classes: int = 3) -> ImageDataset:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 1, 12, 12), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return ImageDataset(images, labels, tuple("abc"[:classes]))


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


# ---------------------------------------------------------------------------- the configs


def test_gpu_config_trains_every_row_on_all_images_with_the_twin_pairs_at_two_widths() -> None:
    config = load_config(GPU_CONFIG)
    rows = {row.name: row for row in config.rows}
    assert config.device == "cuda" and config.jobs > 1
    assert all(row.train_images is None for row in config.rows)
    assert rows["mobilenet_v2"].model_kwargs.get("width_mult", 1.0) == 1.0
    assert rows["vgg16"].recipe.lr == 0.01
    assert rows["resnet50"].model_kwargs["zero_init_residual"] is True
    assert rows["resnet50"].recipe.warmup_epochs >= 1
    pairs = {(config.twin_partner(r).name, r.name) for r in config.rows if r.twin}  # type: ignore[union-attr]
    assert pairs == {
        ("mobilenet_v1_025", "conv_mobilenet_v1_025"),
        ("mobilenet_v1", "conv_mobilenet_v1"),
    }
    twins = [rows[name] for pair in pairs for name in pair]
    assert {row.model_kwargs.get("width_mult", 1.0) for row in twins} == {0.25, 1.0}
    # Three seeds each, on one schedule: the rows' recipes are the sweep's.
    assert all(row.seeds == 3 and row.recipe == config.recipe for row in twins)
    # The time-to-95% run is a row of the same table: MobileNetV2, compiled, its own epochs.
    fast = rows["mobilenet_v2_fast"]
    assert fast.model == "mobilenet_v2" and fast.recipe.compile and not config.recipe.compile
    assert fast.changes == {"epochs": 40, "compile": True}
    assert config.target_accuracy == 0.95


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('device = "gpu"', r"key `device`: expected 'cpu', 'cuda' or 'cuda:N', received 'gpu'"),
        ("target_accuracy = 1.5", r"key `target_accuracy`"),
    ],
)
def test_device_and_target_keys_are_checked(tmp_path: Path, line: str, message: str) -> None:
    path = write_config(tmp_path)
    path.write_text(line + "\n" + path.read_text())
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_smoke_and_epochs_variants_keep_every_row_and_pair() -> None:
    config = load_config(GPU_CONFIG)
    smoke = smoke_config(config)
    assert smoke.name == "reproduce_gpu_smoke"
    for before, after in zip(config.rows, smoke.rows, strict=True):
        assert (after.model, after.twin, after.model_kwargs) == (
            before.model,
            before.twin,
            before.model_kwargs,
        )
        assert after.seeds == 1 and after.recipe.epochs == 1
        assert after.recipe.lr == before.recipe.lr
        assert steps_per_run(after, after.train_images or 0) == 2
    assert [r.name for r in smoke.rows if smoke.twin_partner(r)] == [
        r.name for r in config.rows if config.twin_partner(r)
    ]
    shorter = with_epochs(config, 12)
    assert shorter.recipe.epochs == 12
    assert {row.recipe.epochs for row in shorter.rows} == {12}
    assert shorter.row("vgg16").recipe.lr == 0.01
    with pytest.raises(ValueError, match=r"argument `epochs`: expected a positive integer"):
        with_epochs(config, 0)


# ---------------------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config asks for cuda itself; --dry-run would time rows if it got that far.
    code = main(["reproduce", str(GPU_CONFIG), "--dry-run", "--runs-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "`--device`" in err and "no CUDA GPU" in err
    # The API checks too, before a run folder exists, --jobs or not.
    config = load_config(write_config(tmp_path))
    with pytest.raises(ValueError, match=r"argument `device`: expected a device this machine"):
        run_sweep(config, runs_dir=tmp_path / "r", out_dir=tmp_path / "o", jobs=2, device="cuda")
    assert not (tmp_path / "r").exists()


def test_parallel_runs_share_a_gpu_but_no_other_accelerator(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert split_threads(config, threads=8, jobs=4, device="cuda") == (4, 2)
    with pytest.raises(ValueError, match=r"argument `jobs`: expected 1 when training on mps"):
        split_threads(config, jobs=2, device="mps")


def test_a_config_asking_more_threads_than_cpus_gets_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    # The GPU config's 16 host threads on a machine that lets this process use 2 CPUs.
    config = replace(load_config(write_config(tmp_path)), threads=16, jobs=4)
    monkeypatch.setattr(plan, "usable_cpus", lambda: 2)
    assert split_threads(config) == (4, 1)
    assert split_threads(config, jobs=1) == (1, 2)
    assert split_threads(config, threads=16, jobs=4) == (4, 4)  # a count given is kept
    # Latency is measured at the config's count, capped the same way; a count given is kept.
    assert plan.latency_threads(config) == 2
    assert plan.latency_threads(config, threads=8) == 8
    measured_at_4 = replace(config, latency=replace(config.latency, threads=4))
    assert plan.latency_threads(measured_at_4, threads=8) == 2
    monkeypatch.setattr(plan, "usable_cpus", lambda: 64)
    assert split_threads(config) == (4, 4)
    assert plan.latency_threads(config) == 16
    assert plan.latency_threads(measured_at_4, threads=8) == 4


# ---------------------------------------------------------------------------- the trainer


def test_trainer_feeds_normalised_batches_from_the_data_on_its_device() -> None:
    train = _tiny_set()
    trainer = Trainer(_tiny_net(), TrainConfig(epochs=1, batch_size=32), train)
    assert trainer.train_set.device == trainer.ctx.device
    norm = trainer.loader.normalize
    assert isinstance(norm, Normalize)
    assert (norm.mean, norm.std) == (trainer.mean, trainer.std)
    x, y = next(iter(trainer.loader))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    # Independent oracle: the epoch-0 order of seed 0, and (x / 255 - mean) / std in float64.
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(mix_seed(0, 0)))
    index = order[:32]
    mean = torch.tensor(trainer.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(trainer.std, dtype=torch.float64).view(1, -1, 1, 1)
    expected = (train.images[index].double() / 255 - mean) / std
    assert torch.equal(y, train.labels[index])
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)


def test_compile_must_be_true_or_false() -> None:
    with pytest.raises(ValueError, match=r"argument `compile`: expected True or False"):
        TrainConfig(compile=1)  # type: ignore[arg-type]


@pytest.mark.slow
def test_compile_warm_up_leaves_weights_statistics_and_random_state_unchanged() -> None:
    trainer = Trainer(_tiny_net(), TrainConfig(epochs=1, batch_size=32, compile=True), _tiny_set())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    assert compile_warm_up(trainer.state, trainer.train_step, trainer.loader) > 0
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in trainer.model.parameters())
    history = trainer.fit()
    assert history[-1]["step"] == 4 and torch.isfinite(torch.tensor(history[-1]["train_loss"]))


# ---------------------------------------------------------------------------- time and table


def test_time_to_accuracy_counts_training_time_up_to_the_first_epoch_at_target() -> None:
    history = [
        {"epoch_time_s": 2.0, "test_acc": 0.90},
        {"epoch_time_s": 3.0, "test_acc": 0.95},
        {"epoch_time_s": 4.0, "test_acc": 0.96},
    ]
    assert time_to_accuracy(history, 0.95) == 5.0
    assert time_to_accuracy(history, 0.91) == 5.0
    assert time_to_accuracy(history, 0.97) is None
    assert format_reached([7.0, None, 5.04]) == "5.0 (2/3)"
    assert format_reached([None]) == "- (0/1)"


def test_gpu_throughput_is_the_batch_over_the_median_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Timed blocks of 1, 2 and 6 ms per call: the median is 2 ms, the fastest 1 ms, the mean 3.
    seen: list[tuple[tuple[int, ...], bool]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last)))
            return x

    def fake_measure(fn, **_: object) -> Timing:  # type: ignore[no-untyped-def]
        fn()
        return Timing.from_samples([1e-3, 2e-3, 6e-3], threads=1, device="cpu")

    monkeypatch.setattr(speed, "latency_model", lambda row, data, weights: Probe())
    monkeypatch.setattr(speed, "measure", fake_measure)
    data = SimpleNamespace(input_shape=(3, 4, 5))
    for channels_last in (True, False):
        row = SimpleNamespace(recipe=SimpleNamespace(amp="none", channels_last=channels_last))
        rate = speed.gpu_throughput(row, data, "cpu", batch=64)  # type: ignore[arg-type]
        assert rate == 64 / 2e-3
        assert seen[-1] == ((64, 3, 4, 5), channels_last)


def test_table_shows_gpu_throughput_and_time_to_target(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text("target_accuracy = 0.9\n" + path.read_text())
    config = load_config(path)
    history = [{"epoch_time_s": 1.5, "test_acc": 0.85}, {"epoch_time_s": 1.0, "test_acc": 0.92}]
    results = {
        "sep": [{"seed": 0, "test_acc": 0.92, "train_time_s": 2.5, "history": history}],
        "conv": [{"seed": 0, "test_acc": 0.85, "train_time_s": 2.5, "history": history[:1]}],
    }
    costs = {
        "sep": RowCost(params=10, macs=100, separable=True),
        "conv": RowCost(params=80, macs=800, separable=False),
    }
    table = summarize(
        config,
        results,
        costs,
        {},
        input_shape=(1, 16, 16),
        gpu_throughput={"sep": 12345.6},
        gpu="NVIDIA H200",
    )
    text = render_markdown(table, "header")
    assert "GPU img/s b256" in text and "s to 90%" in text and "on NVIDIA H200" in text
    sep_line = next(line for line in text.splitlines() if line.startswith("| sep |"))
    conv_line = next(line for line in text.splitlines() if line.startswith("| conv |"))
    assert "| 12,346 |" in sep_line and "| 2.5 (1/1) |" in sep_line
    assert "| - (0/1) |" in conv_line
    row = table.to_dict()["rows"][0]
    assert row["gpu_images_per_s_b256"] == 12345.6 and row["time_to_target_s"] == [2.5]


# ---------------------------------------------------------------------------- smoke runs


@needs_fashion
def test_smoke_run_of_the_gpu_config_passes_on_the_cpu(tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    args = ["reproduce", str(GPU_CONFIG), "--device", "cpu", "--smoke", "--only", *SMALL_ROWS]
    code = main(
        [*args, "--jobs", "1", "--threads", "2", "--runs-dir", str(runs), "--out", str(out)]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["name"] == "reproduce_gpu_smoke" and results["target_accuracy"] == 0.95
    rows = {row["name"]: row for row in results["rows"]}
    for name in SMALL_ROWS:
        assert rows[name]["seeds"] == [0] and len(rows[name]["time_to_target_s"]) == 1
        result = json.loads((runs / name / "seed0" / "result.json").read_text())
        assert (result["steps"], result["train_images"], result["device"]) == (2, 64, "cpu")
        assert result["train_time_s"] == sum(r["epoch_time_s"] for r in result["history"])
    assert "s to 95%" in (out / "results.md").read_text()
    assert json.loads((out / "environment.json").read_text())["device"] == "cpu"


@pytest.mark.cuda
@needs_cuda
def test_trainer_on_cuda_keeps_the_data_there_and_learns() -> None:
    device = torch.device("cuda")
    context = DistributedContext(rank=0, world_size=1, device=device)
    train, test = _tiny_set(256), _tiny_set(64)
    trainer = Trainer(
        _tiny_net(), TrainConfig(epochs=2, batch_size=32), train, test, context=context
    )
    assert trainer.train_set.images.is_cuda and trainer.train_set.labels.is_cuda
    x, y = next(iter(trainer.loader))
    assert x.is_cuda and y.is_cuda
    history = trainer.fit()
    assert history[-1]["step"] == 16 and 0.0 <= history[-1]["test_acc"] <= 1.0
    assert trainer.bf16 == torch.cuda.is_bf16_supported()


@pytest.mark.cuda
@needs_cuda
def test_compiled_training_on_cuda_runs_a_few_steps() -> None:
    context = DistributedContext(rank=0, world_size=1, device=torch.device("cuda"))
    cfg = TrainConfig(epochs=1, batch_size=32, compile=True)
    trainer = Trainer(_tiny_net(), cfg, _tiny_set(256), context=context)
    trainer.fit(max_steps=3)
    assert trainer.global_step == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.cuda
@needs_cuda
@needs_fashion
def test_smoke_sweep_on_cuda_with_two_jobs_sharing_the_gpu(tmp_path: Path) -> None:
    out, runs, plan = tmp_path / "out", tmp_path / "runs", tmp_path / "plan.json"
    args = ["reproduce", str(GPU_CONFIG), "--smoke", "--only", *SMALL_ROWS, "--runs-dir", str(runs)]
    assert main([*args, "--dry-run", "--time-steps", "2", "--plan-json", str(plan)]) == 0
    timed = json.loads(plan.read_text())
    assert all(row["step_s"] > 0 for row in timed["rows"]) and "cuda" in timed["device"]
    assert main([*args, "--jobs", "2", "--threads", "4", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert all(row["gpu_images_per_s_b256"] > 0 for row in results["rows"] if row["seeds"])
    assert results["gpu"] == torch.cuda.get_device_name()
    environment = json.loads((out / "environment.json").read_text())["environment"]
    assert environment["gpu"] == torch.cuda.get_device_name() and environment["cuda_runtime"]
    assert "GPU img/s b256" in (out / "results.md").read_text()
    for name in SMALL_ROWS:
        result = json.loads((runs / name / "seed0" / "result.json").read_text())
        assert result["device"].startswith("cuda")


# ---------------------------------------------------------------------------- the phases


def _gpu_train(*args: str, records: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``scripts/gpu-train`` on the CPU at smoke size, with this interpreter."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SEPCONV_FASHION_MNIST": str(fashion_mnist_root()),
    }
    extra = ["--records", str(records)] if records else []
    return subprocess.run(
        ["bash", str(GPU_TRAIN), "--smoke", "--allow-cpu", *extra, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )


def test_gpu_train_refuses_an_unknown_phase_naming_the_flag() -> None:
    result = _gpu_train("--phase", "table-9")
    assert result.returncode == 2
    assert "--phase" in result.stderr and "'table-9'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@needs_fashion
def test_a_phase_resumes_from_the_records_an_earlier_phase_brought_back(tmp_path: Path) -> None:
    # What phase table-2 brought back, as a commit keeps it (tests/data/gpu_train_records/).
    records = tmp_path / "records"
    shutil.copytree(ROOT / "tests" / "data" / "gpu_train_records", records)
    listed = _gpu_train("--list", records=records)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert lines["table-2"] == "2/2" and lines["table-1"] == "0/2"
    # `next` is the first phase with a run the records lack; the finished runs are skipped.
    second = _gpu_train("--out", str(tmp_path / "two"), records=records)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "phase table-1" in second.stdout
    with tarfile.open(tmp_path / "two" / "reproduce_gpu_smoke.tar.gz") as archive:
        archive.extractall(tmp_path / "merged", filter="data")
    merged = tmp_path / "merged"
    # What comes back is what a commit keeps: each finished run's record and log, no weights.
    kept = sorted(p.relative_to(merged / "runs").as_posix() for p in (merged / "runs").rglob("*.*"))
    assert kept == [
        f"{row}/seed0/{name}"
        for row in ("conv_mobilenet_v1_025", "efficientnet_b0", "mobilenet_v1_025", "mobilenet_v2")
        for name in ("log.jsonl", "result.json")
    ]
    results = json.loads((merged / "results.json").read_text())
    seeds = {row["name"]: row["seeds"] for row in results["rows"]}
    assert seeds["mobilenet_v1_025"] == [0] and seeds["mobilenet_v2"] == [0]
    assert seeds["mobilenet_v1"] == []
    for row in ("mobilenet_v1_025", "conv_mobilenet_v1_025"):  # not trained again
        before = (records / "runs" / row / "seed0" / "result.json").read_text()
        assert (merged / "runs" / row / "seed0" / "result.json").read_text() == before
    phases = (merged / "phases.md").read_text().splitlines()
    assert [line.split(" | ")[1] for line in phases if line.startswith("| 20")] == [
        "table-2",
        "table-1",
    ]
