"""How ``compile_for_inference(backend="auto")`` picks one of the CPU backends it built.

Candidates that differ by a few percent need more than a handful of calls to be told apart
repeatably, and every candidate left alive keeps its runtime's threads (ONNX Runtime's intra-op
pool spins for a while after each call), which slows whatever runs next in the process. So the
candidates are timed in alternating blocks of a fixed time budget, and the losers are released
before the winner is returned.
"""

from __future__ import annotations

import functools
import gc
import warnings
from collections.abc import Collection
from typing import NamedTuple

import numpy as np
import torch

from sepconv.bench.load import OtherLoad, wait_for_children
from sepconv.bench.timing import RUNTIME_SETTLE_S, interleaved_order, measure
from sepconv.deploy.compiled import InferenceModel
from sepconv.utils.validation import invalid, positive_int, positive_number

__all__ = ["CHOICE_BLOCK_S", "CHOICE_ROUNDS", "FAR_BEHIND", "Race", "keep_fastest"]

#: Rounds in which every candidate still in the race is timed once, the order changing.
CHOICE_ROUNDS = 5
#: Seconds of timed calls per candidate per round (after a pause and two warm-up calls).
CHOICE_BLOCK_S = 0.1
#: After the first round, a candidate whose median is above this multiple of the best eligible
#: one's is not timed again: a candidate that far behind (eager PyTorch next to the ONNX
#: runtimes, results/deploy/README.md) cannot catch up, and timing it would only lengthen the
#: build.
FAR_BEHIND = 1.5
_MANY = 1_000_000


class Race(NamedTuple):
    """What :func:`keep_fastest` returns.

    Attributes:
        winner: The fastest eligible candidate, with nothing else changed.
        timings: Candidate name -> median milliseconds, for every candidate timed.
        busy_share: The share of the machine's CPU time other processes used during the race
            (0 to 1; :class:`sepconv.bench.load.OtherLoad`), ``None`` where the operating
            system does not say. Above :data:`sepconv.bench.load.BUSY_SHARE` the race ran on a
            busy machine.
    """

    winner: InferenceModel
    timings: dict[str, float]
    busy_share: float | None


def keep_fastest(
    built: dict[str, InferenceModel],
    example: torch.Tensor,
    threads: int,
    *,
    rounds: int = CHOICE_ROUNDS,
    block_s: float = CHOICE_BLOCK_S,
    settle_s: float = RUNTIME_SETTLE_S,
    eligible: Collection[str] | None = None,
    children_before: Collection[int] | None = None,
) -> Race:
    """Time the candidates of ``built`` on ``example``, return the fastest, every median and
    how busy the machine was, and release the others.

    The rule: in each of ``rounds`` rounds every candidate still in the race is timed once, the
    order changing from round to round so that none is always timed after the same other one
    (:func:`sepconv.bench.timing.interleaved_order`).
    A timing is a pause of ``settle_s`` (the previous runtime's worker threads go idle), two
    warm-up calls, then blocks of calls (:func:`sepconv.bench.timing.measure`) until
    ``block_s`` seconds of calls have passed, at least 3 blocks. A candidate's median is the
    median of all its per-call samples over the rounds; after the first round a candidate
    slower than :data:`FAR_BEHIND` times the best eligible median is left out of later rounds
    (its first-round median is what it reports). The eligible candidate with the lowest median
    wins; ties go to the earlier candidate of ``built``.

    Candidates that may not win (``eligible``) are timed alongside for the report, but do not
    set the bar of the race: an int8 candidate that failed its agreement check, twice as fast
    as every fp32 one, would otherwise leave the eligible ones a single round to be told apart
    by.

    When other processes take more than :data:`sepconv.bench.load.BUSY_SHARE` of the machine
    during the race, a ``RuntimeWarning`` says so: the choice is then the fastest on a busy
    machine, which need not be the fastest on a quiet one. The share is returned either way
    (:attr:`Race.busy_share`), so that a caller can record the conditions of its choice.

    With ``children_before`` (the ids of this process's child processes before the
    candidates were built, :func:`sepconv.bench.load.child_pids`), the race first waits, up to
    :data:`sepconv.bench.load.CHILDREN_WAIT_S`, for the child processes the builds started to
    end: ``import openvino`` sends usage telemetry from a forked process that lives up to 3 s.

    Before returning, ``built`` is emptied and the garbage collector runs, so that the losing
    runners, their ONNX Runtime sessions or OpenVINO compiled models, and the threads those
    keep, are destroyed once the caller holds no other reference to them.

    Args:
        built: Candidate name -> checked :class:`InferenceModel` (emptied by this call).
        example: The input every candidate is timed on, of the compiled shape.
        threads: Intra-op threads PyTorch is pinned to while timing.
        rounds: Alternating rounds (default :data:`CHOICE_ROUNDS`).
        block_s: Seconds of timed calls per candidate and round (default
            :data:`CHOICE_BLOCK_S`).
        settle_s: Pause before each timing (default
            :data:`~sepconv.bench.timing.RUNTIME_SETTLE_S`).
        eligible: Names of ``built`` that may win (default: all).
        children_before: Child processes to leave running (default: wait for none).

    Returns:
        The :class:`Race`: the fastest model, with nothing else changed; candidate -> median
        milliseconds; the share of the machine other processes used meanwhile.

    Example:
        >>> import torch
        >>> from sepconv.deploy.compiled import InferenceModel
        >>> fast = InferenceModel("a", (1, 1, 1, 1), 1, run=lambda x: x)
        >>> slow = InferenceModel("b", (1, 1, 1, 1), 1, run=lambda x: x.exp().log())
        >>> race = keep_fastest({"a": fast, "b": slow}, torch.ones(1, 1, 1, 1), 1,
        ...                     rounds=2, block_s=0.01, settle_s=0.0)
        >>> sorted(race.timings)
        ['a', 'b']
    """
    if not built:
        raise invalid("built", "at least one candidate", built)
    positive_int("rounds", rounds)
    positive_number("block_s", block_s)
    if settle_s < 0:
        raise invalid("settle_s", ">= 0", settle_s)
    names = list(built)
    allowed = names if eligible is None else [name for name in names if name in eligible]
    if not allowed or (eligible is not None and set(eligible) - set(names)):
        raise invalid("eligible", f"a non-empty subset of the candidates {names}", eligible)
    samples: dict[str, list[float]] = {name: [] for name in names}
    racing = list(names)
    if children_before is not None:
        wait_for_children(children_before)  # what is left after the wait shows in the load
    load = OtherLoad()  # what other processes take of the machine during the race
    for r in range(rounds):
        for index in interleaved_order(len(racing), r):
            name = racing[index]
            model = built[name]
            timing = measure(
                functools.partial(model.run, example),
                warmup=2,
                repeats=_MANY,  # the time budget ends the timing, not the count
                max_time_s=block_s,
                threads=threads,
                settle_s=settle_s,
            )
            samples[name].extend(timing.samples_s)
        if r == 0:
            first = {name: float(np.median(samples[name])) for name in racing}
            best_first = min(first[name] for name in allowed)
            racing = [name for name in racing if first[name] <= FAR_BEHIND * best_first]
    timings = {name: float(np.median(samples[name])) * 1e3 for name in names}
    busy_share = load.share()
    busy = load.note(busy_share)
    if busy is not None:
        warnings.warn(f"choosing the fastest backend: {busy}", RuntimeWarning, stacklevel=2)
    best = min(allowed, key=timings.__getitem__)  # min keeps the first of equal medians
    winner = built[best]
    # Release the losers now: a live ONNX Runtime session keeps spinning threads, and an
    # OpenVINO compiled model its memory, for as long as anything refers to them.
    built.clear()
    del model
    gc.collect()
    return Race(winner, timings, busy_share)
