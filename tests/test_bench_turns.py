"""``benchmarks/turns.py``: every row built and timed in a worker process of its own, the
workers built one after another and taking turns (the alone method of the CPU inference
benchmarks)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from turns import Built, apart  # noqa: E402

FUNCTIONS = {
    "double": lambda x: x * 2,
    "plus one": lambda x: x + 1,
    "spinner": lambda x: x,
    "straggler": lambda x: x - 1,
}
STRAGGLE_S = 1.0


def spin() -> None:
    while True:
        pass


def process_start_s() -> float:
    """When this process was created, in seconds since boot (``/proc/self/stat``'s start
    time, in clock ticks)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    """A worker's rows: simple functions of a seeded input; each says which process built it,
    when that process was created and when its build ended (seconds since boot)."""
    time.sleep(0.2)  # long enough that an overlapping build would show
    if "spinner" in names:  # a worker that keeps a core busy while it waits for its turn
        threading.Thread(target=spin, daemon=True).start()
    if "straggler" in names:  # a build that leaves a child process running behind it
        multiprocessing.Process(target=time.sleep, args=(STRAGGLE_S,), daemon=True).start()
    x = torch.randn(4, generator=torch.Generator().manual_seed(settings["seed"]))
    info = {
        name: {
            "pid": os.getpid(),
            "created": process_start_s(),
            "built": time.clock_gettime(time.CLOCK_BOOTTIME),
        }
        for name in names
    }
    return Built({name: FUNCTIONS[name] for name in names}, x, info)


def failing_setup(names: list[str], settings: dict[str, Any], folder: Path) -> Built:
    raise RuntimeError(f"cannot build {names}")


@pytest.mark.slow
def test_each_row_is_built_alone_in_its_own_process_and_timed_in_rounds() -> None:
    settings = {"seed": 3, "threads": 1, "repeats": 4}
    timed = apart(["double", "plus one"], settings, setup, rounds=3)
    x = torch.randn(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(timed["double"].output, x * 2)
    assert torch.equal(timed["plus one"].output, x + 1)
    pids = {t.info["pid"] for t in timed.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    first, second = (timed[name].info for name in ("double", "plus one"))
    # The second worker's process was created once the first had built its rows (the start
    # time has a resolution of one clock tick).
    assert second["created"] >= first["built"] - 2 / os.sysconf("SC_CLK_TCK")
    for t in timed.values():
        assert len(t.round_medians_ms) == 3
        assert len(t.timing.samples_s) == 3 * 4  # every round's blocks, not the untimed turn
        assert t.timing.median_ms > 0
        assert t.waiting_cpu_share is not None and t.waiting_cpu_share < 0.05  # they wait
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_a_worker_that_uses_the_cpu_while_waiting_shows_in_the_others_turns() -> None:
    settings = {"seed": 0, "threads": 1, "repeats": 4}
    timed = apart(["double", "spinner"], settings, setup, rounds=3)
    # The spinning worker keeps one of the cores busy through the other row's turns.
    share = timed["double"].waiting_cpu_share
    assert share is not None and share > 0.2 / (os.cpu_count() or 1)


@pytest.mark.slow
def test_a_failing_build_names_the_row_and_leaves_no_worker_behind() -> None:
    settings = {"seed": 0, "threads": 1, "repeats": 3}
    with pytest.raises(SystemExit, match=r"the plus one worker failed:[\s\S]*cannot build"):
        apart(["plus one"], settings, failing_setup, rounds=1)
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_the_next_worker_starts_once_a_build_left_no_child_process_running() -> None:
    # As OpenVINO's conversion does with its telemetry: a child process outlives the build.
    settings = {"seed": 3, "threads": 1, "repeats": 2}
    timed = apart(["straggler", "double"], settings, setup, rounds=1)
    first, second = (timed[name].info for name in ("straggler", "double"))
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert second["created"] >= first["built"] + STRAGGLE_S - 2 * tick
    assert torch.equal(timed["straggler"].output, timed["double"].output / 2 - 1)
