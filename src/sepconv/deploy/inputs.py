"""Checks of the inputs every deployment path takes: image sizes, batch sizes, example images.

Export, compilation and quantization all specialise a model to ``(N, C, H, W)`` float inputs;
these functions validate what the user passed, in the library's one error wording, and make the
seeded inputs used when none was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sepconv.utils.validation import invalid, positive_int, thread_count

__all__ = [
    "check_batch_sizes",
    "check_images",
    "check_input_size",
    "check_threads",
    "first_images",
    "random_inputs",
]


def check_input_size(input_size: tuple[int, int, int]) -> tuple[int, int, int]:
    """``input_size`` as a ``(C, H, W)`` tuple of positive integers, else a ValueError."""
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_size)
    ):
        raise invalid("input_size", "(C, H, W) as three positive integers", input_size)
    return (input_size[0], input_size[1], input_size[2])


def check_threads(threads: int | None) -> int:
    """``threads``, or PyTorch's intra-op thread count for ``None``; else a ValueError."""
    if threads is None:
        return torch.get_num_threads()
    return thread_count("threads", threads)


def check_batch_sizes(check_batches: Sequence[int]) -> tuple[int, ...]:
    """The batch sizes of ``check_batches``, repeats dropped, else a ValueError naming it."""
    if isinstance(check_batches, (str, bytes)) or not isinstance(check_batches, Sequence):
        raise invalid("check_batches", "a non-empty sequence of positive integers", check_batches)
    batches = tuple(check_batches)
    if not batches:
        raise invalid("check_batches", "a non-empty sequence of positive integers", check_batches)
    for batch in batches:
        positive_int("check_batches", batch)
    return tuple(dict.fromkeys(batches))  # drop repeats, keep the order


def check_images(
    argument: str,
    images: object,
    size: tuple[int, int, int],
    *,
    batch: int | None = None,
    hint: str = "",
) -> torch.Tensor:
    """``images``, a non-empty float ``(N, *size)`` tensor (``N == batch`` when given), as
    contiguous float32 on the CPU; otherwise a ValueError naming ``argument``, ending with
    ``hint``."""
    if (
        not isinstance(images, torch.Tensor)
        or not images.is_floating_point()
        or images.dim() != 4
        or tuple(images.shape[1:]) != size
        or len(images) == 0
        or (batch is not None and len(images) != batch)
    ):
        got = (
            f"{images.dtype} tensor of shape {list(images.shape)}"
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        n = "N" if batch is None else batch
        raise invalid(argument, f"a float tensor ({n}, {size[0]}, {size[1]}, {size[2]}){hint}", got)
    return images.detach().to("cpu", torch.float32).contiguous()


def first_images(images: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` images, cycled when there are fewer, as contiguous float32 on the CPU."""
    picked = images[torch.arange(count) % len(images)]
    return picked.detach().to("cpu", torch.float32).contiguous()


def random_inputs(batches: Sequence[int], size: tuple[int, int, int]) -> dict[int, torch.Tensor]:
    """One seeded standard-normal input per batch size: the same inputs on every call."""
    generator = torch.Generator().manual_seed(0)
    return {b: torch.randn((b, *size), generator=generator) for b in dict.fromkeys(batches)}
