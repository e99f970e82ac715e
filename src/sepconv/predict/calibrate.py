"""``calibrate``: time a sampled set of kernels on this machine and backend, within a budget.

1. **Fusions.** The test cases of :mod:`sepconv.predict.fusion` decide which activations and
   residual adds a graph runtime fuses into the conv before them; from then on every kernel is
   sampled as the backend runs it. Eager PyTorch runs each op it is called with, so it is not
   tested (timing noise once made a test case "find" a fusion there).
2. **Initial sample.** Kernels of random networks of the design space
   (:class:`~sepconv.predict.sampling.KernelPool`), until :data:`INITIAL_SHARE` of the budget
   is spent.
3. **Adaptive sample.** Rounds of fresh kernels, each predicted from the samples so far
   *before* it is timed (a held-out test of the predictor); the kernels it missed by more
   than :data:`MISS` get their neighbours timed too (:func:`~sepconv.predict.sampling.neighbours`),
   so samples concentrate where the prediction error is largest. Every timed kernel joins the
   samples. The held-out errors (relative to the measured time, or to :data:`ERROR_FLOOR_S`
   if more) go into the profile.
4. **Whole networks, throughout.** Between kernels, whenever their share of the time so far
   is below a tenth, random networks are timed whole
   (:class:`~sepconv.predict.whole_networks.WholeNetworks`); at the end they fit what a model
   pays beyond its kernels. After a network, every ten seconds, the reference network of
   :mod:`sepconv.predict.speed` is timed too: its typical time is the profile's record of the
   machine's speed.

Kernels are timed as :mod:`sepconv.predict.timers` describes, leaving out blocks another
process disturbed (:mod:`sepconv.predict.quiet`); the profile records the machine, how many
blocks were disturbed, and what else used the machine meanwhile
(:class:`sepconv.bench.load.OtherLoad`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sepconv.bench.load import OtherLoad
from sepconv.bench.timing import measure, pinned_threads
from sepconv.deploy.registry import find, rows
from sepconv.predict.fusion import detect_fusions
from sepconv.predict.kernels import Kernel
from sepconv.predict.profile import Profile, machine_record
from sepconv.predict.regression import KernelRegressor, fits_slopes, group_key, rmspe
from sepconv.predict.sampling import KernelPool, neighbours
from sepconv.predict.speed import SpeedProbe, reference_network
from sepconv.predict.timers import TIMED_BACKENDS, make_timers
from sepconv.predict.whole_networks import OVERHEAD_NETWORKS, WholeNetworks
from sepconv.utils.validation import MAX_BATCH, bounded_int, finite_number, invalid, thread_count

__all__ = ["DEFAULT_BUDGET_S", "INITIAL_SHARE", "MISS", "calibrate"]

#: The budget ``sepconv calibrate`` spends unless told.
DEFAULT_BUDGET_S = 300.0
#: Share of the budget the fusion test cases may take (their first round always runs).
FUSION_SHARE = 0.15
#: Share of the budget spent on the initial random sample.
INITIAL_SHARE = 0.4
#: A held-out kernel predicted further off than this gets its neighbours timed.
MISS = 0.05
#: Errors are relative to the measured time, or to this many seconds if more: a kernel of a
#: microsecond is within its timing noise, and a fused-away one measures about zero.
ERROR_FLOOR_S = 5e-6
# Fresh kernels per adaptive round, and neighbours per missed one.
ROUND = 24
NEAR = 3
# Share of the budget kept at the end (at most RESERVE_MAX_S seconds) for the whole networks
# not yet timed (sepconv.predict.whole_networks: they are timed throughout) and the fit.
RESERVE_SHARE = 0.03
RESERVE_MAX_S = 6.0
# The shortest budget that leaves time for the fusion tests and a useful sample.
MIN_BUDGET_S = 20.0


def _check_backend(backend: str, device: str) -> tuple[str, ...]:
    row = find(backend, rows(device), argument="backend")
    variants = TIMED_BACKENDS.get((row.name, device))
    if variants is None:
        timed = sorted({name for name, dev in TIMED_BACKENDS if dev == device})
        raise invalid(
            "backend",
            f"a backend whose kernels can be timed on {device}: {', '.join(timed)}",
            backend,
        )
    row.require()
    return variants


def _call_seconds(timer: Any, variant: str, threads: int, device: str) -> float:
    """The runtime's fixed cost of one model call (what a model pays once, not per kernel)."""
    if hasattr(timer, "call_s"):
        return float(timer.call_s)
    x = torch.zeros(1, 3, 8, 8, device=device)
    layout = torch.channels_last if variant == "nhwc" else torch.contiguous_format

    def call() -> torch.Tensor:
        with pinned_threads(threads), torch.inference_mode():
            return x.contiguous(memory_format=layout).float()

    return measure(call, warmup=3, repeats=9).median_s


def calibrate(
    backend: str = "onnxruntime",
    *,
    threads: int = 1,
    budget_s: float = DEFAULT_BUDGET_S,
    device: str = "cpu",
    batch_sizes: Sequence[int] = (1,),
    seed: int = 0,
    max_kernels: int | None = None,
    profiler: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> Profile:
    """Time kernels on this machine and ``backend`` for about ``budget_s`` seconds.

    Args:
        backend: ``"onnxruntime"``, ``"openvino"`` or ``"eager"`` (and ``"eager"`` on CUDA).
        threads: Intra-op threads of the backend (the profile predicts for this count only).
        budget_s: Seconds to spend; the calibration stops sampling when they are spent
            (a minute or two already predicts MobileNets; longer predicts better).
        device: ``"cpu"`` or ``"cuda"``.
        batch_sizes: Batch sizes to sample at (the first drawn most often).
        seed: Seed of the sampled networks.
        max_kernels: Stop once this many kernels are measured (default: when the budget is
            spent).
        profiler: Time ONNX Runtime's kernels by its profiler's node durations
            (:mod:`sepconv.predict.ort_profiler`) rather than from outside; ``"onnxruntime"``
            only (default: ``True`` there, the more accurate of the two).
        progress: Called with a line of news now and then.

    Returns:
        The :class:`Profile`; save it with ``.save(path)``.

    Example:
        >>> profile = calibrate("onnxruntime", threads=2, budget_s=120)  # doctest: +SKIP
        >>> profile.save("ort_2t.json")  # doctest: +SKIP
    """
    thread_count("threads", threads)
    finite_number(
        "budget_s",
        budget_s,
        low=MIN_BUDGET_S,
        high=24 * 3600.0,
        expected=f"a number of seconds from {MIN_BUDGET_S:g} to 86400",
    )
    if not batch_sizes:
        raise invalid("batch_sizes", "at least one batch size", batch_sizes)
    for batch in batch_sizes:
        bounded_int("batch_sizes", batch, 1, MAX_BATCH)
    if max_kernels is not None:
        bounded_int("max_kernels", max_kernels, 1, 200_000)
    variants = _check_backend(backend, device)
    if profiler and backend != "onnxruntime":
        raise invalid(
            "profiler",
            f"None or False with backend {backend!r} (only 'onnxruntime' has a profiler)",
            profiler,
        )
    if profiler is None:
        profiler = backend == "onnxruntime"
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    deadline = start + budget_s
    load = OtherLoad()
    timers: dict[str, Any] = {}
    networks: WholeNetworks | None = None
    try:
        timers.update(make_timers(backend, device, threads, profiler))
        for timer in timers.values():
            timer.deadline = deadline
        eager = not hasattr(timers[variants[0]], "empty")  # a runtime of modules, not a graph
        fusions: Sequence[str] = ()
        verdicts: Sequence[Any] = ()
        if eager:  # it runs every op it is called with: there is no fusion to find
            say("fusions: none (eager PyTorch runs each op on its own)")
        else:
            timer = timers[variants[0]]
            fusions, verdicts = detect_fusions(
                timer.isolated,
                deadline=start + FUSION_SHARE * budget_s,
                plan_fuses=getattr(timer, "plan_fuses", None),
            )
            say(f"fusions found: {', '.join(fusions) or 'none'}")
        call_s = {v: _call_seconds(timers[v], v, threads, device) for v in variants}
        slopes = fits_slopes(backend)  # how its kernels are predicted
        reference, shape, name = reference_network()
        # Read undisturbed where the kernels are (sepconv.predict.speed).
        probe = SpeedProbe(
            timers[variants[0]].network(reference, shape, "reference"), name, undisturbed=not slopes
        )
        # Timed throughout the sampling: whole networks (what a model pays beyond its kernels)
        # and the reference network (the machine's typical speed over the calibration).
        reserve = min(RESERVE_SHARE * budget_s, RESERVE_MAX_S)
        networks = WholeNetworks(
            timers, fusions, eager=eager, device=device, seed=seed, probe=probe, slopes=slopes
        )
        sampler = _Sampler(timers, variants, deadline - reserve, max_kernels, networks)
        pool = KernelPool(np.random.default_rng(seed), fusions, batch_sizes)
        initial_end = start + INITIAL_SHARE * budget_s
        initial_count = INITIAL_SHARE * (max_kernels or np.inf)
        while time.perf_counter() < initial_end and len(sampler.samples) < initial_count:
            if not sampler.time_all(pool.draw(8), initial_end):
                break
        say(f"initial sample: {len(sampler.samples)} kernels")
        held_out = _adaptive(sampler, pool, variants, np.random.default_rng(seed + 1), say, slopes)
        # Every network timed at least once, if the budget allows.
        while networks.done < OVERHEAD_NETWORKS and time.perf_counter() < deadline:
            networks.time_next()
        if not probe.readings:  # no network timed: a reading all the same
            probe.read()
        fits, fit = networks.fit(sampler.samples, call_s)
        module_call_s = {v: f.module_call_s for v, f in fits.items()}
        kernel_scale = {v: f.kernel_scale for v, f in fits.items()}
        say(
            f"whole networks ({len({r['network'] for r in fit['networks']})} networks, "
            f"{networks.done} timings): "
            + ", ".join(
                f"{v} kernels x{f.kernel_scale:.2f}"
                + (f", {1e6 * f.module_call_s:.1f} us per module call" if eager else "")
                for v, f in fits.items()
            )
        )
    finally:
        if networks is not None:
            networks.close()
        for timer in timers.values():
            timer.close()
    elapsed = time.perf_counter() - start
    return Profile(
        backend=backend,
        device=device,
        threads=threads,
        machine=machine_record(backend, threads),
        variants=variants,
        fusions=tuple(fusions),
        fusion_tests=tuple(v.to_dict() for v in verdicts),
        call_s=call_s,
        module_call_s=module_call_s,
        kernel_scale=kernel_scale,
        samples=tuple(sampler.samples.items()),
        budget_s=float(budget_s),
        elapsed_s=elapsed,
        other_cpu_share=load.share(),
        validation={
            **_validation(held_out),
            **_disturbance(timers),
            "network_fit": fit,
            "speed": probe.record(start),
            **_kernel_timing(timers[variants[0]]),
        },
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


class _Sampler:
    """Times kernels in every variant while the budget lasts."""

    def __init__(
        self,
        timers: dict[str, Any],
        variants: Sequence[str],
        deadline: float,
        max_kernels: int | None = None,
        networks: WholeNetworks | None = None,
    ) -> None:
        self.timers = timers
        self.networks = networks
        self.variants = tuple(variants)
        self.deadline = deadline
        self.max_kernels = max_kernels
        self.samples: dict[Kernel, dict[str, float]] = {}
        self._spent: list[float] = []

    def fits(self, until: float | None = None) -> bool:
        """Whether one more kernel fits before ``until`` (default: the deadline)."""
        if self.max_kernels is not None and len(self.samples) >= self.max_kernels:
            return False
        typical = float(np.median(self._spent[-50:])) if self._spent else 0.1
        return time.perf_counter() + typical < min(until or self.deadline, self.deadline)

    def time_all(self, kernels: Sequence[Kernel], until: float | None = None) -> list[Kernel]:
        """Time each of ``kernels`` that fits; the ones timed."""
        done = []
        for kernel in kernels:
            if not self.fits(until):
                break
            if self.networks is not None and self.networks.due():
                self.networks.time_next()
            began = time.perf_counter()
            self.samples[kernel] = {v: self.timers[v]([kernel]) for v in self.variants}
            self._spent.append(time.perf_counter() - began)
            done.append(kernel)
        return done


def _adaptive(
    sampler: _Sampler,
    pool: KernelPool,
    variants: Sequence[str],
    rng: np.random.Generator,
    say: Callable[[str], None],
    slopes: bool,
) -> list[tuple[Kernel, float]]:
    """The adaptive rounds; every held-out kernel with its worst relative error (predicted by
    a local fit, or not: ``slopes``, :func:`~sepconv.predict.regression.fits_slopes`)."""
    held_out: list[tuple[Kernel, float]] = []
    rounds = 0
    while sampler.fits():
        kernels = list(sampler.samples)
        regressors = {
            v: KernelRegressor(kernels, [sampler.samples[k][v] for k in kernels], slopes)
            for v in variants
        }
        fresh = pool.draw(ROUND)
        predicted = {}
        for kernel in fresh:
            try:
                predicted[kernel] = {v: regressors[v].predict(kernel) for v in variants}
            except ValueError:  # a group never sampled yet: a miss by definition
                predicted[kernel] = {v: float("inf") for v in variants}
        timed = sampler.time_all(fresh)
        missed = []
        for kernel in timed:
            errors = [
                (predicted[kernel][v] - sampler.samples[kernel][v])
                / max(sampler.samples[kernel][v], ERROR_FLOOR_S)
                for v in variants
            ]
            worst = max(errors, key=abs)
            if np.isfinite(worst):
                held_out.append((kernel, worst))
            if not np.isfinite(worst) or abs(worst) > MISS:
                missed.append(kernel)
        near = [n for k in missed for n in neighbours(k, rng, NEAR) if n not in sampler.samples]
        pool.mark(near)
        sampler.time_all(near)
        rounds += 1
        if rounds % 5 == 0:
            recent = [e for _, e in held_out[-5 * ROUND :]]
            say(
                f"{len(sampler.samples)} kernels; held-out error of the last {len(recent)}: "
                f"RMSPE {100 * rmspe(recent):.1f}%"
            )
    return held_out


def _disturbance(timers: dict[str, Any]) -> dict[str, Any]:
    """How many timed blocks other processes disturbed (left out and timed again)."""
    kept = sum(getattr(t, "kept", 0) for t in timers.values())
    disturbed = sum(getattr(t, "disturbed", 0) for t in timers.values())
    profiled = sum(getattr(t, "profiled_runs", 0) for t in timers.values())
    return {"blocks_kept": kept, "blocks_disturbed": disturbed, "profiled_runs": profiled}


def _kernel_timing(timer: Any) -> dict[str, Any]:
    """How the kernels were timed: by ONNX Runtime's profiler (what it adds to a node's
    duration, taken off; how many kernels were their own nodes' durations, and how many had
    their sandwich subtracted) or from outside."""
    if getattr(timer, "profiled", False):
        return {
            "kernel_timing": "profiler",
            "profiler_node_s": timer.profiler_node_s,
            "kernels_by_own_nodes": timer.kernels_by_own_nodes,
            "kernels_less_sandwich": timer.kernels_less_sandwich,
        }
    return {"kernel_timing": "outside"}


def _validation(held_out: Sequence[tuple[Kernel, float]]) -> dict[str, Any]:
    """Summary of the held-out kernel errors: overall and by kernel group."""
    if not held_out:
        return {"held_out_kernels": 0}
    errors = np.array([e for _, e in held_out])
    groups: dict[str, list[float]] = {}
    for kernel, error in held_out:
        name = "/".join(str(p) for p in group_key(kernel) if p not in ("", None))
        groups.setdefault(name, []).append(error)
    last = errors[len(errors) // 2 :]  # the second half: the predictor nearer its final state
    return {
        "held_out_kernels": int(errors.size),
        "rmspe": rmspe(errors),
        "rmspe_second_half": rmspe(last),
        "within_10pct_second_half": float(np.mean(np.abs(last) <= 0.10)),
        "by_group": {
            name: {"kernels": len(e), "rmspe": rmspe(e)} for name, e in sorted(groups.items())
        },
    }
