"""Components that misbehave on purpose, importable by worker processes as
``faulty_components:Name`` (tests put this folder on sys.path)."""

from __future__ import annotations

import math
import time

from medreward.records import ComponentScore
from medreward.rewards.base import RewardComponent


class Raises(RewardComponent):
    """Raises on completions containing 'boom'."""

    kind = "test.raises"

    def score_one(self, rollout):
        if "boom" in rollout.completion_text:
            raise ValueError("kaboom")
        return ComponentScore.ok(1.0)


class Sleeps(RewardComponent):
    """Sleeps 30 s on completions containing 'sleep' (far past any test time limit)."""

    kind = "test.sleeps"

    def score_one(self, rollout):
        if "sleep" in rollout.completion_text:
            time.sleep(30)
        return ComponentScore.ok(0.5)


class ReturnsNaN(RewardComponent):
    kind = "test.nan"

    def score_one(self, rollout):
        return ComponentScore.ok(math.nan) if "nan" in rollout.completion_text else ComponentScore.ok(0.25)


class OutOfRange(RewardComponent):
    kind = "test.range"

    def score_one(self, rollout):
        return ComponentScore.ok(7.0)


class BatchRaises(RewardComponent):
    """A batch-first component whose batch call fails when any sample says 'boom'."""

    kind = "test.batch_raises"

    def score_batch(self, rollouts):
        if any("boom" in r.completion_text for r in rollouts):
            raise RuntimeError("batch failed")
        return [ComponentScore.ok(1.0) for _ in rollouts]


class RichInfo(RewardComponent):
    """Puts an object that marshal cannot carry (a Fraction) into its info."""

    kind = "test.rich_info"

    def score_one(self, rollout):
        from fractions import Fraction

        return ComponentScore(0.5, info={"ratio": Fraction(1, 3)})


class KillsWorker(RewardComponent):
    """Ends its process on the spot (as a segfault in a C extension would) on 'die'."""

    kind = "test.kills_worker"

    def score_one(self, rollout):
        if "die" in rollout.completion_text:
            import os

            os._exit(3)
        return ComponentScore.ok(1.0)


class Slow(RewardComponent):
    """Takes 2 ms per sample: long enough runs to interrupt or kill part-way."""

    kind = "test.slow"

    def score_one(self, rollout):
        time.sleep(0.002)
        return ComponentScore.ok(1.0)


class Exits(RewardComponent):
    """Raises SystemExit on 'exit' and KeyboardInterrupt on 'interrupt' (both BaseExceptions)."""

    kind = "test.exits"

    def score_one(self, rollout):
        if "exit" in rollout.completion_text:
            raise SystemExit(3)
        if "interrupt" in rollout.completion_text:
            raise KeyboardInterrupt
        return ComponentScore.ok(1.0)


class Spins(RewardComponent):
    """Spins in pure Python, for ever, on 'spin'."""

    kind = "test.spins"

    def score_one(self, rollout):
        while "spin" in rollout.completion_text:
            pass
        return ComponentScore.ok(1.0)


class CatastrophicRegex(RewardComponent):
    """Holds the GIL in ``re`` for far longer than any test (exponential backtracking) on 'regex'."""

    kind = "test.regex"

    def score_one(self, rollout):
        import re

        if "regex" in rollout.completion_text:
            re.match(r"(a+)+$", "a" * 60 + "b")
        return ComponentScore.ok(1.0)


class BatchHangs(RewardComponent):
    """A batch-first component whose batch call sleeps 30 s when any sample says 'hang'
    (and whose single-sample call does too, for that sample)."""

    kind = "test.batch_hangs"

    def score_batch(self, rollouts):
        if any("hang" in r.completion_text for r in rollouts):
            time.sleep(30)
        return [ComponentScore.ok(1.0) for _ in rollouts]


# -- plain functions for runner.pool.ProcessMap tests ------------------------------------------
def squares_unless_13(task):
    """Squares of a list of ints; the process dies if the list holds 13 and raises if it holds 7."""
    import os

    if 13 in task:
        os._exit(3)
    if 7 in task:
        raise ValueError("seven")
    return [x * x for x in task]


def sleeps_armed(task):
    """Arms the worker's deadline for each item (index = position, tag = 5) and sleeps item seconds."""
    from medreward.runner.pool import current_deadline

    deadline = current_deadline()
    for i, seconds in enumerate(task):
        deadline.arm(0.5, i, 5)
        time.sleep(seconds)
    deadline.disarm()
    return list(task)


def _refuse_to_arrive():
    raise RuntimeError("this object cannot be rebuilt here")


class BreaksOnArrival:
    """Pickles fine in the parent; unpickling it (in a worker) raises."""

    def __reduce__(self):
        return (_refuse_to_arrive, ())
