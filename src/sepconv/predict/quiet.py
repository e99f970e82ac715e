"""Timing on a shared machine: blocks that another process disturbed are left out.

A runtime using every core of the machine is slowed by anything else that runs, and badly:
two threads on two cores wait at every parallel op for the one that was descheduled, and the
whole block comes out two or three times too long, with nothing in its own numbers to show it.
The kernel says when it happened: ``/proc/self/task/*/schedstat`` counts, per thread, the time
spent runnable but waiting for a CPU (run delay). :func:`quiet_measure` times blocks of calls
as :func:`sepconv.bench.measure` does, reads the process's run delay around each block, and
keeps only blocks in which it waited less than :data:`DELAY_SHARE` of the block's time; a
disturbed block is timed again, up to :data:`MAX_BLOCKS` blocks in all. Where the kernel keeps
no such counts every block is kept.

A runtime may also finish a parallel op on the calling thread alone while its worker sleeps,
and then it never waits: slower, but no run delay. So the share of the machine other processes
took over all the blocks is read too (:class:`sepconv.bench.load.OtherLoad`, coarse: the
kernel's 10 ms ticks); above :data:`BUSY` the timing waits for a quiet moment and starts over,
up to :data:`RETRIES` times.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from sepconv.bench.load import OtherLoad

__all__ = [
    "BUSY",
    "DELAY_SHARE",
    "MAX_BLOCKS",
    "RETRIES",
    "QuietTiming",
    "quiet_measure",
    "run_delay_s",
    "wait_for_quiet",
]

#: Run delay a block may contain, as a share of its wall time.
DELAY_SHARE = 0.02
#: Blocks timed at most per attempt, disturbed ones included.
MAX_BLOCKS = 60
#: Share of the machine other processes may take while a timing runs.
BUSY = 0.15
#: Attempts repeated when other processes took more than :data:`BUSY`.
RETRIES = 2
# Probe window of wait_for_quiet, and its longest wait.
PROBE_S = 0.2
MAX_WAIT_S = 10.0
_TASKS = "/proc/self/task"


def run_delay_s() -> float | None:
    """Seconds this process's threads have spent waiting for a CPU while runnable, or
    ``None`` where the kernel does not say."""
    total = 0
    try:
        for tid in os.listdir(_TASKS):
            try:
                with open(f"{_TASKS}/{tid}/schedstat", encoding="ascii") as file:
                    total += int(file.read().split()[1])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


@dataclass(frozen=True)
class QuietTiming:
    """The per-call median of the undisturbed blocks, and how many blocks were timed.

    Attributes:
        median_s: Median per-call seconds of the kept blocks (of all blocks if none was
            undisturbed).
        kept: Blocks kept; ``disturbed``: blocks left out (over every attempt).
        calls_per_block: Calls in one block.
        busy: Whether other processes still took more than :data:`BUSY` of the machine in the
            last attempt.
    """

    median_s: float
    kept: int
    disturbed: int
    calls_per_block: int
    busy: bool = False

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def wait_for_quiet(max_wait_s: float = MAX_WAIT_S) -> float:
    """Wait until a short probe finds other processes under :data:`BUSY` of the machine, for
    at most ``max_wait_s``; the seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began + PROBE_S < max_wait_s:
        probe = OtherLoad()
        time.sleep(PROBE_S)
        share = probe.share()
        if share is None or share <= BUSY:
            break
    return time.perf_counter() - began


def quiet_measure(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    repeats: int = 7,
    min_block_s: float = 5e-3,
    max_blocks: int = MAX_BLOCKS,
    retries: int = RETRIES,
) -> QuietTiming:
    """Time ``fn()``: ``repeats`` undisturbed blocks of at least ``min_block_s`` each.

    Example:
        >>> t = quiet_measure(lambda: sum(range(1000)), repeats=3)
        >>> t.kept + t.disturbed >= 3
        True
    """
    for _ in range(max(warmup - 1, 0)):
        fn()
    began = time.perf_counter()
    fn()
    calls = max(1, math.ceil(min_block_s / max(time.perf_counter() - began, 1e-9)))
    left_out = 0
    for attempt in range(retries + 1):
        load = OtherLoad()
        kept, disturbed = _blocks(fn, calls, repeats, max_blocks)
        share = load.share()
        busy = share is not None and share > BUSY
        if not busy or attempt == retries:
            break
        left_out += len(kept) + len(disturbed)
        wait_for_quiet()
    return QuietTiming(
        median_s=statistics.median(kept or disturbed),
        kept=len(kept),
        disturbed=left_out + len(disturbed),
        calls_per_block=calls,
        busy=busy,
    )


def _blocks(
    fn: Callable[[], object], calls: int, repeats: int, max_blocks: int
) -> tuple[list[float], list[float]]:
    """Per-call seconds of the undisturbed and of the disturbed blocks."""
    kept: list[float] = []
    disturbed: list[float] = []
    while len(kept) < repeats and len(kept) + len(disturbed) < max_blocks:
        delay = run_delay_s()
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        wall = time.perf_counter() - began
        after = run_delay_s()
        waited = 0.0 if delay is None or after is None else after - delay
        (kept if waited <= DELAY_SHARE * wall else disturbed).append(wall / calls)
    return kept, disturbed
