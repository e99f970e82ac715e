"""The timing harness: statistics, call accounting, thread pinning, inference mode; no timings."""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from sepconv.bench.roofline import Ceilings, place
from sepconv.bench.timing import (
    Timing,
    environment,
    interleaved_order,
    measure,
    pinned_threads,
)


@pytest.mark.parametrize(
    "samples",
    [[4.0, 1.0, 3.0, 2.0, 5.0], [0.5, 0.1, 0.9, 0.3], [7.0], [1.0, 1.0, 2.0, 100.0, 1.5, 1.2]],
)
def test_statistics_match_the_standard_library(samples: list[float]) -> None:
    timing = Timing.from_samples(samples, threads=1, device="cpu")
    # statistics.quantiles(method="inclusive") is the same linear interpolation as numpy's
    # default percentile, computed independently in pure Python.
    q1, median, q3 = (
        statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    )
    assert timing.median_s == pytest.approx(statistics.median(samples))
    assert timing.median_s == pytest.approx(median)
    assert (timing.q1_s, timing.q3_s) == (pytest.approx(q1), pytest.approx(q3))
    assert timing.iqr_s == pytest.approx(q3 - q1)
    assert timing.median_ms == pytest.approx(1e3 * median)


def test_median_and_iqr_ignore_one_outlier() -> None:
    timing = Timing.from_samples([1.0, 1.1, 0.9, 1.0, 50.0], threads=1, device="cpu")
    assert timing.median_s == 1.0
    assert timing.iqr_s == pytest.approx(0.1)


def test_spread_is_the_iqr_over_the_median_and_noisy_beyond_a_quarter() -> None:
    outlier = Timing.from_samples([1.0, 1.1, 0.9, 1.0, 50.0], threads=1, device="cpu")
    assert outlier.spread == pytest.approx(0.1) and not outlier.noisy  # the mean is 10.8
    at_bound = Timing.from_samples([0.75, 1.0, 1.25], threads=1, device="cpu")
    assert at_bound.spread == 0.25 and not at_bound.noisy  # a quarter is not beyond it
    busy = Timing.from_samples([1.0, 2.0, 3.0, 4.0, 5.0], threads=1, device="cpu")
    assert busy.spread == pytest.approx(2 / 3) and busy.noisy


@pytest.mark.parametrize(
    ("samples", "match"),
    [([], "`samples_s`: expected at least one time"), ([1.0, -2.0], "non-negative.*-2.0")],
)
def test_bad_samples_are_rejected(samples: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Timing.from_samples(samples, threads=1, device="cpu")


def test_measure_accounts_for_every_call_and_pins_threads() -> None:
    seen: list[tuple[int, bool]] = []

    def work() -> None:
        seen.append((torch.get_num_threads(), torch.is_inference_mode_enabled()))

    before = torch.get_num_threads()
    timing = measure(work, warmup=4, repeats=7, threads=1)
    assert len(timing.samples_s) == 7
    assert len(seen) == 4 + 7 * timing.calls_per_block
    assert set(seen) == {(1, True)}
    assert timing.threads == 1
    assert torch.get_num_threads() == before


def test_blocks_are_sized_so_a_fast_call_is_repeated() -> None:
    # A no-op lasts far less than 50 ms; a single-call block could not resolve it.
    assert measure(lambda: None, warmup=1, repeats=3, min_block_s=0.05).calls_per_block > 1


def test_time_budget_stops_early_but_keeps_three_samples() -> None:
    timing = measure(lambda: time.sleep(0.002), warmup=1, repeats=50, max_time_s=1e-3)
    assert len(timing.samples_s) == 3


def test_settle_pauses_before_the_first_call() -> None:
    calls: list[float] = []
    start = time.perf_counter()
    measure(lambda: calls.append(time.perf_counter()), warmup=1, repeats=3, settle_s=0.05)
    assert calls[0] - start >= 0.05
    with pytest.raises(ValueError, match=r"`settle_s`: expected >= 0, received -1"):
        measure(lambda: None, settle_s=-1)


@pytest.mark.parametrize(("name", "value"), [("warmup", 0), ("repeats", -1), ("threads", 0)])
def test_measure_rejects_bad_arguments(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"`{name}`: expected a positive integer.*{value}"):
        measure(lambda: None, **{name: value})


def test_pinned_threads_restores_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), pinned_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_environment_reports_versions_and_threads() -> None:
    env = environment(threads=3)
    assert env["torch"] == torch.__version__
    assert env["threads"] == 3
    assert env["logical_cpus"] >= 1


def test_roofline_placement_on_both_sides_of_the_ridge() -> None:
    ceilings = Ceilings(peak_gflops=100.0, bandwidth_gbs=10.0, threads=1, dtype="float32")
    assert ceilings.ridge == 10.0
    low = place(flops=4e9, bytes_moved=2e9, seconds=1.0, ceilings=ceilings)  # I = 2
    assert (low.bound, low.intensity) == ("memory", 2.0)
    assert low.fraction_of_bound == pytest.approx(4.0 / 20.0)  # roof at I = 2 is 20 GFLOP/s
    high = place(flops=50e9, bytes_moved=1e9, seconds=1.0, ceilings=ceilings)  # I = 50
    assert (high.bound, high.fraction_of_bound) == ("compute", pytest.approx(0.5))
    with pytest.raises(ValueError, match="`seconds`: expected a positive number, received 0"):
        place(flops=1.0, bytes_moved=1.0, seconds=0, ceilings=ceilings)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8])
def test_interleaved_order_balances_the_row_timed_before(count: int) -> None:
    cycle = count if count % 2 == 0 else 2 * count
    rounds = [interleaved_order(count, r) for r in range(cycle)]
    assert all(sorted(order) == list(range(count)) for order in rounds)
    # Over one cycle every item comes right after every other one equally often ...
    after = Counter((a, b) for order in rounds for a, b in itertools.pairwise(order))
    pairs = count * (count - 1)
    assert set(after) == {(a, b) for a in range(count) for b in range(count) if a != b}
    assert len(set(after.values())) <= 1 and sum(after.values()) == cycle * (count - 1)
    assert pairs == 0 or next(iter(after.values())) == cycle * (count - 1) // pairs
    # ... and sits in every position equally often.
    for position in range(count):
        assert Counter(order[position] for order in rounds) == dict.fromkeys(
            range(count), cycle // count
        )
    # The next cycle repeats the first.
    assert [interleaved_order(count, cycle + r) for r in range(cycle)] == rounds


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat")
def test_other_load_sees_another_process_busy_while_this_one_waits() -> None:
    from sepconv.bench.load import OtherLoad

    load = OtherLoad()
    # Not this process's child: the shell starts the spinner in the background and exits, so
    # the spinner's CPU time is never added to this process's (children waited for count as
    # its own). Its output pipe closes when it ends.
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.0: pass"
    shell = subprocess.Popen(
        ["sh", "-c", '"$0" -c "$1" &', sys.executable, spin], stdout=subprocess.PIPE
    )
    assert shell.stdout is not None
    shell.stdout.read()  # returns once the spinner, which holds the pipe too, has ended
    shell.wait(timeout=30)
    share = load.share()
    # One spinning process is one CPU's worth: at least a third of this machine, as the test
    # waited and other work can only add to it.
    assert share is not None and share >= min(0.3, 0.9 / (os.cpu_count() or 1))


def test_other_load_subtracts_this_process_and_warns_above_the_busy_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sepconv.bench import load as load_module

    clock = {"machine": 100.0, "own": 10.0, "wall": 1000.0}
    monkeypatch.setattr(load_module, "_machine_busy_s", lambda: clock["machine"])
    monkeypatch.setattr(load_module.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(load_module.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(load_module.os, "cpu_count", lambda: 2)
    load = load_module.OtherLoad()
    # 10 s of wall time on 2 CPUs; the machine busy 12 s, 8 of them this process: others 4 s.
    clock.update(machine=112.0, own=18.0, wall=1010.0)
    assert load.share() == pytest.approx(0.2)
    assert "other processes used 20%" in (load.note() or "")
    clock.update(machine=108.0)  # others 0 s: nothing to say
    # (0 up to float rounding: own_cpu_s adds the real CPU time of reaped child processes.)
    assert load.share() == pytest.approx(0.0, abs=1e-12) and load.note() is None


def test_own_cpu_time_includes_the_child_processes_waited_for() -> None:
    # A benchmark that times each contender in a fresh process must not count that work as
    # another job's: the child's CPU time is the parent's own once the child is waited for.
    import subprocess
    import sys

    from sepconv.bench.load import own_cpu_s

    before = own_cpu_s()
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    assert own_cpu_s() - before >= 0.3


_FAULTS = """
import resource, sys, torch, sepconv
from sepconv.bench.allocator import allocator_state, keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(2)
model = sepconv.create_model("mobilenet_v2").eval()
x = torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    for _ in range(3):  # warm-up
        model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        model(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, allocator_state())
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc"
)
def test_keep_freed_memory_ends_the_page_faults_of_every_allocation() -> None:
    # Each in a fresh process: the setting is the whole process's.
    def faults(mode: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
        )
        count, state = done.stdout.strip().split(" ", 1)
        return int(count), state

    default, default_state = faults("default")
    kept, kept_state = faults("keep")
    # By default glibc gives freed activations back to the system and the next call faults
    # their pages in again (thousands of 4 KiB pages a call) ...
    assert default >= 5 * 1000, default
    assert "defaults" in default_state
    # ... once kept, freed blocks are reused: a few stray faults at most (up to ~16 a call
    # were seen on a busy machine), against thousands.
    assert kept * 20 < default, (kept, default)
    assert "freed memory kept" in kept_state
