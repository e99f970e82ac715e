"""Worker processes that take turns: each builds its own runners, then times one turn of one
of them whenever the coordinator asks, while the others wait on their pipes.

A turn is ``settings["repeats"]`` timed blocks after 2 warm-up calls and the
``RUNTIME_SETTLE_S`` pause. Workers build one after another and only one times at any moment, so
each builds and runs on a machine nothing else in the run is using, and two turns asked for back
to back are timed at nearly the same moment.

:func:`apart` is how every CPU inference benchmark times its rows (``inference.py``,
``precision_auto.py``, ``runtime_config.py``): each row alone in its own process, the rows
taking turns in interleaved rounds. Runtimes sharing one process do not time as they do alone
(another runtime's thread pools and allocations are there); ``alone.py`` measures by how much,
and uses :class:`Workers` for both of its methods.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from peers import Runner

from sepconv.bench import Timing, measure
from sepconv.bench.allocator import keep_freed_memory
from sepconv.bench.load import wait_for_children
from sepconv.bench.timing import RUNTIME_SETTLE_S, interleaved_order


@dataclass
class Built:
    """What a worker's setup returns: its runners by row, the input they are timed on, and
    anything picklable the setup has to say about each row (build time, the backend chosen,
    checks run on the user's images), by row."""

    runners: dict[str, Runner]
    x: torch.Tensor
    info: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Ready:
    """What a worker reports once built, by row: its output on the timed input, and the
    setup's info."""

    outputs: dict[str, torch.Tensor]
    info: dict[str, dict[str, Any]]


# A setup: (row names, settings, a folder for files) -> Built; a module-level function, since
# a spawned worker finds it by name.
Setup = Callable[[list[str], dict[str, Any], Path], Built]
# How apart() times rows, as a result's JSON ("timing_method") and report say it; results
# without the key held every row of a model in one process.
METHOD = "each row built and timed in a process of its own, the rows taking turns"
ONE_PROCESS = "every row in one process"


def method_text(data: dict[str, Any]) -> str:
    """How a result's rows were timed, for its report: :data:`METHOD` (or :data:`ONE_PROCESS`
    for a result without ``timing_method``), with the most CPU the waiting workers used during
    any row's turns where the result records it (``waiting_cpu_share_max``)."""
    text = str(data.get("timing_method", ONE_PROCESS))
    share = data.get("waiting_cpu_share_max")
    if share is not None:
        text += (
            f" (the waiting workers used at most {100 * share:.1f}% of the machine during a "
            "row's turns)"
        )
    return text


def overall_max(shares: list[float | None]) -> float | None:
    """The largest of the rows' :attr:`Timed.waiting_cpu_share`; ``None`` if any is unknown."""
    known = [share for share in shares if share is not None]
    return max(known) if known and len(known) == len(shares) else None


# Clock ticks a second, the unit of /proc/PID/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Longest a worker may take to stop once told.
STOP_S = 30.0


def children_ended(limit_s: float = STOP_S) -> None:
    """Return once this process has no child process left running
    (:func:`sepconv.bench.load.wait_for_children`), so that the next worker builds on a machine
    this one no longer uses: ``openvino.convert_model`` (the OpenVINO peers' conversion) sends
    usage telemetry from processes that may outlive the call. Raises ``RuntimeError`` after
    ``limit_s``."""
    left = wait_for_children(limit_s=limit_s)
    if left:
        raise RuntimeError(f"child processes still running after {limit_s:g} s: {sorted(left)}")


def worker(conn: Connection, names: list[str], settings: dict[str, Any], setup: Setup) -> None:
    """A worker process: build the rows ``names`` with ``setup`` and send :class:`Ready`, then
    time one turn of each row named on ``conn`` and send its :class:`~sepconv.bench.Timing`,
    until ``None`` comes. A failure is sent as ``("error", traceback)``."""
    try:
        keep_freed_memory()  # as Run.start does for the coordinator
        with tempfile.TemporaryDirectory(prefix="sepconv-turns-") as tmp:
            built = setup(names, settings, Path(tmp))
            with torch.inference_mode():
                outputs = {name: built.runners[name](built.x) for name in names}
            children_ended()
            conn.send(Ready(outputs, built.info))
            while (name := conn.recv()) is not None:
                conn.send(
                    measure(
                        functools.partial(built.runners[name], built.x),
                        warmup=2,
                        repeats=settings["repeats"],
                        threads=settings["threads"],
                        settle_s=RUNTIME_SETTLE_S,
                    )
                )
    except Exception:  # the coordinator reports it and stops
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Workers:
    """One worker process per group of ``groups`` (key -> the row names it builds), as a
    context manager: entering starts the workers one at a time, each once the one before has
    built its rows (so no build, nor ``compile_for_inference``'s race inside one, shares the
    machine with another); leaving, or a failure, stops and joins them all. ``ready`` holds
    each worker's :class:`Ready`.

    Example (in a script whose ``setup`` is a module-level function)::

        with Workers({"a": ["x"], "both": ["x", "y"]}, settings, setup) as workers:
            timing = workers.turn("a", "x")
    """

    def __init__(
        self, groups: dict[str, list[str]], settings: dict[str, Any], setup: Setup
    ) -> None:
        self.groups, self.settings, self.setup = groups, settings, setup
        self.conns: dict[str, Connection] = {}
        self.processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self.ready: dict[str, Ready] = {}

    def __enter__(self) -> Workers:
        context = multiprocessing.get_context("spawn")  # fresh interpreters, as a user's
        try:
            for key, names in self.groups.items():
                here, there = context.Pipe()
                process = context.Process(
                    target=worker, args=(there, names, self.settings, self.setup)
                )
                process.start()
                there.close()
                self.conns[key], self.processes[key] = here, process
                self.ready[key] = self._receive(key)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _receive(self, key: str) -> Any:
        try:
            message = self.conns[key].recv()
        except EOFError:
            process = self.processes[key]
            process.join(timeout=5)
            raise SystemExit(
                f"the {key} worker ended without a word (exit code {process.exitcode})"
            ) from None
        if isinstance(message, tuple) and message[0] == "error":
            raise SystemExit(f"the {key} worker failed:\n{message[1][-3000:]}")
        return message

    def cpu_s(self) -> dict[str, float] | None:
        """CPU seconds each worker has used so far (every thread; ``/proc/PID/stat``), or
        ``None`` where the system does not say."""
        used = {}
        for key, process in self.processes.items():
            try:
                stat = Path(f"/proc/{process.pid}/stat").read_text()
            except OSError:
                return None
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            used[key] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return used

    def turn(self, key: str, name: str) -> Timing:
        """Worker ``key`` times one turn of row ``name``."""
        self.conns[key].send(name)
        timing: Timing = self._receive(key)
        return timing

    def close(self) -> None:
        """Tell every worker to stop and join it (killed if it has not stopped within
        :data:`STOP_S`): waited for, its CPU time counts as the run's own, not as other
        load."""
        for conn in self.conns.values():
            with contextlib.suppress(OSError):  # a worker that has already ended
                conn.send(None)
        for process in self.processes.values():
            process.join(timeout=STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self.conns.values():
            conn.close()


@dataclass
class Timed:
    """One row timed by :func:`apart`: its timing over every round, its median in each round
    (ms), its output on the timed input and its setup's info; and the CPU time the other,
    waiting workers used during its timed turns as a share of the machine (``None`` where it
    cannot be read): near 0 when they wait without spinning, as the method needs."""

    timing: Timing
    round_medians_ms: list[float]
    output: torch.Tensor
    info: dict[str, Any]
    waiting_cpu_share: float | None


def apart(
    names: list[str], settings: dict[str, Any], setup: Setup, *, rounds: int
) -> dict[str, Timed]:
    """Every row of ``names`` built by ``setup`` in a worker process of its own, then timed in
    ``rounds`` rounds of turns in an order that changes from round to round
    (``interleaved_order``: load from other processes spreads over all rows, and no row always
    follows the same other one), after one untimed turn each (a fresh process's first calls
    run cold). ``settings`` needs ``"repeats"`` and ``"threads"``."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    per_round: dict[str, list[float]] = {name: [] for name in names}
    timings: dict[str, Timing] = {}
    waiting_s = dict.fromkeys(names, 0.0)  # the other workers' CPU seconds during a row's turns
    wall_s = dict.fromkeys(names, 0.0)
    readable = True
    with Workers({name: [name] for name in names}, settings, setup) as workers:
        for name in names:
            workers.turn(name, name)
        for r in range(rounds):
            for index in interleaved_order(len(names), r):
                name = names[index]
                before, start = workers.cpu_s(), time.perf_counter()
                t = timings[name] = workers.turn(name, name)
                wall_s[name] += time.perf_counter() - start
                after = workers.cpu_s()
                if before is None or after is None:
                    readable = False
                else:
                    waiting_s[name] += sum(after[k] - before[k] for k in after if k != name)
                samples[name].extend(t.samples_s)
                per_round[name].append(t.median_ms)
        ready = workers.ready  # by row: each worker holds one
    cores = os.cpu_count() or 1
    return {
        name: Timed(
            timing=Timing.from_samples(
                samples[name],
                calls_per_block=timings[name].calls_per_block,
                threads=timings[name].threads,
                device="cpu",
            ),
            round_medians_ms=per_round[name],
            output=ready[name].outputs[name],
            info=ready[name].info.get(name, {}),
            waiting_cpu_share=waiting_s[name] / (wall_s[name] * cores) if readable else None,
        )
        for name in names
    }
