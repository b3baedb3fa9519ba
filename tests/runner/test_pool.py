"""runner.pool.ProcessMap on its own: an ordered process map that knows nothing of scoring."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest
from faulty_components import BreaksOnArrival, sleeps_armed, squares_unless_13

from medreward.runner.pool import Failed, ProcessMap, WorkerStartError


def run(tasks, **options):
    with ProcessMap(squares_unless_13, 2, **options) as pool:
        return list(pool.map(tasks)), pool.restarts


def test_results_come_back_in_input_order():
    tasks = [[i, i + 100] for i in range(0, 40, 2)]
    out, restarts = run(tasks)
    assert [t for t, _ in out] == tasks
    assert [r for _, r in out] == [[a * a, b * b] for a, b in tasks]
    assert restarts == 0


def test_a_task_that_kills_its_worker_is_bisected_to_the_culprit():
    tasks = [list(range(0, 16)), list(range(16, 32))]
    out, restarts = run(tasks)
    # the first task is cut into pieces until 13 stands alone; every other item keeps its result
    pieces = [t for t, _ in out]
    assert [x for piece in pieces for x in piece] == list(range(32))
    results = dict(zip(map(tuple, pieces), (r for _, r in out)))
    assert results[(13,)] == Failed("died", "a worker process died while running this item (twice)")
    scored = {x: y for piece, r in results.items() if not isinstance(r, Failed) for x, y in zip(piece, r)}
    assert scored == {x: x * x for x in range(32) if x not in (7, 13)}
    assert results[(7,)].kind == "error" and "ValueError: seven" in results[(7,)].message
    # 16 -> 8 -> 4 -> 2 -> 1 items: four deaths while bisecting, then 13 alone dies twice
    assert restarts == 6


def test_a_task_that_cannot_be_pickled_is_bisected_without_a_worker():
    lock = threading.Lock()
    with pytest.raises(TypeError):
        pickle.dumps(lock)
    out, _ = run([[1, 2, lock, 3]])
    # halves: [1, 2] travels; [lock, 3] does not, so it is halved again
    assert [t for t, _ in out] == [[1, 2], [lock], [3]]
    assert out[0][1] == [1, 4] and out[2][1] == [9]
    assert out[1][1].kind == "unsendable" and "pickle" in out[1][1].message


def test_a_task_that_cannot_be_unpickled_in_the_worker_is_an_error_not_a_death():
    """It is reported by the worker, which stays alive: no process is killed or replaced, and
    the message says what happened (not 'a worker process died')."""
    out, restarts = run([[1, BreaksOnArrival(), 3]])
    assert [t for t, _ in out][0] == [1] and [t for t, _ in out][2] == [3]
    assert out[0][1] == [1] and out[2][1] == [9]
    failure = out[1][1]
    assert failure.kind == "error"
    assert "could not be read in the worker" in failure.message and "cannot be rebuilt here" in failure.message
    assert restarts == 0


def test_an_expired_deadline_kills_the_worker_and_the_task_is_amended():
    amended = []

    def amend(task, index, tag):
        amended.append((list(task), index, tag))
        return [0 if i == index else s for i, s in enumerate(task)]

    with ProcessMap(sleeps_armed, 1, amend=amend) as pool:
        out = list(pool.map([[0, 30, 0]]))
        assert pool.restarts == 1
    assert amended == [([0, 30, 0], 1, 5)]
    assert out == [([0, 0, 0], [0, 0, 0])]


def test_a_failing_initializer_is_reported_not_retried():
    with pytest.raises(WorkerStartError, match="ZeroDivisionError"):
        run([[1]], initializer=divmod, initargs=(1, 0))


def test_workers_that_exit_while_starting_end_the_map_with_the_likely_cause():
    """A worker that dies before its handshake is no task's fault: nothing is bisected or
    reported per item, and after a few such starts in a row the map stops with a reason."""
    with pytest.raises(WorkerStartError, match=r"exited while starting \(last exit code 7\).*__name__ == "):
        run([[1, 2], [3]], initializer=os._exit, initargs=(7,))


def test_a_script_without_a_main_guard_fails_with_advice_instead_of_looping(tmp_path):
    """Spawned workers import the main script; without ``if __name__ == "__main__":`` each one
    exits while starting. The run used to retry and bisect forever; now it stops with advice."""
    script = tmp_path / "no_guard.py"
    script.write_text(textwrap.dedent("""
        import medreward
        rows = [{"completion": "<think>x</think><answer>opioids</answer>",
                 "reference": {"substances": ["opioids"]}}] * 50
        medreward.Scorer("toxicology", workers=2).score(rows)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "WorkerStartError" in done.stderr and 'if __name__ == "__main__":' in done.stderr
