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
