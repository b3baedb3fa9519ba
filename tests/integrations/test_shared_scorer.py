"""The process-wide scorer that the trainer adapters share (verl calls it from a thread pool)."""

from __future__ import annotations

import threading

from medreward import Status
from medreward.integrations import get_scorer

SPEC = {
    "name": "shared-sleepy",
    "components": [
        {"name": "format", "kind": "format.tags"},
        {"name": "sleeps", "kind": "faulty_components:Sleeps"},
    ],
}
GOOD = "<think>r</think><answer>opioids</answer>"


def test_a_hung_sample_holds_up_only_its_own_thread():
    shared = get_scorer(SPEC, time_limit=2.0)
    finished: list[str] = []
    results = {}
    hung_started = threading.Event()

    def hung() -> None:
        hung_started.set()
        results["hung"] = shared.score([{"completion": GOOD + " sleep"}])
        finished.append("hung")

    def quick() -> None:
        hung_started.wait()
        results["quick"] = shared.score([{"completion": GOOD}])
        finished.append("quick")

    threads = [threading.Thread(target=hung), threading.Thread(target=quick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # the quick sample did not wait for the hung one to reach its time limit
    assert finished == ["quick", "hung"]
    assert results["quick"][0][0].status is Status.OK and results["quick"][0][0].reward == 1.5
    assert results["hung"][0][0].status is Status.TIMEOUT
    # both batches are in the shared totals
    assert shared.total.n == 2 and shared.total.statuses == {"ok": 1, "timeout": 1}


def test_one_scorer_per_spec_and_limit():
    assert get_scorer("toxicology") is get_scorer("toxicology")
    assert get_scorer("toxicology", time_limit=5.0) is not get_scorer("toxicology")


def test_equal_spec_objects_share_a_scorer_and_a_gone_spec_leaves_no_entry():
    import gc

    from medreward.integrations import scorers
    from medreward.integrations.registry import load_spec_like

    first, second = load_spec_like("mcq"), load_spec_like("mcq")
    assert first is not second
    assert get_scorer(first, time_limit=3.0) is get_scorer(second, time_limit=3.0)  # same identity, not the same object
    assert get_scorer(first, time_limit=3.0) is get_scorer(first, time_limit=3.0)  # the memoised identity
    other = load_spec_like({**first.to_dict(), "name": "mcq-renamed"})
    assert get_scorer(other, time_limit=3.0) is not get_scorer(first, time_limit=3.0)
    looked_up_only = id(second)  # the cached scorers hold first and other; nothing holds second
    assert looked_up_only in scorers._SPEC_IDENTS
    del second
    gc.collect()
    assert looked_up_only not in scorers._SPEC_IDENTS
