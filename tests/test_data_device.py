"""Datasets held on a device: batches, augmentation and normalisation made where the images
are, bit for bit the batches of the same dataset on the CPU.

Every test runs on the CPU and again on a CUDA GPU when there is one. The oracle is the host
path written out image by image: the epoch's permutation from ``mix_seed(seed, epoch)``, the
choices of step ``s`` from ``mix_seed(seed, epoch, s, 1)``, then crop, flip and erase by
slicing each image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sepconv.data import (
    BatchLoader,
    Compose,
    ComposeParams,
    CropFlipParams,
    EraseParams,
    ImageDataset,
    Normalize,
    RandomCropFlip,
    RandomErasing,
    channel_stats,
)
from sepconv.data.normalize import to_model_input
from sepconv.utils.seeding import mix_seed

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    ),
]

AUGMENTS = {
    "none": None,
    "crop-flip": RandomCropFlip(padding=2, flip=True),
    "crop-flip-erase": Compose([RandomCropFlip(padding=2, flip=True), RandomErasing(p=0.5)]),
}


def _dataset(n: int = 96, channels: int = 1, size: int = 12) -> ImageDataset:
    """Random images; the label of image ``i`` is ``i``, so labels reveal the order."""
    gen = torch.Generator().manual_seed(11)
    images = torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n), tuple(str(i) for i in range(n)))


def _crop_flip_one(image: torch.Tensor, params: CropFlipParams, i: int, p: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = int(params.top[i]), int(params.left[i])
    out = F.pad(image, (p, p, p, p))[:, top : top + h, left : left + w]
    return out.flip(-1) if bool(params.flip[i]) else out


def _erase_one(image: torch.Tensor, params: EraseParams, i: int) -> torch.Tensor:
    out = image.clone()
    if bool(params.erase[i]):
        top, left = int(params.top[i]), int(params.left[i])
        rows = slice(top, top + int(params.height[i]))
        cols = slice(left, left + int(params.width[i]))
        out[:, rows, cols] = params.noise[i, 0, rows, cols]
    return out


def _reference_epoch(
    ds: ImageDataset,
    batch_size: int,
    seed: int,
    epoch: int,
    augment_name: str,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The host path, one image at a time, for a CPU dataset."""
    n = len(ds)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    augment = AUGMENTS[augment_name]
    share = batch_size // world_size
    batches = []
    for step in range(n // batch_size):
        idx = order[step * batch_size : (step + 1) * batch_size]
        gen = torch.Generator().manual_seed(mix_seed(seed, epoch, step, 1))
        images = []
        if augment is not None:
            params = augment.sample(batch_size, ds.images.shape[-2:], gen)
            parts = params.parts if isinstance(params, ComposeParams) else (params,)
        for i in range(rank * share, (rank + 1) * share):
            image = ds.images[idx[i]]
            if augment is not None:
                image = _crop_flip_one(image, parts[0], i, p=2)
                if len(parts) > 1:
                    image = _erase_one(image, parts[1], i)
            images.append(image)
        batches.append((torch.stack(images), ds.labels[idx[rank * share : (rank + 1) * share]]))
    return batches


@pytest.mark.parametrize("augment_name", list(AUGMENTS))
@pytest.mark.parametrize("device", DEVICES)
def test_device_batches_match_the_host_path_image_by_image(device: str, augment_name: str) -> None:
    host = _dataset()
    loader = BatchLoader(host.to(device), 16, seed=3, augment=AUGMENTS[augment_name])
    for epoch in (0, 2):
        loader.set_epoch(epoch)
        expected = _reference_epoch(host, 16, seed=3, epoch=epoch, augment_name=augment_name)
        got = list(loader)
        assert len(got) == len(expected) == 6
        for (x, y), (x_ref, y_ref) in zip(got, expected, strict=True):
            assert x.device.type == device and y.device.type == device
            assert x.dtype == torch.uint8 and y.dtype == torch.int64
            assert torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)


@pytest.mark.parametrize("device", DEVICES)
def test_device_rank_shards_match_the_host_path(device: str) -> None:
    host = _dataset()
    for rank in range(2):
        loader = BatchLoader(
            host.to(device),
            16,
            seed=8,
            augment=AUGMENTS["crop-flip-erase"],
            rank=rank,
            world_size=2,
        )
        loader.set_epoch(1)
        expected = _reference_epoch(host, 16, 8, 1, "crop-flip-erase", rank=rank, world_size=2)
        for (x, y), (x_ref, y_ref) in zip(loader, expected, strict=True):
            assert torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)


@pytest.mark.parametrize("device", DEVICES)
def test_device_batches_equal_host_batches_at_fashion_mnist_size(device: str) -> None:
    """Same seed and epoch, one dataset on the host and one on the device: equal batches."""
    host = _dataset(n=512, size=28)
    augment = Compose([RandomCropFlip(padding=2), RandomErasing(p=0.5)])
    on_host = BatchLoader(host, 128, seed=21, augment=augment)
    on_device = BatchLoader(host.to(device), 128, seed=21, augment=augment)
    for epoch in (0, 5):
        on_host.set_epoch(epoch)
        on_device.set_epoch(epoch)
        for (x, y), (xd, yd) in zip(on_host, on_device, strict=True):
            assert torch.equal(x, xd.cpu()) and torch.equal(y, yd.cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_order_is_a_pure_function_of_seed_and_epoch(device: str) -> None:
    ds = _dataset().to(device)

    def order(seed: int, epoch: int, start: int = 0, loader: BatchLoader | None = None) -> list:
        loader = loader or BatchLoader(ds, 16, seed=seed, augment=AUGMENTS["crop-flip"])
        loader.set_epoch(epoch)
        return [y.cpu().tolist() for _, y in loader.batches(start)]

    first = order(4, 3)
    # The same loader after other epochs, and a fresh one: the same order.
    reused = BatchLoader(ds, 16, seed=4, augment=AUGMENTS["crop-flip"])
    order(4, 1, loader=reused)
    assert order(4, 3, loader=reused) == first == order(4, 3)
    assert order(4, 3, start=2) == first[2:]
    assert first != order(4, 4) and first != order(5, 3)
    assert sorted(i for batch in first for i in batch) == list(range(len(ds)))
    expected = torch.randperm(len(ds), generator=torch.Generator().manual_seed(mix_seed(4, 3)))
    assert [i for batch in first for i in batch] == expected.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_resumed_epoch_gets_the_same_augmentation(device: str) -> None:
    ds = _dataset().to(device)
    loader = BatchLoader(ds, 16, seed=2, augment=AUGMENTS["crop-flip-erase"])
    loader.set_epoch(1)
    full = [x.cpu() for x, _ in loader]
    resumed = [x.cpu() for x, _ in loader.batches(start=4)]
    assert all(torch.equal(a, b) for a, b in zip(full[4:], resumed, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_dataset_to_keeps_dtypes_and_validates_devices(device: str) -> None:
    host = _dataset()
    moved = host.to(device)
    assert moved.device.type == device and moved.labels.device.type == device
    assert moved.images.dtype == torch.uint8 and moved.labels.dtype == torch.int64
    assert moved.to(device) is moved and host.to("cpu") is host
    assert moved.classes == host.classes and torch.equal(moved.images.cpu(), host.images)
    with pytest.raises(ValueError, match=r"argument `labels`: expected a tensor on the device"):
        ImageDataset(host.images, host.labels.to("meta"), host.classes)


@pytest.mark.parametrize("device", DEVICES)
def test_channel_stats_are_exact_and_device_independent(device: str) -> None:
    images = torch.randint(0, 256, (300, 3, 7, 5), dtype=torch.uint8)
    assert channel_stats(images.to(device)) == channel_stats(images)
    ref = images.numpy().astype(np.float64) / 255.0
    mean, std = channel_stats(images.to(device))
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-12)
    # Half the pixels 0 and half 255: mean 1/2 and std 1/2 exactly.
    halves = torch.tensor([0, 255], dtype=torch.uint8).repeat(8).view(4, 1, 2, 2)
    assert channel_stats(halves.to(device)) == ((0.5,), (0.5,))


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_matches_the_formula_and_the_host_path(device: str) -> None:
    images = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.1)
    out = Normalize(mean, std)(images.to(device))
    assert out.device.type == device and out.dtype == torch.float32
    m64 = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s64 = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    ref = (images.double() / 255 - m64) / s64
    torch.testing.assert_close(out.cpu().double(), ref, rtol=1e-6, atol=1e-6)
    host = to_model_input(images, mean, std, device=torch.device("cpu"), channels_last=False)
    assert torch.equal(out.cpu(), host)
    # bf16 is the float32 result rounded once; channels_last changes strides only.
    bf16 = Normalize(mean, std, dtype=torch.bfloat16, channels_last=True)(images.to(device))
    assert bf16.dtype == torch.bfloat16 and bf16.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(bf16.cpu(), host.to(torch.bfloat16))


def test_normalize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"argument `std`: expected 2 positive values"):
        Normalize((0.1, 0.2), (0.3,))
    with pytest.raises(ValueError, match=r"argument `std`: .* received \(0.3, 0.0\)"):
        Normalize((0.1, 0.2), (0.3, 0.0))
    with pytest.raises(ValueError, match=r"argument `dtype`: expected a floating-point dtype"):
        Normalize((0.1,), (0.3,), dtype=torch.int32)
    with pytest.raises(ValueError, match=r"argument `images`: expected a uint8 tensor of shape"):
        Normalize((0.1,), (0.3,))(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


@pytest.mark.parametrize("device", DEVICES)
def test_loader_normalizes_after_augmenting_on_the_device(device: str) -> None:
    host = _dataset(channels=2)
    norm = Normalize((0.4, 0.6), (0.2, 0.3), channels_last=True)
    augment = AUGMENTS["crop-flip-erase"]
    plain = BatchLoader(host, 16, seed=9, augment=augment)
    ready = BatchLoader(host.to(device), 16, seed=9, augment=augment, normalize=norm)
    for (x, y), (xn, yn) in zip(plain, ready, strict=True):
        assert xn.device.type == device and xn.is_contiguous(memory_format=torch.channels_last)
        expected = to_model_input(
            x, norm.mean, norm.std, device=torch.device("cpu"), channels_last=True
        )
        assert torch.equal(xn.cpu(), expected) and torch.equal(yn.cpu(), y)


def test_device_path_keeps_every_step_on_the_dataset_device() -> None:
    """The meta device holds no data but rejects any tensor of another device in an operation,
    so a step that mixed in a host tensor (an index, a choice, a constant) would fail here."""
    ds = _dataset(n=64, channels=3).to("meta")
    norm = Normalize((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), dtype=torch.bfloat16, channels_last=True)
    for augment in AUGMENTS.values():
        for world_size in (1, 2):
            loader = BatchLoader(
                ds, 16, augment=augment, normalize=norm, rank=world_size - 1, world_size=world_size
            )
            batches = list(loader)
            assert len(batches) == 4
            for x, y in batches:
                assert x.device.type == "meta" and y.device.type == "meta"
                assert x.shape == (16 // world_size, 3, 12, 12) and x.dtype == torch.bfloat16
                assert y.shape == (16 // world_size,) and y.dtype == torch.int64
