"""A component that raises, hangs, returns NaN or leaves its range affects only its own samples."""

from __future__ import annotations

import time

import pytest

from medreward import Scorer, Status


def spec(*kinds: str) -> dict:
    return {
        "name": "faulty",
        "components": [{"name": "format", "kind": "format.tags", "weight": 1.0}]
        + [{"name": k.split(":")[1].lower(), "kind": k, "weight": 1.0} for k in kinds],
    }


GOOD = "<think>reasoning</think><answer>opioids</answer>"


def records(*completions: str) -> list[dict]:
    return [{"id": str(i), "completion": c} for i, c in enumerate(completions)]


@pytest.mark.parametrize("workers", [0, 2])
def test_raise_and_hang_affect_only_their_samples(workers):
    scorer = Scorer(spec("faulty_components:Raises", "faulty_components:Sleeps"), time_limit=0.5, workers=workers)
    started = time.perf_counter()
    out = scorer.score(records(GOOD, GOOD + " boom", GOOD + " sleep", GOOD, "no tags"))
    elapsed = time.perf_counter() - started
    assert [r.status for r in out] == [Status.OK, Status.ERROR, Status.TIMEOUT, Status.OK, Status.OK]
    assert [r.reward for r in out] == [2.5, None, None, 2.5, 1.5]
    assert "kaboom" in out[1].info["error"] and out[1].info["error"].startswith("raises:")
    assert "time limit" in out[2].info["error"]
    # the components that did work are still reported on the failed samples
    assert out[1].components == {"format": 1.0, "raises": None, "sleeps": 0.5}
    assert out[2].components == {"format": 1.0, "raises": 1.0, "sleeps": None}
    # the 30 s sleep was cut off near the limit (generous bound: worker start-up is included)
    assert elapsed < 20
    assert [r.record["id"] for r in out] == ["0", "1", "2", "3", "4"]


def test_timeout_off_the_main_thread():
    import threading

    result = {}

    def run():
        scorer = Scorer(spec("faulty_components:Sleeps"), time_limit=0.3)
        result["out"] = scorer.score(records("sleep", GOOD))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert [r.status for r in result["out"]] == [Status.TIMEOUT, Status.OK]


def test_nan_and_out_of_range_values_are_errors_not_scores():
    scorer = Scorer(spec("faulty_components:ReturnsNaN"))
    out = scorer.score(records("nan", GOOD))
    assert out[0].status is Status.ERROR and out[0].reward is None
    assert "non-finite" in out[0].info["error"]
    assert out[1].reward == 1.25
    scorer = Scorer(spec("faulty_components:OutOfRange"))
    [r] = scorer.score(records(GOOD))
    assert r.status is Status.ERROR and "outside its range" in r.info["error"]


@pytest.mark.parametrize("time_limit", [None, 1.0])
def test_batch_component_failure_is_narrowed_to_the_culprit(time_limit):
    scorer = Scorer(spec("faulty_components:BatchRaises"), time_limit=time_limit)
    out = scorer.score(records(GOOD, GOOD + " boom", GOOD))
    assert [r.status for r in out] == [Status.OK, Status.ERROR, Status.OK]
    assert out[0].components["batchraises"] == 1.0


def test_stats_count_statuses_and_time():
    scorer = Scorer(spec("faulty_components:Raises"))
    scorer.score(records(GOOD, "boom", GOOD))
    stats = scorer.stats
    assert stats.n == 3
    assert stats.statuses == {"ok": 2, "error": 1}
    assert stats.components["raises"].counts == {"ok": 2, "error": 1}
    assert stats.components["format"].mean == pytest.approx(2 / 3)
    assert stats.slowest_component is not None


def test_worker_results_keep_info_objects_that_marshal_cannot_carry():
    from fractions import Fraction

    scorer = Scorer(spec("faulty_components:RichInfo"), workers=2, chunk_size=2)
    out = scorer.score(records(GOOD, "no tags", GOOD))
    assert [r.reward for r in out] == [1.5, 0.5, 1.5]
    assert all(r.info["richinfo"] == {"ratio": Fraction(1, 3)} for r in out)
    # the echoed records are the inputs, rebuilt in the parent
    assert [r.record for r in out] == records(GOOD, "no tags", GOOD)


@pytest.mark.parametrize("time_limit", [None, 5.0])
def test_component_errors_leave_no_garbage_cycles(time_limit):
    """Scoring pauses the cyclic GC, so an error must not keep its traceback's frames (and their
    rollouts) alive in a cycle: only the message is kept."""
    import gc

    scorer = Scorer(spec("faulty_components:Raises"), time_limit=time_limit)
    scorer.score(records(GOOD + " boom"))  # warm up: first-use caches are not garbage
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        out = scorer.score(records(*[GOOD + " boom"] * 200))
        assert all(r.status is Status.ERROR for r in out)
        unreachable = gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    assert unreachable < 50  # 200 kept tracebacks would leave well over 600 objects in cycles


def test_components_share_one_hand_off_to_the_time_limit_worker_per_group(monkeypatch):
    """Under a time limit, the per-sample components run in one hand-off to the worker thread and
    the batch components in another, not one each: a hand-off costs tens of µs of CPU, which for a
    reward server's 16-rollout requests was as much as the scoring. Limits and results stay per
    component and sample."""
    from medreward.runner import watchdog

    submitted = []
    original = watchdog.DaemonWorker.submit
    monkeypatch.setattr(watchdog.DaemonWorker, "submit", lambda self, fn: submitted.append(fn) or original(self, fn))
    batch_only = Scorer("toxicology", time_limit=5.0)  # format.tags and multilabel: two batch components
    batch_only.score([{"completion": GOOD, "reference": {"substances": ["opioids"]}}] * 16)
    assert len(submitted) == 1
    submitted.clear()
    mixed = Scorer(spec("faulty_components:Raises", "faulty_components:Slow"), time_limit=5.0)
    out = mixed.score(records(GOOD, GOOD + " boom", GOOD))
    assert len(submitted) == 2  # format's batch (under the batch limit), then raises and slow together
    assert [r.status for r in out] == [Status.OK, Status.ERROR, Status.OK]
    assert out[1].components == {"format": 1.0, "raises": None, "slow": 1.0}
    assert mixed.stats.components["slow"].seconds >= 3 * 0.002  # each component's own time, measured on the worker
    assert mixed.stats.components["raises"].seconds < mixed.stats.components["slow"].seconds
