"""`sepconv reproduce`: config validation, the standard twin, the resumable sweep and its table."""

from __future__ import annotations

import json
import re
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sepconv.bench.timing import Timing
from sepconv.cli import main
from sepconv.data import Compose, ImageDataset, RandomCropFlip
from sepconv.layers import make_divisible
from sepconv.reproduce import (
    RowCost,
    RowSummary,
    RunSpec,
    TwinSummary,
    build_row_model,
    cost,
    load_config,
    plan_runs,
    run_sweep,
    with_epochs,
)
from sepconv.reproduce.config import ReproduceConfig, RowConfig
from sepconv.reproduce.cost import LATENCY_BN_IMAGES, latency_model, row_cost
from sepconv.reproduce.data import SweepData, training_augment
from sepconv.reproduce.plan import longest_first
from sepconv.reproduce.render import render_markdown
from sepconv.reproduce.runs import run_identity
from sepconv.reproduce.sweep import check_results_kept
from sepconv.reproduce.table import ResultsTable
from sepconv.train import load_tensors, save_tensors

# ---------------------------------------------------------------------------- helpers


def write_idx_dataset(root: Path, n_train: int = 192, n_test: int = 64, side: int = 16) -> Path:
    """A learnable Fashion-MNIST stand-in: uint8 IDX files with a bright band per class."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=gen)
        images = torch.randint(0, 60, (n, side, side), generator=gen)
        for i, label in enumerate(labels.tolist()):
            images[i, label : label + 3] += 150  # the class is where the band lies
        header = struct.pack(">BBBBIII", 0, 0, 8, 3, n, side, side)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(
            header + images.to(torch.uint8).numpy().tobytes()
        )
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.to(torch.uint8).numpy().tobytes()
        )
    return root


SWEEP = """\
data = "fashion-mnist:{root}"
threads = 1
augment = true

[recipe]
epochs = 2
batch_size = 64
lr = 0.05
checkpoint_every = 2
eval_batch_size = 64

[latency]
batch_sizes = [1, 4]
repeats = 3
warmup = 1
max_time_s = 0.5

[[row]]
name = "sep"
model = "mobilenet_v1"
model_kwargs = {{ width_mult = 0.25 }}
seeds = 2

[[row]]
name = "conv"
model = "mobilenet_v1"
model_kwargs = {{ width_mult = 0.25 }}
twin = "standard"
note = "the standard twin of sep"
"""


def write_config(tmp_path: Path, text: str = SWEEP, name: str = "tiny") -> Path:
    root = write_idx_dataset(tmp_path / "data")
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(root=root))
    return path


# ---------------------------------------------------------------------------- config


def test_config_loads_rows_recipe_and_twin_partner(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.name == "tiny"
    assert [row.name for row in config.rows] == ["sep", "conv"]
    sep, conv = config.rows
    assert sep.recipe.epochs == 2 and sep.recipe.lr == 0.05 and sep.seeds == 2
    assert conv.seeds == 1 and conv.twin == "standard" and conv.note
    assert config.twin_partner(conv) is sep
    assert config.twin_partner(sep) is None
    assert config.latency.batch_sizes == (1, 4)


def test_random_erasing_enters_the_run_identity_only_when_on(tmp_path: Path) -> None:
    plain = load_config(write_config(tmp_path))
    erasing = load_config(
        write_config(
            tmp_path, SWEEP.replace("augment = true", "augment = true\nrandom_erasing = 0.25")
        )
    )
    assert plain.random_erasing == 0.0 and erasing.random_erasing == 0.25
    run = plan_runs(plain, tmp_path / "runs")[0]
    assert "random_erasing" not in run_identity(run, plain)
    assert run_identity(plan_runs(erasing, tmp_path / "runs")[0], erasing)["random_erasing"] == 0.25
    assert isinstance(training_augment(erasing, 28), Compose)
    assert isinstance(training_augment(plain, 28), RandomCropFlip)


def test_a_row_of_its_own_random_erasing_matches_a_sweep_with_it(tmp_path: Path) -> None:
    # One config with a row-level probability must record the same run identity as a sweep
    # that sets it for every row, so runs made either way stay interchangeable.
    per_row = load_config(
        write_config(
            tmp_path,
            SWEEP.replace("seeds = 2\n", "seeds = 2\nrandom_erasing = 0.25\n"),
            name="per_row",
        )
    )
    sweep_wide = load_config(
        write_config(
            tmp_path, SWEEP.replace("augment = true", "augment = true\nrandom_erasing = 0.25")
        )
    )
    sep, conv = per_row.rows
    assert sep.random_erasing == 0.25 and conv.random_erasing is None
    assert sep.changes["random_erasing"] == 0.25 and "random_erasing" not in conv.changes
    runs = plan_runs(per_row, tmp_path / "runs")
    wide = plan_runs(sweep_wide, tmp_path / "runs")
    assert run_identity(runs[0], per_row) == run_identity(wide[0], sweep_wide)
    assert "random_erasing" not in run_identity(runs[-1], per_row)
    assert isinstance(training_augment(per_row, 28, sep), Compose)
    assert isinstance(training_augment(per_row, 28, conv), RandomCropFlip)
    # A row with erasing is not the fair twin partner of a row without it.
    assert per_row.twin_partner(conv) is None


SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(SHIPPED_CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.rows and len({row.name for row in config.rows}) == len(config.rows)


BAD_CONFIGS = [
    ("data = 'fashion-mnist'\nepochs = 3\n", r"unknown key\(s\) 'epochs'; expected some of: data"),
    ("[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n", r"key `data` is missing"),
    (
        "data = 'fashion-mnist'\n[recipe]\nlr = 'fast'\n"
        "[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n",
        r"key `recipe.lr`: expected a value of type float, received 'fast'",
    ),
    (
        "data = 'fashion-mnist'\n[recipe]\nepochs = 2.5\n"
        "[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n",
        r"key `recipe.epochs`: expected a value of type int, received 2.5",
    ),
    (
        "data = 'fashion-mnist'\n[recipe]\nlr = -1\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n",
        r"in `recipe`: Invalid value for argument `lr`: expected > 0",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n"
        "recipe = { seed = 3 }\n",
        r"key `row\[1\].recipe.seed` is not allowed",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n"
        "model_kwargs = { width = 0.5 }\n",
        r"unknown key\(s\) 'width' in `row\[1\].model_kwargs` \(arguments of mobilenet_v1\)",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\n"
        "model_kwargs = { num_classes = 5 }\n",
        r"`row\[1\].model_kwargs.num_classes` is not allowed: the sweep sets",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v9'\n",
        r"key `row\[1\].model`: .*mobilenet_v9",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'mobilenet_v1'\ntwin = 'wide'\n",
        r"key `row\[1\].twin`: expected one of \('standard',\) or no key, received 'wide'",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'vgg16'\n"
        "[[row]]\nname = 'a'\nmodel = 'resnet50'\n",
        r"key `row\[2\].name`: expected a name no other row has, received 'a'",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a/b'\nmodel = 'vgg16'\n",
        r"key `row\[1\].name`: expected letters, digits",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'vgg16'\nseeds = 0\n",
        r"key `row\[1\].seeds`: expected an integer >= 1, received 0",
    ),
    ("data = 'fashion-mnist'\n", r"key `row`: expected at least one \[\[row\]\] table"),
    (
        "data = 'fashion-mnist'\n[latency]\nbatch_sizes = [1, 0]\n"
        "[[row]]\nname = 'a'\nmodel = 'vgg16'\n",
        r"key `latency.batch_sizes`: expected a non-empty list of positive integers",
    ),
    (
        "data = 'fashion-mnist'\nrandom_erasing = 1.5\n[[row]]\nname = 'a'\nmodel = 'vgg16'\n",
        r"key `random_erasing`: expected a number from 0 to 1, received 1.5",
    ),
    (
        "data = 'fashion-mnist'\naugment = false\nrandom_erasing = 0.5\n"
        "[[row]]\nname = 'a'\nmodel = 'vgg16'\n",
        r"key `random_erasing`: expected 0 when augment = false",
    ),
    (
        "data = 'fashion-mnist'\njobs = 0\n[[row]]\nname = 'a'\nmodel = 'vgg16'\n",
        r"key `jobs`: expected an integer >= 1, received 0",
    ),
    (
        "data = 'fashion-mnist'\n[[row]]\nname = 'a'\nmodel = 'vgg16'\nrandom_erasing = 2\n",
        r"key `row\[1\]\.random_erasing`: expected a number from 0 to 1, received 2",
    ),
    (
        "data = 'fashion-mnist'\naugment = false\n"
        "[[row]]\nname = 'a'\nmodel = 'vgg16'\nrandom_erasing = 0.5\n",
        r"key `row\[1\]\.random_erasing`: expected 0 when augment = false",
    ),
    (
        "data = 'fashion-mnist'\nimage_size = 0\n[[row]]\nname = 'a'\nmodel = 'vgg16'\n",
        r"key `image_size`: expected an integer >= 1, received 0",
    ),
    ("data = [\n", r"is not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_missing_config_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.toml not found; pass the path"):
        load_config(tmp_path / "nowhere.toml")


def test_image_size_resizes_the_subset_and_the_test_set(tmp_path: Path) -> None:
    text = SWEEP.replace("seeds = 2\n", "seeds = 2\ntrain_images = 10\n")
    config = load_config(write_config(tmp_path, "image_size = 40\n" + text))
    assert config.image_size == 40
    data = SweepData.load(config)
    assert data.input_shape == (1, 40, 40) and data.test.images.shape[-2:] == (40, 40)
    sep, conv = config.rows
    subset = data.train_set(sep)
    assert subset.images.shape == (10, 1, 40, 40)
    assert torch.equal(subset.images, ImageDataset(
        data.train.images[:10], data.train.labels[:10], data.train.classes
    ).resized(40).images)  # fmt: skip
    assert data.train_set(conv).images.shape[1:] == (1, 40, 40)
    assert load_config(write_config(tmp_path, text)).image_size is None


def test_train_images_beyond_the_split_is_refused(tmp_path: Path) -> None:
    text = SWEEP.replace("seeds = 2\n", "seeds = 2\ntrain_images = 100000\n")
    config = load_config(write_config(tmp_path, text))
    data = SweepData.load(config)
    with pytest.raises(ValueError, match=r"key `row\[1\].train_images`: expected at most 192"):
        data.train_set(config.rows[0])


def test_shipped_configs_load() -> None:
    root = Path(__file__).resolve().parent.parent / "configs"
    for name in ("reproduce_compact.toml", "reproduce_full.toml"):
        config = load_config(root / name)
        twins = [row for row in config.rows if row.twin]
        assert twins, name
        assert all(config.twin_partner(row) is not None for row in twins), name
        assert all(row.seeds >= 3 for row in twins), name
        assert {row.model for row in config.rows} >= {
            "mobilenet_v1",
            "mobilenet_v2",
            "efficientnet_b0",
            "vgg16",
            "resnet50",
        }, name


# ---------------------------------------------------------------------------- the twin


def mobilenet_v1_params(width: float, *, standard: bool, in_chans: int = 1) -> int:
    """Parameters of MobileNetV1 (Howard et al. 2017, Table 1) or its standard twin, counted
    from the architecture: 3x3 stem + BN, then per block a 3x3 depthwise conv + BN and a 1x1
    conv + BN (the twin: one 3x3 conv + BN), then a 10-way linear classifier."""
    stages = [(64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)]  # (channels, blocks)
    c = make_divisible(32 * width)
    total = in_chans * c * 9 + 2 * c
    for channels, blocks in stages:
        out = make_divisible(channels * width)
        for _ in range(blocks):
            if standard:
                total += c * out * 9 + 2 * out
            else:
                total += c * 9 + 2 * c + c * out + 2 * out
            c = out
    return total + c * 10 + 10


def test_twin_params_match_an_independent_count_and_the_7x_claim(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    data = SweepData.load(config)
    sep, conv = (row_cost(row, data) for row in config.rows)
    assert sep.params == mobilenet_v1_params(0.25, standard=False)
    assert conv.params == mobilenet_v1_params(0.25, standard=True)
    assert (sep.params, conv.params) == (215_498, 1_771_650)
    assert conv.params / sep.params >= 7 and conv.macs / sep.macs >= 7
    assert sep.separable and not conv.separable


def build(row_name: str, seed: int, config_path: Path) -> nn.Module:
    config = load_config(config_path)
    return build_row_model(config.row(row_name), seed, num_classes=10, in_chans=1, image_size=28)


def test_twin_is_built_from_the_seed_alone(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    a, b, c = build("conv", 3, path), build("conv", 3, path), build("conv", 4, path)
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(
        state_a["stages.4.1.conv_dw.conv.weight"], state_c["stages.4.1.conv_dw.conv.weight"]
    )
    assert a.training


def test_twin_new_convs_get_the_builders_init_and_share_every_other_weight(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    sep, twin = build("sep", 0, path), build("conv", 0, path)
    convs = [m for m in twin.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.groups == 1 for m in convs)
    # The 256 -> 256 standard conv of the last block: Kaiming-normal, fan-out (the builders'
    # rule), std sqrt(2 / (256 * 9)) = 0.0295; PyTorch's default would give
    # sqrt(1 / (3 * 256 * 9)) = 0.0120.
    weight = twin.get_submodule("stages.4.1.conv_dw.conv").weight.detach()
    assert tuple(weight.shape) == (256, 256, 3, 3)
    assert float(weight.std()) == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.03)
    assert float(weight.mean()) == pytest.approx(0.0, abs=1e-3)
    sep_state, twin_state = sep.state_dict(), twin.state_dict()
    shared = [k for k in twin_state if k.startswith(("stem.", "classifier."))]
    assert shared and all(torch.equal(sep_state[k], twin_state[k]) for k in shared)
    # BatchNorm statistics were not moved by the pass that found the pairs.
    assert torch.equal(twin_state["stem.bn.running_mean"], torch.zeros(8))


# ---------------------------------------------------------------------------- the sweep


def weights_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / "model.safetensors")[0]


@pytest.mark.slow
def test_sweep_resumes_interrupted_runs_bit_exactly_and_skips_finished_ones(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path))
    # Two runs at a time, each in a worker process; the runs below train one after the other
    # in this process, and must end with the same weights bit for bit.
    straight = run_sweep(
        config,
        runs_dir=tmp_path / "straight",
        out_dir=tmp_path / "out_straight",
        jobs=2,
        command="x",
    )
    assert set(straight.statuses.values()) == {"trained"}
    for run in plan_runs(config, tmp_path / "straight"):
        assert "epoch 2/2" in (run.directory / "console.log").read_text(), run.key
    straight_env = json.loads((tmp_path / "out_straight" / "environment.json").read_text())
    assert straight_env["jobs"] == 2 and straight_env["train_threads"] == 1

    # Interrupted: every run stops at step 4 of 6 (mid-epoch 2), leaving a checkpoint only.
    runs = tmp_path / "runs"
    out = tmp_path / "results"
    stopped = run_sweep(config, runs_dir=runs, out_dir=out, max_steps=4, command="x")
    assert set(stopped.statuses.values()) == {"stopped"} and not stopped.complete
    assert not out.exists()
    first_epoch = {}
    for run in plan_runs(config, runs):
        assert run.status == "partial"
        assert not (run.directory / "result.json").exists()
        first_epoch[run.key] = json.loads((run.directory / "log.jsonl").read_text().splitlines()[0])

    resumed = run_sweep(config, runs_dir=runs, out_dir=out, command="sepconv reproduce x")
    assert resumed.statuses == {
        "sep/seed0": "resumed",
        "sep/seed1": "resumed",
        "conv/seed0": "resumed",
    }
    for run in plan_runs(config, runs):
        twin_run = tmp_path / "straight" / run.row.name / f"seed{run.seed}"
        a, b = weights_of(run.directory), weights_of(twin_run)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run.key
        result = json.loads((run.directory / "result.json").read_text())
        reference = json.loads((twin_run / "result.json").read_text())
        assert result["test_acc"] == reference["test_acc"] and result["resumed"]
        # Epoch 1 was not trained again: its record, measured times included, is the one the
        # interrupted session wrote.
        assert result["history"][0] == first_epoch[run.key]
        assert result["history"][0]["epoch_time_s"] != reference["history"][0]["epoch_time_s"]
        assert [h["test_acc"] for h in result["history"]] == [
            h["test_acc"] for h in reference["history"]
        ]

    # Finished runs are skipped, and the latency measured after them is reused.
    kept = [*runs.rglob("*.safetensors"), *runs.rglob("result.json"), runs / "latency.json"]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    again = run_sweep(config, runs_dir=runs, out_dir=out, command="sepconv reproduce x")
    assert set(again.statuses.values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps

    # What was written.
    names = {p.name for p in out.iterdir()}
    assert {
        "results.json",
        "results.md",
        "acc_vs_params.png",
        "acc_vs_macs.png",
        "acc_vs_latency.png",
        "config.toml",
        "command.txt",
        "environment.json",
        "runs",
    } <= names
    for plot in ("acc_vs_params.png", "acc_vs_macs.png", "acc_vs_latency.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "config.toml").read_text() == config.text
    assert (out / "command.txt").read_text() == "sepconv reproduce x\n"
    assert (out / "runs" / "sep" / "seed1" / "log.jsonl").is_file()
    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    accs = [
        json.loads((runs / "sep" / f"seed{s}" / "result.json").read_text())["test_acc"]
        for s in (0, 1)
    ]
    assert rows["sep"]["test_acc"] == accs
    assert rows["sep"]["test_acc_mean_pct"] == pytest.approx(50 * (accs[0] + accs[1]))
    assert rows["conv"]["params"] == 1_771_650 and set(rows["conv"]["latency"]) == {"1", "4"}
    assert results["twins"][0]["separable"] == "sep"
    assert results["twins"][0]["param_ratio"] == pytest.approx(1_771_650 / 215_498)
    env = json.loads((out / "environment.json").read_text())
    assert len(env["loadavg_start"]) == 3 and env["train_threads"] == 1
    markdown = (out / "results.md").read_text()
    assert "| sep | separable | 215,498 |" in markdown
    assert "## Standard convolutions against depthwise separable ones" in markdown
    assert "the standard twin of sep" in markdown

    # A results folder keeps each run's result and log, not its weights: copied into a fresh
    # runs folder it rebuilds the table without training; a row without weights is timed on
    # initial weights.
    restored = tmp_path / "restored"
    shutil.copytree(out / "runs", restored)
    shutil.copy(runs / "sep" / "seed1" / "model.safetensors", restored / "sep" / "seed1")
    rebuilt = run_sweep(config, runs_dir=restored, out_dir=tmp_path / "rebuilt", command="x")
    assert set(rebuilt.statuses.values()) == {"skipped"}
    again_rows = json.loads((tmp_path / "rebuilt" / "results.json").read_text())["rows"]
    assert [r["test_acc"] for r in again_rows] == [
        rows["sep"]["test_acc"],
        rows["conv"]["test_acc"],
    ]
    assert [r["latency_trained_weights"] for r in again_rows] == [True, False]
    assert rows["conv"]["latency_trained_weights"] is True
    assert (
        "except `conv`, whose run folders keep no weights"
        in (tmp_path / "rebuilt" / "results.md").read_text()
    )
    assert "on the trained weights of one run per row." in markdown

    # A finished run is not reused under other settings.
    changed = config.path.read_text().replace("lr = 0.05", "lr = 0.02")
    config.path.write_text(changed)
    with pytest.raises(ValueError, match=r"sep/seed0/result.json records a run with other"):
        run_sweep(load_config(config.path), runs_dir=runs, out_dir=out)


def test_parallel_jobs_start_the_runs_with_the_most_images_first(tmp_path: Path) -> None:
    # Batches of 64, 2 epochs: sep trains 2 x 3 batches of its 192 images, conv 2 x 2 of 128;
    # at 4 epochs conv trains 4 x 2.
    text = SWEEP.replace('twin = "standard"\n', 'twin = "standard"\ntrain_images = 128\n')
    config = load_config(write_config(tmp_path, text))
    data = SweepData.load(config)
    runs = plan_runs(config, tmp_path / "runs")
    assert [r.key for r in longest_first(runs, data)] == ["sep/seed0", "sep/seed1", "conv/seed0"]
    longer = text.replace("note =", "recipe = {{ epochs = 4 }}\nnote =")
    config = load_config(write_config(tmp_path, longer))
    runs = plan_runs(config, tmp_path / "runs")
    assert [r.key for r in longest_first(runs, SweepData.load(config))] == [
        "conv/seed0",
        "sep/seed0",
        "sep/seed1",
    ]


def test_latency_model_measures_batchnorm_statistics_without_weights(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    data = SweepData.load(config)
    row = config.row("sep")
    model = latency_model(row, data)
    assert not model.training
    # The first BatchNorm's statistics, computed here by hand: the mean over batches of 128 of
    # each batch's per-channel mean of the stem conv's output on normalised training images.
    stem = data.build(row, 0).eval()
    conv = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
    images = data.train.images[:LATENCY_BN_IMAGES].float() / 255
    x = (images - images.mean()) / images.std(unbiased=False)
    with torch.no_grad():
        means = [conv(b).mean(dim=(0, 2, 3)) for b in x.split(128)]
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
    assert bn.running_mean.abs().max() > 1e-3  # not the initial zeros

    # With a run's weights it is the trained model.
    trained = data.build(row, 1)
    save_tensors(tmp_path / "model.safetensors", dict(trained.state_dict()), {})
    loaded = latency_model(row, data, tmp_path / "model.safetensors")
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), trained.state_dict().values(), strict=True)
    )


def test_latency_cache_is_reused_only_for_the_same_timed_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[tuple[str, Path | None]] = []

    def fake_measure(
        row: RowConfig, data: SweepData, latency: object, *, threads: int, weights: Path | None
    ) -> dict[int, Timing]:
        measured.append((row.name, weights))
        return {1: Timing.from_samples([1e-3], threads=threads, device="cpu")}

    monkeypatch.setattr(cost, "measure_row_latency", fake_measure)
    plain = load_config(write_config(tmp_path))
    # The same sweep, but the row trains with random erasing: other trained weights.
    erasing = load_config(
        write_config(
            tmp_path, SWEEP.replace("seeds = 2\n", "seeds = 2\nrandom_erasing = 0.25\n"), "erase"
        )
    )
    data, runs = SweepData.load(plain), tmp_path / "runs"

    def latencies(config: ReproduceConfig) -> dict[str, bool]:
        run = plan_runs(config, runs, only=["sep"])[0]
        return cost.row_latencies(config, data, {"sep": [run]}, runs, 1)[1]

    weights = runs / "sep" / "seed0" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")  # only its presence is read: the fake measurement never opens it
    assert latencies(plain) == {"sep": True} and len(measured) == 1
    assert latencies(plain) == {"sep": True} and len(measured) == 1  # reused
    latencies(erasing)
    assert measured == [("sep", weights)] * 2  # trained with erasing: measured again
    # Without weights the stand-in model is timed: initial weights, BatchNorm statistics on
    # un-augmented images; random erasing does not change it, so it is measured once.
    weights.unlink()
    assert latencies(erasing) == {"sep": False} and measured[-1] == ("sep", None)
    latencies(plain)
    assert len(measured) == 3


def test_plan_counts_rows_and_seeds(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert [r.key for r in plan_runs(config, tmp_path)] == ["sep/seed0", "sep/seed1", "conv/seed0"]
    assert [r.key for r in plan_runs(config, tmp_path, only=["conv"], seeds=2)] == [
        "conv/seed0",
        "conv/seed1",
    ]
    with pytest.raises(ValueError, match=r"expected one of sep, conv .*received 'vgg'"):
        plan_runs(config, tmp_path, only=["vgg"])
    with pytest.raises(ValueError, match=r"argument `seeds`: expected a positive integer"):
        plan_runs(config, tmp_path, seeds=0)


def test_cli_dry_run_prints_the_plan_with_measured_step_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    code = main(
        [
            "reproduce",
            str(path),
            "--dry-run",
            "--time-steps",
            "1",
            "--runs-dir",
            str(tmp_path / "r"),
            "--jobs",
            "2",
        ]
    )
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "sep" in out and "conv" in out and "0/0/2" in out
    serial = re.search(r"Estimated training time of the pending runs: ([\d.]+) min at 1 ", out)
    parallel = re.search(r"With 2 runs at a time: about ([\d.]+) min of wall time", out)
    assert serial and parallel, out
    assert float(parallel[1]) == pytest.approx(float(serial[1]) / 2, abs=0.06)
    assert not (tmp_path / "r").exists()


def test_cli_records_the_command_it_stands_for() -> None:
    from sepconv.cli import build_parser
    from sepconv.cli.reproduce import _command

    args = build_parser().parse_args(
        ["reproduce", "c.toml", "--only", "a", "b", "--threads", "2", "--jobs", "2", "--out", "o"]
    )
    assert _command(args) == "sepconv reproduce c.toml --out o --threads 2 --jobs 2 --only a b"


def test_cli_unknown_row_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["reproduce", str(write_config(tmp_path)), "--only", "vgg", "--dry-run"])
    assert code == 2
    assert "received 'vgg'" in capsys.readouterr().err


def write_finished(folder: Path, run: RunSpec, identity: dict[str, object]) -> None:
    """A finished run's result file, as a sweep leaves it in a runs or a results folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps({"row": run.row.name, "identity": identity}))


def test_a_sweep_that_would_lose_a_results_folders_runs_is_refused(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    out, empty, runs = tmp_path / "results", tmp_path / "empty", tmp_path / "runs"
    check_results_kept(config, plan_runs(config, empty), empty, out, None)  # nothing there yet
    every = plan_runs(config, runs)  # sep/seed0, sep/seed1, conv/seed0
    for run in every:
        write_finished(out / "runs" / run.key, run, run_identity(run, config))
    (out / "results.json").write_text("{}")
    # The same runs again (all planned) or the planned ones plus those finished in the runs
    # folder: the table holds every run of the folder.
    check_results_kept(config, plan_runs(config, empty), empty, out, None)
    conv_only = plan_runs(config, empty, only=["conv"])
    with pytest.raises(ValueError, match=r"sep/seed0 \(not a run .*sep/seed1") as err:
        check_results_kept(config, conv_only, empty, out, None, ("--out", "--overwrite"))
    assert str(err.value).startswith("--out: expected") and "--overwrite" in str(err.value)
    assert "conv/seed0" not in str(err.value)
    for run in every:
        write_finished(run.directory, run, run_identity(run, config))
    check_results_kept(config, plan_runs(config, runs, only=["conv"]), runs, out, None)
    # Another number of epochs trains every run differently.
    longer = with_epochs(config, 3)
    with pytest.raises(ValueError, match="conv/seed0 \\(trained differently") as err:
        check_results_kept(longer, plan_runs(longer, empty), empty, out, None)
    # (in the runs folder whose runs were trained for 2 epochs, those are refused first)
    with pytest.raises(ValueError, match="records a run with other"):
        check_results_kept(longer, plan_runs(longer, runs), runs, out, None)
    assert "overwrite=True" in str(err.value)
    # A seed the results hold beyond the sweep's own.
    extra = RunSpec(config.row("conv"), 1, runs / "conv" / "seed1")
    write_finished(out / "runs" / extra.key, extra, run_identity(extra, config))
    with pytest.raises(ValueError, match="conv/seed1"):
        check_results_kept(config, plan_runs(config, runs), runs, out, None)
    check_results_kept(config, plan_runs(config, runs, seeds=2), runs, out, 2)


def test_cli_refuses_to_replace_other_results_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    config = load_config(path)
    out = tmp_path / "results"
    for run in plan_runs(config, tmp_path / "runs"):
        write_finished(out / "runs" / run.key, run, run_identity(run, config))
    (out / "results.json").write_text('{"rows": []}')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    runs = tmp_path / "other_runs"
    # Retraining only conv in a fresh runs folder would leave sep's runs out of the table.
    command = ["reproduce", str(path), "--out", str(out), "--runs-dir", str(runs)]
    code = main([*command, "--only", "conv"])
    err = capsys.readouterr().err
    assert code == 2 and "--out: expected" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not runs.exists()  # refused before any run was started


# ---------------------------------------------------------------------------- the table


def summary(name: str, accuracies: tuple[float, ...], params: int, separable: bool) -> RowSummary:
    return RowSummary(
        name=name,
        model="mobilenet_v1",
        twin=None if separable else "standard",
        changes={},
        note="",
        cost=RowCost(params=params, macs=params * 40, separable=separable),
        seeds=tuple(range(len(accuracies))),
        accuracies=accuracies,
        train_time_s=(1.0,) * len(accuracies),
        latency={},
    )


def test_row_summary_mean_sample_std_and_range() -> None:
    row = summary("a", (0.90, 0.92, 0.94), 100, True)
    assert row.acc_mean == pytest.approx(92.0)
    assert row.acc_std == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / (3 - 1))
    assert row.acc_range == pytest.approx((90.0, 94.0))
    assert summary("b", (0.9,), 100, True).acc_std is None
    assert summary("c", (), 100, True).acc_mean is None


@pytest.mark.parametrize(
    ("separable", "standard", "verdict"),
    [
        ((0.920, 0.922), (0.924, 0.924), r"within 0.5 points \(-0.30\)"),
        ((0.910, 0.910), (0.924, 0.926), r"not within 0.5 points: the separable twin is 1.50 "),
        ((0.940, 0.940), (0.920, 0.920), r"not within .* 2.00 points higher"),
    ],
)
def test_twin_verdicts(separable: tuple, standard: tuple, verdict: str) -> None:
    twin = TwinSummary(summary("sep", separable, 200, True), summary("conv", standard, 1700, False))
    assert twin.param_ratio == pytest.approx(8.5)
    assert twin.cost_verdict == "8.5x fewer params, 8.5x fewer MACs (at least 7x)"
    assert re.search(verdict, twin.accuracy_verdict)


def test_cost_verdict_says_when_the_ratio_falls_short() -> None:
    twin = TwinSummary(summary("s", (0.9,), 200, True), summary("c", (0.9,), 1000, False))
    assert twin.cost_verdict == "5.0x fewer params, 5.0x fewer MACs (below 7x)"


def _ms(value: float) -> Timing:
    return Timing.from_samples([value / 1e3] * 3, threads=1, device="cpu")


def test_twin_ratios_each_read_their_own_cost_and_latency() -> None:
    # Params 8.5x but MACs only 5x apart, latency timed at b1 for both and at b8 for one: no
    # ratio may stand in for another, and the verdict needs both cost ratios at 7x.
    separable = replace(
        summary("sep", (0.90,), 200, True),
        cost=RowCost(params=200, macs=10_000, separable=True),
        latency={1: _ms(1.0), 8: _ms(3.0)},
    )
    standard = replace(
        summary("conv", (0.90,), 1700, False),
        cost=RowCost(params=1700, macs=50_000, separable=False),
        latency={1: _ms(4.0)},
    )
    twin = TwinSummary(separable, standard)
    assert (twin.param_ratio, twin.mac_ratio) == (8.5, 5.0)
    assert twin.cost_verdict == "8.5x fewer params, 5.0x fewer MACs (below 7x)"
    assert twin.latency_ratio(1) == 4.0 and twin.latency_ratio(8) is None
    assert twin.to_dict()["latency_ratio"] == {"1": 4.0, "8": None}
    wider = TwinSummary(
        replace(separable, cost=RowCost(params=100, macs=1_000, separable=True)),
        replace(standard, cost=RowCost(params=700, macs=9_000, separable=False)),
    )
    assert wider.cost_verdict == "7.0x fewer params, 9.0x fewer MACs (at least 7x)"
    # The rendered table prints these very ratios.
    table = ResultsTable(
        name="t", data="fashion-mnist", input_shape=(1, 28, 28), recipe={}, augment=False,
        test_images=None, rows=(separable, standard), twins=(twin,),
    )  # fmt: skip
    line = next(x for x in render_markdown(table, "h").splitlines() if x.startswith("| sep | conv"))
    assert "| 8.50x | 5.00x | 4.00x | - |" in line
