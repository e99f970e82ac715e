"""``benchmarks/turns.py``: every row built and timed in a worker process of its own, the
workers built one after another and taking turns (the alone method of the CPU inference
benchmarks)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from turns import Built, apart  # noqa: E402

FUNCTIONS = {"double": lambda x: x * 2, "plus one": lambda x: x + 1}


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """A worker's rows: simple functions of a seeded input; each says which process built it,
    and when its build started and ended."""
    start = time.time()
    time.sleep(0.2)  # long enough that an overlapping build would show
    x = torch.randn(4, generator=torch.Generator().manual_seed(settings["seed"]))
    info = {name: {"pid": os.getpid(), "start": start, "end": time.time()} for name in names}
    return Built({name: FUNCTIONS[name] for name in names}, x, info)


def failing_setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    raise RuntimeError(f"cannot build {names}")


@pytest.mark.slow
def test_each_row_is_built_alone_in_its_own_process_and_timed_in_rounds() -> None:
    settings = {"seed": 3, "threads": 1, "repeats": 4}
    timed = apart(list(FUNCTIONS), settings, setup, rounds=3)
    x = torch.randn(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(timed["double"].output, x * 2)
    assert torch.equal(timed["plus one"].output, x + 1)
    pids = {t.info["pid"] for t in timed.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    first, second = (timed[name].info for name in FUNCTIONS)
    assert second["start"] >= first["end"]  # the second worker started once the first was built
    for t in timed.values():
        assert len(t.round_medians_ms) == 3
        assert len(t.timing.samples_s) == 3 * 4  # every round's blocks, not the untimed turn
        assert t.timing.median_ms > 0
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_a_failing_build_names_the_row_and_leaves_no_worker_behind() -> None:
    settings = {"seed": 0, "threads": 1, "repeats": 3}
    with pytest.raises(SystemExit, match=r"the plus one worker failed:[\s\S]*cannot build"):
        apart(["plus one"], settings, failing_setup, rounds=1)
    assert multiprocessing.active_children() == []
