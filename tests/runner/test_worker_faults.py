"""Worker processes that die, records that cannot travel, exceptions that are not Exceptions,
hangs the watchdog thread cannot stop, and odd arguments (issue 9, items 8, 9, 11-14, 20)."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from medreward import Scorer, Status

GOOD = "<think>reasoning</think><answer>opioids</answer>"


def spec(*kinds: str) -> dict:
    return {
        "name": "faulty",
        "components": [{"name": "format", "kind": "format.tags", "weight": 1.0}]
        + [{"name": k.split(":")[1].lower(), "kind": k, "weight": 1.0} for k in kinds],
    }


def records(*completions: str) -> list[dict]:
    return [{"id": str(i), "completion": c} for i, c in enumerate(completions)]


def worker_pids() -> list[int]:
    """This process's live worker processes (not multiprocessing's resource tracker, which lives
    as long as this test session)."""
    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def assert_no_workers_left(within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker_pids() == []


# -- item 8: a worker killed from outside -------------------------------------------------------
def test_killing_a_worker_mid_run_loses_no_record():
    scorer = Scorer(spec("faulty_components:Slow"), workers=2, chunk_size=50, time_limit=None)
    rows = records(*[GOOD] * 2000)  # 2 ms each: about 2 s on two workers
    out = []
    killed = None
    for record in scorer.iter_score(rows):
        out.append(record)
        if killed is None and len(out) == 50:  # the first chunk is back; others are in flight
            killed = worker_pids()[0]
            os.kill(killed, signal.SIGKILL)
            time.sleep(0.5)  # let the death be noticed before more input is read and submitted
    assert killed is not None and killed not in worker_pids()
    assert [r.record["id"] for r in out] == [r["id"] for r in rows]
    assert all(r.status is Status.OK and r.reward == 2.0 for r in out)
    assert scorer.stats.n == 2000 and scorer.stats.restarted_workers >= 1
    assert_no_workers_left()


# -- item 9: a sample that kills its worker ------------------------------------------------------
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_sample_that_kills_its_worker_is_the_only_error(isolation):
    rows = records(*[GOOD] * 1024)
    rows[700]["completion"] = GOOD + " die"
    scorer = Scorer(spec("faulty_components:KillsWorker"), workers=2, chunk_size=1024, isolation=isolation)
    out = scorer.score(rows)
    assert [r.record["id"] for r in out] == [r["id"] for r in rows]
    errors = [r for r in out if r.status is not Status.OK]
    assert [r.record["id"] for r in errors] == ["700"]
    assert errors[0].status is Status.ERROR and "worker process died" in errors[0].info["error"]
    assert errors[0].record == rows[700]
    assert scorer.stats.statuses == {"ok": 1023, "error": 1}


# -- item 14: a record that cannot be pickled -----------------------------------------------------
def test_an_unpicklable_field_does_not_lose_the_other_records():
    rows = records(*[GOOD] * 20)
    rows[5]["handle"] = threading.Lock()  # cannot be pickled, so cannot reach a worker
    out = Scorer("toxicology", workers=2, chunk_size=8).score(rows)
    assert [r.record["id"] for r in out] == [r["id"] for r in rows]
    # scored in the parent process instead: the same reward as its neighbours
    assert [r.components["format"] for r in out] == [1.0] * 20
    assert [r.status for r in out] == [out[0].status] * 20
    assert out[5].record["handle"] is rows[5]["handle"]


# -- item 11: SystemExit and KeyboardInterrupt raised by a component -------------------------------
@pytest.mark.parametrize(
    ("time_limit", "workers", "isolation"),
    [(None, 0, "thread"), (5.0, 0, "thread"), (5.0, 2, "thread"), (5.0, 2, "process")],
)
def test_system_exit_and_keyboard_interrupt_from_a_component_are_sample_errors(time_limit, workers, isolation):
    scorer = Scorer(spec("faulty_components:Exits"), time_limit=time_limit, workers=workers, isolation=isolation)
    out = scorer.score(records(GOOD, GOOD + " exit", GOOD + " interrupt", GOOD))
    assert [r.status for r in out] == [Status.OK, Status.ERROR, Status.ERROR, Status.OK]
    assert out[1].info["error"] == "exits: SystemExit: 3"
    assert out[2].info["error"] == "exits: KeyboardInterrupt"
    assert out[3].reward == 2.0


def test_a_real_ctrl_c_still_stops_an_in_process_run():
    """With no time limit, components run on the main thread: a SIGINT there is the user's."""
    scorer = Scorer(spec("faulty_components:Slow"), time_limit=None, chunk_size=10)
    rows = records(*[GOOD] * 5000)  # about 10 s
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    seen = 0
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for record in scorer.iter_score(rows):
            assert record.status is Status.OK
            seen += 1
    assert 0 < seen < 5000 and time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # left as it was found


# -- item 12: hangs that only a process can stop ---------------------------------------------------
def test_process_isolation_stops_a_gil_holding_component():
    scorer = Scorer(spec("faulty_components:CatastrophicRegex"), time_limit=0.5, isolation="process")
    started = time.monotonic()
    out = scorer.score(records(GOOD, GOOD + " regex", GOOD))
    elapsed = time.monotonic() - started
    assert [r.status for r in out] == [Status.OK, Status.TIMEOUT, Status.OK]
    assert "time limit of 0.5 s" in out[1].info["error"]
    assert out[1].components == {"format": 1.0, "catastrophicregex": None}
    # the regex alone would run for ages (an unstopped run never returns): the bound only catches a
    # stall, generous for worker start-up on a loaded machine (speed lives in benchmarks/)
    assert elapsed < 60
    assert scorer.stats.restarted_workers == 1
    assert_no_workers_left()


def test_process_isolation_leaves_no_spinning_component_behind():
    scorer = Scorer(spec("faulty_components:Spins"), time_limit=0.3, workers=2)
    assert scorer.isolation == "process"  # the default with a time limit and workers
    out = scorer.score(records(GOOD + " spin", GOOD, GOOD + " spin", GOOD))
    assert [r.status for r in out] == [Status.TIMEOUT, Status.OK, Status.TIMEOUT, Status.OK]
    assert_no_workers_left(within=0.5)  # nothing burns a core once score() has returned


def test_thread_isolation_retires_a_worker_that_abandoned_a_spinning_thread():
    scorer = Scorer(spec("faulty_components:Spins"), time_limit=0.3, workers=2, isolation="thread")
    out = scorer.score(records(GOOD + " spin", GOOD))
    assert [r.status for r in out] == [Status.TIMEOUT, Status.OK]
    assert scorer.stats.abandoned_threads == 1 and scorer.stats.restarted_workers == 1
    assert_no_workers_left()


@pytest.mark.parametrize(("workers", "isolation"), [(0, "thread"), (2, "process")])
def test_a_hanging_batch_is_bounded_by_the_batch_limit_not_by_time_limit_times_size(workers, isolation):
    scorer = Scorer(
        spec("faulty_components:BatchHangs"), time_limit=0.5, batch_time_limit=1.0, workers=workers,
        isolation=isolation, chunk_size=64,
    )
    rows = records(*[GOOD] * 64)
    rows[10]["completion"] = GOOD + " hang"
    started = time.monotonic()
    out = scorer.score(rows)
    # batch (1 s), then one sample at a time: the hang costs its 0.5 s. A batch limit of
    # time_limit x size (32 s) would let the 30 s batch call finish and row 10 score ok, which
    # the statuses below catch; the time bound only catches a stall (it took 10 s on a loaded
    # 2-core machine, so a tight bound here was a flake)
    assert time.monotonic() - started < 60
    assert [r.record["id"] for r in out if r.status is not Status.OK] == ["10"]
    assert out[10].status is Status.TIMEOUT


def test_the_default_batch_limit_is_a_minute_not_time_limit_times_batch_size():
    assert Scorer("toxicology").batch_time_limit == 60.0
    assert Scorer("toxicology", time_limit=90).batch_time_limit == 90.0
    assert Scorer("toxicology", time_limit=None).batch_time_limit is None


# -- item 13: an infinite limit is no limit --------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_an_infinite_time_limit_means_no_limit(workers):
    scorer = Scorer("toxicology", time_limit=float("inf"), batch_time_limit=float("inf"), workers=workers)
    assert scorer.time_limit is None and scorer.batch_time_limit is None
    [r] = scorer.score([{"completion": GOOD, "reference": {"substances": ["opioids"]}}])
    assert (r.status, r.reward) == (Status.OK, 1.0)


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_a_time_limit_must_be_positive(bad):
    with pytest.raises(ValueError, match="time_limit must be > 0 seconds, inf or None"):
        Scorer("toxicology", time_limit=bad)


def test_isolation_must_be_known():
    with pytest.raises(ValueError, match="isolation must be 'thread' or 'process'"):
        Scorer("toxicology", isolation="fiber")  # type: ignore[arg-type]


# -- item 20: one record instead of a list ---------------------------------------------------------
@pytest.mark.parametrize("one", [{"completion": GOOD}, GOOD])
def test_one_record_instead_of_a_list_is_a_clear_type_error(one):
    with pytest.raises(TypeError, match=r"pass a list \(or any iterable\) of records.*score\(\[record\]\)"):
        Scorer("toxicology").score(one)
