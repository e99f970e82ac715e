"""Seeds derived from seeds: one generator per (seed, epoch, step, ...) without shared state."""

from __future__ import annotations


def mix_seed(*values: int) -> int:
    """Combine integers into one 63-bit generator seed (splitmix64 finaliser per value).

    The same values always give the same seed, and changing any one of them changes it
    unpredictably, so ``mix_seed(seed, epoch)`` orders an epoch's batches and
    ``mix_seed(seed, rank)`` seeds one process of a distributed run.
    """
    state = 0
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return state >> 1
