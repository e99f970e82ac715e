"""keep_fastest(): the rule ``compile_for_inference(backend="auto")`` picks a CPU backend by, and
the release of the candidates that lose.

Fake candidates whose latency is set by ``time.sleep`` make the expected winner known in advance
(the margins are 100x, far beyond timing noise); the real path is checked through
``compile_for_inference`` with weak references to every runner it built.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
import warnings
import weakref
from collections.abc import Callable

import onnxruntime as ort
import pytest
import torch
from nets import mbconv_net, randomize_norms

import sepconv.deploy.choose as choose_module
import sepconv.deploy.runtime as runtime
from sepconv.bench.load import OtherLoad, child_pids
from sepconv.bench.timing import Timing
from sepconv.deploy.choose import keep_fastest
from sepconv.deploy.compiled import InferenceModel
from sepconv.deploy.registry import Backend

SHAPE = (1, 3, 8, 8)
X = torch.zeros(SHAPE)


def candidate(name: str, delay_s: float, calls: list[str]) -> InferenceModel:
    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(name)
        if delay_s:
            time.sleep(delay_s)
        return x

    return InferenceModel(backend=name, input_shape=SHAPE, threads=1, run=run)


def choose(built: dict[str, InferenceModel], rounds: int = 3) -> tuple[InferenceModel, dict]:
    race = keep_fastest(built, X, 1, rounds=rounds, block_s=0.02, settle_s=0.0)
    return race.winner, race.timings


def test_the_fastest_candidate_wins_and_every_median_is_reported() -> None:
    calls: list[str] = []
    built = {
        "slow": candidate("slow", 2e-3, calls),
        "fast": candidate("fast", 0.0, calls),
        "slower": candidate("slower", 4e-3, calls),
    }
    best, timings = choose(built)
    assert best.backend == "fast"
    assert set(timings) == {"slow", "fast", "slower"}
    # sleep(d) never returns before d has passed: a lower bound that needs no timer of ours.
    assert timings["slow"] >= 2.0 and timings["slower"] >= 4.0
    assert timings["fast"] == min(timings.values())


def test_the_losers_are_released_before_returning() -> None:
    calls: list[str] = []
    built = {"slow": candidate("slow", 2e-3, calls), "fast": candidate("fast", 0.0, calls)}
    refs = {name: (weakref.ref(model), weakref.ref(model.run)) for name, model in built.items()}
    best, _ = choose(built)
    assert built == {}
    assert refs["slow"][0]() is None and refs["slow"][1]() is None
    assert refs["fast"][0]() is best and refs["fast"][1]() is best.run


def test_a_candidate_far_behind_after_round_one_is_not_timed_again() -> None:
    calls: list[str] = []
    built = {"fast": candidate("fast", 0.0, calls), "far": candidate("far", 5e-3, calls)}
    choose(built, rounds=4)
    # One round of "far" is 2 warm-up calls, the call that sizes a block and about 0.02 s of
    # 5 ms calls (at least 3): well under 10. Four rounds would be over 20.
    assert 6 <= calls.count("far") < 10


def test_only_an_eligible_candidate_wins_and_sets_the_bar_of_the_race() -> None:
    calls: list[str] = []
    built = {
        "ineligible": candidate("ineligible", 0.0, calls),  # e.g. int8 that failed its check
        "a": candidate("a", 5e-3, calls),
        "b": candidate("b", 6e-3, calls),
    }
    best, timings, _ = keep_fastest(
        built, X, 1, rounds=4, block_s=0.02, settle_s=0.0, eligible=("a", "b")
    )
    assert best.backend == "a" and set(timings) == {"ineligible", "a", "b"}
    assert timings["ineligible"] < timings["a"]  # faster, timed and reported, yet not chosen
    # Against the ineligible one both would be far behind and timed in round one only (under
    # 10 calls, see above); against "a", "b" stays in all four rounds (over 20 calls).
    assert calls.count("b") > 20 and calls.count("a") > 20


@pytest.mark.parametrize("eligible", [(), ("a", "nope")])
def test_eligible_names_only_candidates(eligible: tuple[str, ...]) -> None:
    built = {"a": candidate("a", 0.0, [])}
    with pytest.raises(ValueError, match=r"`eligible`: expected a non-empty subset"):
        keep_fastest(built, X, 1, rounds=1, block_s=0.01, settle_s=0.0, eligible=eligible)


def test_a_tie_goes_to_the_first_candidate_and_the_order_rotates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def same_time(fn: Callable[[], object], **kwargs: object) -> Timing:
        fn()  # one call, so that `calls` records the order of the timings
        return Timing.from_samples([1e-3] * 3, threads=1, device="cpu")

    monkeypatch.setattr(choose_module, "measure", same_time)
    calls: list[str] = []
    built = {name: candidate(name, 0.0, calls) for name in ("b", "a", "c")}
    best, timings = choose(built, rounds=3)
    assert best.backend == "b" and timings == {"b": 1.0, "a": 1.0, "c": 1.0}
    assert calls == ["b", "a", "c", "a", "c", "b", "c", "b", "a"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"built": {}}, r"`built`: expected at least one candidate"),
        ({"rounds": 0}, r"`rounds`: expected a positive integer"),
        ({"block_s": 0.0}, r"`block_s`"),
        ({"settle_s": -1.0}, r"`settle_s`"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict, message: str) -> None:
    args: dict = {"built": {"a": candidate("a", 0.0, [])}, **kwargs}
    built = args.pop("built")
    with pytest.raises(ValueError, match=message):
        keep_fastest(built, X, 1, **args)


def test_auto_releases_every_runtime_it_did_not_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, tuple[weakref.ref, list[weakref.ref]]] = {}
    build = Backend.build

    def recording(row: Backend, *args: object) -> tuple[Callable, str]:
        runner, precision = build(row, *args)  # type: ignore[arg-type]
        # The ONNX Runtime session the runner's closure holds, if it is one.
        cells = [c.cell_contents for c in runner.__closure__ or ()]
        sessions = [weakref.ref(c) for c in cells if isinstance(c, ort.InferenceSession)]
        built[row.name] = (weakref.ref(runner), sessions)
        return runner, precision

    monkeypatch.setattr(Backend, "build", recording)
    torch.manual_seed(0)
    net = randomize_norms(mbconv_net(3), seed=1).eval()
    compiled = runtime.compile_for_inference(net, input_size=(3, 32, 32), threads=1)
    gc.collect()
    assert set(built) == set(runtime.AUTO_BACKENDS)
    assert built["onnxruntime"][1], "the ONNX Runtime runner holds its session"
    for name, (runner, sessions) in built.items():
        if name == compiled.backend:
            assert runner() is compiled.run
        else:
            assert runner() is None, f"{name} was not released"
            assert all(session() is None for session in sessions)


def test_a_race_on_a_busy_machine_warns_and_returns_how_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What other processes used during the race, as OtherLoad reports it (its reading of
    # /proc/stat is tested in test_bench_timing.py): 40% of the machine, then 2%.
    for share, warns in ((0.4, True), (0.02, False)):
        load = OtherLoad()
        load.share = lambda share=share: share  # type: ignore[method-assign]
        monkeypatch.setattr(choose_module, "OtherLoad", lambda load=load: load)
        built = {"a": candidate("a", 1e-3, []), "b": candidate("b", 2e-3, [])}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            race = keep_fastest(built, X, 1, rounds=2, block_s=0.02, settle_s=0.0)
        busy = [w for w in caught if "the machine was busy" in str(w.message)]
        assert len(busy) == int(warns) and race.busy_share == share
        assert race.winner.backend == "a"
        if warns:
            assert busy[0].category is RuntimeWarning and "40%" in str(busy[0].message)


def test_the_race_waits_for_the_child_processes_the_builds_started() -> None:
    before = child_pids()
    # As `import openvino` does: a short-lived process started while the candidates build.
    started = multiprocessing.Process(target=time.sleep, args=(0.5,), daemon=True)
    started.start()
    built = {"a": candidate("a", 0.0, [])}
    began = time.perf_counter()
    keep_fastest(built, X, 1, rounds=1, block_s=0.01, settle_s=0.0, children_before=before)
    assert not started.is_alive() and time.perf_counter() - began >= 0.3
    # Without children_before it does not wait (for a process that would outlive any race).
    again = multiprocessing.Process(target=time.sleep, args=(60,), daemon=True)
    again.start()
    keep_fastest({"a": candidate("a", 0.0, [])}, X, 1, rounds=1, block_s=0.01, settle_s=0.0)
    assert again.is_alive()
    again.terminate()
    again.join()


def test_auto_records_how_busy_the_machine_was_during_its_race() -> None:
    torch.manual_seed(0)
    net = randomize_norms(mbconv_net(3), seed=1).eval()
    chosen = runtime.compile_for_inference(
        net, input_size=(3, 32, 32), threads=1, candidates=("eager", "onnxruntime")
    )
    named = runtime.compile_for_inference(
        net, backend="onnxruntime", input_size=(3, 32, 32), threads=1
    )
    if chosen.race_busy_share is None:
        pytest.skip("this operating system does not say what the machine's CPUs did")
    assert 0.0 <= chosen.race_busy_share <= 1.0
    assert named.race_busy_share is None  # nothing was raced
