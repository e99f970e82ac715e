"""Loaders on files written here in the real formats, augmentation and batching."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sepconv.data import (
    BatchLoader,
    Compose,
    ImageDataset,
    RandomCropFlip,
    RandomErasing,
    channel_stats,
    default_augment,
    load_cifar,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from sepconv.data.idx import FASHION_MNIST_DEFAULT_ROOT, FASHION_MNIST_ENV


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written from the format description, independent of the reader."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> dict:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, (n,), dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            raw = idx_bytes(arr)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_round_trip(tmp_path: Path, gz: bool) -> None:
    data = write_fashion_mnist(tmp_path, gz=gz)
    train = load_fashion_mnist("train", tmp_path)
    test = load_fashion_mnist("test", tmp_path)
    assert train.images.shape == (20, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert np.array_equal(train.images[:, 0].numpy(), data["train"][0])
    assert np.array_equal(test.labels.numpy(), data["t10k"][1].astype(np.int64))
    assert train.classes[0] == "T-shirt/top" and train.num_classes == 10


def test_fashion_mnist_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion_mnist(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert len(load_fashion_mnist("test")) == 10
    assert len(load_dataset("fashion-mnist", "train")) == 20


def test_fashion_mnist_missing_names_place_and_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist") as err:
        load_fashion_mnist("train", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + idx_bytes(np.zeros((2, 3, 3), np.uint8))[2:])
    with pytest.raises(ValueError, match=r"bad-idx3-ubyte has a bad magic number"):
        read_idx(path)


def test_idx_wrong_dimension_count(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"declares 2 dimensions, expected 1"):
        read_idx(path, expected_ndim=1)


def test_idx_truncated_and_overlong(tmp_path: Path) -> None:
    raw = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    short, long = tmp_path / "short", tmp_path / "long"
    short.write_bytes(raw[:-5])
    long.write_bytes(raw + b"\0")
    with pytest.raises(
        ValueError, match=r"short is truncated: header declares shape \(4, 28, 28\)"
    ):
        read_idx(short)
    with pytest.raises(ValueError, match=r"longer than its header says"):
        read_idx(long)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))[:-12])
    with pytest.raises(ValueError, match=r"x-idx3-ubyte.gz is not a readable gzip stream"):
        read_idx(path)


def test_fashion_mnist_count_mismatch(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(ValueError, match=r"holds 10 images but .* holds 9 labels"):
        load_fashion_mnist("test", tmp_path)


@pytest.mark.skipif(
    not (FASHION_MNIST_DEFAULT_ROOT / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    # Xiao et al. 2017, Table 1 / README: 60,000 + 10,000 images, 28x28, balanced classes.
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def write_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    """CIFAR-10 python layout: pickled dicts with bytes keys (what ``pickle.load(f,
    encoding='bytes')`` returns for the published files)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    all_data, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batch = {b"batch_label": name.encode(), b"data": data, b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        if name != "test_batch":
            all_data.append(data)
            all_labels += labels
    return np.concatenate(all_data), all_labels


def test_cifar10_round_trip(tmp_path: Path) -> None:
    data, labels = write_cifar10(tmp_path)
    train = load_cifar(tmp_path, "train")
    assert train.images.shape == (20, 3, 32, 32) and train.classes[3] == "class3"
    # Channel-major rows: the first 1024 bytes are the red plane, row by row.
    assert np.array_equal(train.images[5, 0].numpy().ravel(), data[5, :1024])
    assert np.array_equal(train.images[7, 2, 31].numpy(), data[7, 3072 - 32 :])
    assert train.labels.tolist() == labels
    assert len(load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "test")) == 4


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"c{i}" for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    data = np.full((3, 3072), 7, np.uint8)
    for split in ("train", "test"):
        batch = {b"data": data, b"fine_labels": [99, 0, 5], b"coarse_labels": [1, 2, 3]}
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    ds = load_cifar(tmp_path, "test", variant="cifar100")
    assert ds.labels.tolist() == [99, 0, 5] and ds.num_classes == 100


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.getcwd, ())


def test_cifar_refuses_foreign_globals(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch references posix.getcwd|references nt"):
        load_cifar(tmp_path, "test")


def test_cifar_truncated_and_wrong_shape(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"data_batch_2 is truncated or corrupt"):
        load_cifar(tmp_path, "train")
    batch = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"expected b'data' as uint8 of shape \(N, 3072\)"):
        load_cifar(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"batches.meta not found"):
        load_cifar(tmp_path / "empty", "test")


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    pixels = {}
    for cls in ("dog", "cat"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
            pixels[(cls, i)] = arr
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = load_image_folder(tmp_path, size=8)
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(ds.images[4].permute(1, 2, 0).numpy(), pixels[("dog", 1)])
    grey = load_image_folder(tmp_path, size=(4, 6), mode="L")
    assert grey.images.shape == (6, 1, 4, 6)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no images in class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"broken.png cannot be decoded"):
        load_image_folder(tmp_path)


def test_channel_stats_match_numpy() -> None:
    images = torch.randint(0, 256, (9, 3, 5, 7), dtype=torch.uint8)
    mean, std = channel_stats(images)
    ref = images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-10)
    with pytest.raises(ValueError, match=r"argument `images`: expected a uint8 tensor"):
        channel_stats(images.float())


def test_crop_flip_matches_per_image_reference() -> None:
    images = torch.randint(0, 256, (16, 2, 6, 5), dtype=torch.uint8)
    aug = RandomCropFlip(padding=2, flip=True)
    params = aug.sample(16, (6, 5), torch.Generator().manual_seed(3))
    out = aug.apply(images, params)
    for i in range(16):
        padded = F.pad(images[i], (2, 2, 2, 2))
        top, left = int(params.top[i]), int(params.left[i])
        ref = padded[:, top : top + 6, left : left + 5]
        if params.flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    assert params.flip.any() and not params.flip.all()


def test_crop_without_flip_never_mirrors() -> None:
    aug = RandomCropFlip(padding=0, flip=False)
    images = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    params = aug.sample(4, (5, 5), torch.Generator().manual_seed(0))
    assert torch.equal(aug.apply(images, params), images)
    with pytest.raises(ValueError, match=r"argument `padding`: .* received -1"):
        RandomCropFlip(padding=-1)


def test_random_erasing_matches_per_image_reference() -> None:
    images = torch.randint(0, 256, (64, 3, 9, 7), dtype=torch.uint8)
    aug = RandomErasing(p=0.5)
    params = aug.sample(64, (9, 7), torch.Generator().manual_seed(1))
    out = aug.apply(images, params)
    for i in range(64):
        ref = images[i].clone()
        top, left = int(params.top[i]), int(params.left[i])
        height, width = int(params.height[i]), int(params.width[i])
        assert height >= 1 and top + height <= 9 and width >= 1 and left + width <= 7
        if params.erase[i]:
            ref[:, top : top + height, left : left + width] = params.noise[
                i, 0, top : top + height, left : left + width
            ]
        assert torch.equal(out[i], ref)
    assert params.erase.any() and not params.erase.all()


def test_random_erasing_rectangle_size_and_rate() -> None:
    # A quarter of a 28x28 image at aspect ratio 1 is a 14x14 square.
    square = RandomErasing(p=1.0, area=(0.25, 0.25), ratio=1.0)
    params = square.sample(50, (28, 28), torch.Generator().manual_seed(0))
    assert params.erase.all()
    assert (params.height == 14).all() and (params.width == 14).all()
    assert set(params.top.tolist()) | set(params.left.tolist()) <= set(range(15))
    # Default: erased with probability 1/2, aspect ratio within [0.3, 1/0.3], at most 40%
    # of the image (+ rounding of the sides).
    params = RandomErasing().sample(4000, (28, 28), torch.Generator().manual_seed(0))
    assert abs(params.erase.float().mean().item() - 0.5) < 0.03  # 4 sigma of a binomial
    area = (params.height * params.width).double() / 784
    assert area.max() <= 0.4 * (1 + 1 / 14) ** 2
    unclipped = (params.height < 28) & (params.width < 28)
    aspect = params.height[unclipped].double() / params.width[unclipped]
    assert aspect.min() >= 0.3 * (1 - 2 / 5) and aspect.max() <= (1 / 0.3) * (1 + 2 / 5)


def test_crop_offsets_and_flips_reach_both_ends_of_their_range() -> None:
    # 400 draws of 5 equally likely offsets: each is missed with probability (4/5)^400 ~ 1e-39;
    # a fixed seed makes it certain.
    params = RandomCropFlip(padding=2).sample(400, (6, 5), torch.Generator().manual_seed(0))
    assert set(params.top.tolist()) == set(params.left.tolist()) == {0, 1, 2, 3, 4}
    assert set(params.flip.tolist()) == {False, True}


def test_random_erasing_reaches_every_position_shape_and_pixel_value() -> None:
    # A fixed 14x14 square in a 28x28 image fits at offsets 0..14, each one to be drawn.
    square = RandomErasing(p=1.0, area=(0.25, 0.25), ratio=1.0)
    params = square.sample(1000, (28, 28), torch.Generator().manual_seed(0))
    assert set(params.top.tolist()) == set(params.left.tolist()) == set(range(15))
    assert (params.noise.min().item(), params.noise.max().item()) == (0, 255)
    # Aspect ratios cover [r, 1/r], tall and wide alike; areas cover [s_l, s_h].
    erasing = RandomErasing(p=1.0, area=(0.02, 0.2), ratio=0.3)
    params = erasing.sample(1000, (64, 64), torch.Generator().manual_seed(0))
    aspect = params.height.double() / params.width.double()
    assert aspect.min() < 0.3 * 1.1 and aspect.max() > (1 / 0.3) / 1.1
    area = (params.height * params.width).double() / 64**2
    assert area.min() < 0.02 * 1.1 and area.max() > 0.2 / 1.1
    assert ((params.top + params.height).max(), (params.left + params.width).max()) == (64, 64)


def test_random_erasing_bad_arguments() -> None:
    for kwargs, match in [
        ({"p": 0.0}, r"argument `p`: expected 0 < p <= 1, received 0.0"),
        ({"p": 1.5}, r"argument `p`: .* received 1.5"),
        ({"area": (0.5, 0.2)}, r"argument `area`: .* received \(0.5, 0.2\)"),
        ({"ratio": 2.0}, r"argument `ratio`: .* received 2.0"),
    ]:
        with pytest.raises(ValueError, match=match):
            RandomErasing(**kwargs)  # type: ignore[arg-type]


def test_random_erasing_follows_the_same_crops() -> None:
    """Adding erasing leaves the crops and flips a seed draws unchanged."""
    plain = default_augment("fashion-mnist", 28)
    both = default_augment("fashion-mnist", 28, random_erasing=0.5)
    assert isinstance(plain, RandomCropFlip) and isinstance(both, Compose)
    crops = plain.sample(32, (28, 28), torch.Generator().manual_seed(7))
    first = both.sample(32, (28, 28), torch.Generator().manual_seed(7)).parts[0]
    assert torch.equal(crops.top, first.top) and torch.equal(crops.flip, first.flip)


def _dataset(n: int = 30) -> ImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ImageDataset(images, torch.arange(n) % 3, ("a", "b", "c"))


@pytest.mark.parametrize(
    "aug",
    [RandomCropFlip(padding=1), Compose([RandomCropFlip(padding=1), RandomErasing(p=0.5)])],
    ids=["crop-flip", "crop-flip-erase"],
)
def test_loader_rank_shards_rebuild_the_single_process_batches(
    aug: RandomCropFlip | Compose,
) -> None:
    ds = _dataset()
    single = BatchLoader(ds, 8, seed=5, augment=aug)
    shards = [BatchLoader(ds, 8, seed=5, augment=aug, rank=r, world_size=2) for r in range(2)]
    for loader in (single, *shards):
        loader.set_epoch(3)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *shards, strict=True):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))


def test_loader_order_depends_on_seed_and_epoch_only() -> None:
    ds = _dataset()

    def labels(seed: int, epoch: int, start: int = 0) -> list[list[int]]:
        loader = BatchLoader(ds, 5, seed=seed)
        loader.set_epoch(epoch)
        return [x[:, 0, 0, 0].tolist() for x, _ in loader.batches(start)]

    assert labels(1, 2) == labels(1, 2)
    assert labels(1, 2)[3:] == labels(1, 2, start=3)
    assert labels(1, 2) != labels(1, 3) and labels(1, 2) != labels(2, 2)
    assert sorted(v for batch in labels(1, 2) for v in batch) == list(range(30))


def test_loader_keeps_last_batch_for_evaluation() -> None:
    loader = BatchLoader(_dataset(), 8, shuffle=False, drop_last=False)
    assert [len(y) for _, y in loader] == [8, 8, 8, 6]
    with pytest.raises(ValueError, match=r"argument `batch_size`: expected a multiple of"):
        BatchLoader(_dataset(), 7, world_size=2, rank=1)
    with pytest.raises(ValueError, match=r"received rank=2, world_size=2"):
        BatchLoader(_dataset(), 8, world_size=2, rank=2)


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match=r"argument `data`: .* received 'mnist'"):
        load_dataset("mnist", "train")


def test_resized_matches_bilinear_on_floats_rounded_and_keeps_labels() -> None:
    images = torch.randint(
        0, 256, (5, 2, 7, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    ds = ImageDataset(images, torch.tensor([0, 1, 2, 1, 0]), ("a", "b", "c"))
    for side, antialias in ((16, False), (4, True)):  # up, and down (antialiased)
        big = ds.resized(side, chunk=2)  # chunks of 2 of the 5 images: the seams are exact
        want = F.interpolate(
            images.double(), size=(side, side), mode="bilinear", align_corners=False,
            antialias=antialias,
        ).round().clamp(0, 255).to(torch.uint8)  # fmt: skip
        assert big.images.dtype == torch.uint8 and big.images.shape == (5, 2, side, side)
        # float32 against float64: a pixel may round the other way at an exact .5
        assert (big.images.int() - want.int()).abs().max() <= 1
        assert (big.images != want).float().mean() < 0.01
        assert torch.equal(big.labels, ds.labels) and big.classes == ds.classes
    flat = ImageDataset(torch.full((1, 1, 3, 3), 77, dtype=torch.uint8), torch.tensor([0]), ("a",))
    assert torch.equal(
        flat.resized(224).images, torch.full((1, 1, 224, 224), 77, dtype=torch.uint8)
    )
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match=r"`side`: expected a positive integer"):
            ds.resized(bad)


def test_load_dataset_resizes_fixed_size_sets_only_when_asked(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    spec = f"fashion-mnist:{tmp_path}"
    # image_size alone sizes image folders only; a set of a fixed size keeps its own.
    assert load_dataset(spec, "train", image_size=56).images.shape == (20, 1, 28, 28)
    big = load_dataset(spec, "test", image_size=56, resize=True)
    assert big.images.shape == (10, 1, 56, 56)
    assert torch.equal(big.images, load_fashion_mnist("test", tmp_path).resized(56).images)
    # The crop padding follows the side: 2 px at 28, 16 px at 224 (1/14 of it).
    assert default_augment("fashion-mnist", 28).padding == 2
    assert default_augment("fashion-mnist", 224).padding == 16


def test_train_at_another_side_records_it_and_evaluate_reads_it(tmp_path: Path) -> None:
    from sepconv.cli import main
    from sepconv.modelfile.format import read_model_file

    write_fashion_mnist(tmp_path / "fm")
    data, out = f"fashion-mnist:{tmp_path / 'fm'}", tmp_path / "run"
    argv = ["train", "--model", "mobilenet_v1_025", "--data", data, "--image-size", "40"]
    assert main([*argv, "--max-steps", "1", "--batch-size", "4", "--out", str(out)]) == 0
    weights = out / "model.safetensors"
    assert read_model_file(weights).record.provenance["image_size"] == 40
    ev = ["evaluate", "mobilenet_v1_025", "--weights", str(weights), "--data", data]
    for extra, side in (([], 40), (["--image-size", "28"], 28)):
        assert main([*ev, *extra, "--json", str(tmp_path / "m.json")]) == 0
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["image_size"] == side and sum(map(sum, metrics["confusion"])) == 10
    # quantize calibrates and checks at the recorded side: its file takes 40x40 images.
    int8 = tmp_path / "m.int8.onnx"
    q = ["quantize", "mobilenet_v1_025", "--weights", str(weights), "--calib-data", data]
    assert main([*q, "--num-samples", "8", "--eval-samples", "4", "--output", str(int8)]) == 0
    import onnx

    dims = onnx.load(str(int8)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [1, 40, 40]
