"""Worker processes that take turns: each builds its own runners, then times one turn of one
of them whenever the coordinator asks, while the others wait on their pipes (``alone.py``).

A turn is what ``peers.interleaved`` times for a row in one round: ``settings["repeats"]``
blocks after 2 warm-up calls and the ``RUNTIME_SETTLE_S`` pause. Only one worker times at any
moment, so each runs on a machine nothing else in the run is using, and two turns asked for
back to back are timed at nearly the same moment.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import tempfile
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from peers import Runner

from sepconv.bench import measure
from sepconv.bench.allocator import keep_freed_memory
from sepconv.bench.timing import RUNTIME_SETTLE_S

# What a worker's setup returns: its runners by row, and the input they are timed on.
Rows = tuple[dict[str, Runner], torch.Tensor]
# A setup: (row names, settings, a folder for files) -> Rows; a module-level function, since
# a spawned worker finds it by name.
Setup = Callable[[list[str], dict[str, Any], Path], Rows]
# Longest a worker may take to stop once told.
STOP_S = 30.0


def worker(conn: Connection, names: list[str], settings: dict[str, Any], setup: Setup) -> None:
    """A worker process: build the rows ``names`` with ``setup``, say ``"ready"``, then time
    one turn of each row named on ``conn`` and send its blocks' per-call times (ms), until
    ``None`` comes. A failure is sent as ``("error", traceback)``."""
    try:
        keep_freed_memory()  # as Run.start does in the interleaved benchmarks
        with tempfile.TemporaryDirectory(prefix="sepconv-turns-") as tmp:
            rows, x = setup(names, settings, Path(tmp))
            conn.send("ready")
            while (name := conn.recv()) is not None:
                t = measure(
                    functools.partial(rows[name], x),
                    warmup=2,
                    repeats=settings["repeats"],
                    threads=settings["threads"],
                    settle_s=RUNTIME_SETTLE_S,
                )
                conn.send([s * 1e3 for s in t.samples_s])
    except Exception:  # the coordinator reports it and stops
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Workers:
    """One worker process per group of ``groups`` (key -> the row names it builds), as a
    context manager: entering waits until every worker has built its rows; leaving, or a
    failure, stops and joins them all.

    Example (in a script whose ``setup`` is a module-level function)::

        with Workers({"a": ["x"], "both": ["x", "y"]}, settings, setup) as workers:
            blocks_ms = workers.turn("a", "x")
    """

    def __init__(
        self, groups: dict[str, list[str]], settings: dict[str, Any], setup: Setup
    ) -> None:
        context = multiprocessing.get_context("spawn")  # fresh interpreters, as a user's
        self.conns: dict[str, Connection] = {}
        self.processes: dict[str, multiprocessing.process.BaseProcess] = {}
        try:
            for key, names in groups.items():
                here, there = context.Pipe()
                process = context.Process(target=worker, args=(there, names, settings, setup))
                process.start()
                there.close()
                self.conns[key], self.processes[key] = here, process
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        try:
            for key in self.conns:
                self._receive(key)  # "ready"
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

    def turn(self, key: str, name: str) -> list[float]:
        """Worker ``key`` times one turn of row ``name``; its blocks' per-call ms."""
        self.conns[key].send(name)
        blocks: list[float] = self._receive(key)
        return blocks

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
