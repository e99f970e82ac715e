"""What else used the machine while something was timed.

A load average counts this process's own work too, so it cannot tell a benchmark that keeps
both cores busy from one that shares them with another job. :class:`OtherLoad` reads the CPU
time the whole machine spent (``/proc/stat``) and the CPU time of this process, every thread
included, and of the child processes it started and waited for (:func:`own_cpu_s`), over an
interval: the difference is what other processes used. A share above :data:`BUSY_SHARE` of
the machine means the timings of the interval compare a runtime with the other job as much as
with its peers.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

#: Share of the machine's CPU time used by other processes above which a timing is marked as
#: taken on a busy machine.
BUSY_SHARE = 0.15
#: Longest :func:`wait_for_children` waits by default: OpenVINO's telemetry waits up to 3 s for
#: the process that sends each of its messages.
CHILDREN_WAIT_S = 5.0
_STAT = Path("/proc/stat")


def child_pids() -> set[int]:
    """The process ids of this process's running ``multiprocessing`` children (finished ones
    are reaped)."""
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def wait_for_children(
    other_than: Collection[int] = (), limit_s: float = CHILDREN_WAIT_S
) -> set[int]:
    """Wait until no child process of this one but ``other_than`` is running, for at most
    ``limit_s`` seconds; the ids of those still running then (empty: all ended).

    Libraries start short-lived processes of their own: ``import openvino`` and
    ``openvino.convert_model`` send usage telemetry (unless the user opted out), each message
    from a forked process that lives up to 3 s, started from a background thread. Something
    timed meanwhile shares the machine with them. Two polls 50 ms apart must find none, since
    such a thread may start its process just after the first.
    """
    deadline = time.monotonic() + limit_s
    quiet = 0
    while True:
        left = child_pids() - set(other_than)
        quiet = 0 if left else quiet + 1
        if quiet >= 2:
            return set()
        if time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _machine_busy_s() -> float | None:
    """Seconds of CPU time the machine has spent busy since boot (all CPUs), or ``None``
    where the operating system does not say (no ``/proc/stat``)."""
    try:
        fields = _STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (user + nice + system + irq + softirq + steal) / ticks


def own_cpu_s() -> float:
    """CPU seconds used by this process (every thread) and by the child processes it has
    waited for: a benchmark that times each contender in a process of its own counts that work
    as its own, not as another job's."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


@dataclass
class OtherLoad:
    """The CPU share other processes used between :meth:`start` (at creation) and
    :meth:`share`.

    Example:
        >>> load = OtherLoad()
        >>> share = load.share()  # doctest: +SKIP
        >>> share is None or 0.0 <= share <= 1.0
        True
    """

    machine_s: float | None = field(default_factory=lambda: _machine_busy_s())
    own_s: float = field(default_factory=lambda: own_cpu_s())
    wall_s: float = field(default_factory=lambda: time.perf_counter())

    def share(self) -> float | None:
        """Other processes' CPU time since the start, as a share of all CPUs' time (0 to 1);
        ``None`` where the machine's CPU time cannot be read."""
        machine = _machine_busy_s()
        if machine is None or self.machine_s is None:
            return None
        wall = time.perf_counter() - self.wall_s
        if wall <= 0:
            return 0.0
        others = (machine - self.machine_s) - (own_cpu_s() - self.own_s)
        return min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1))))

    def note(self, share: float | None = None) -> str | None:
        """A warning when other processes used more than :data:`BUSY_SHARE` of the machine
        since the start (or, given, the ``share`` :meth:`share` returned), else ``None``."""
        if share is None:
            share = self.share()
        if share is None or share <= BUSY_SHARE:
            return None
        return (
            f"the machine was busy: other processes used {100 * share:.0f}% of its CPU time "
            "while this was timed, so its timings and ratios are not those of a quiet machine"
        )
