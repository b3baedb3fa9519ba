"""Run statistics: reward mean/std, status counts, per-component means and latency."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..records import ScoredRecord, Status

__all__ = ["ComponentStats", "RunStats"]


@dataclass
class ComponentStats:
    """What one component did over a run."""

    name: str
    total: float = 0.0  # sum of ok values
    counts: Counter = field(default_factory=Counter)  # status -> n
    seconds: float = 0.0  # wall time spent in this component

    @property
    def n_ok(self) -> int:
        return self.counts[Status.OK.value]

    @property
    def mean(self) -> float | None:
        return self.total / self.n_ok if self.n_ok else None

    @property
    def scored(self) -> int:
        return sum(self.counts.values())

    @property
    def us_per_sample(self) -> float | None:
        return 1e6 * self.seconds / self.scored if self.scored else None

    def merge(self, other: ComponentStats) -> None:
        self.total += other.total
        self.counts.update(other.counts)
        self.seconds += other.seconds


@dataclass
class RunStats:
    """Accumulated over every record a :class:`~medreward.runner.Scorer` produced."""

    components: dict[str, ComponentStats]
    statuses: Counter = field(default_factory=Counter)
    reward_sum: float = 0.0
    reward_sq: float = 0.0
    seconds: float = 0.0
    abandoned_threads: int = 0
    restarted_workers: int = 0  # worker processes replaced after a death or a deadline

    @classmethod
    def empty(cls, names: tuple[str, ...]) -> RunStats:
        return cls({n: ComponentStats(n) for n in names})

    @property
    def n(self) -> int:
        return sum(self.statuses.values())

    @property
    def n_rewarded(self) -> int:
        return self.statuses[Status.OK.value]

    @property
    def reward_mean(self) -> float | None:
        return self.reward_sum / self.n_rewarded if self.n_rewarded else None

    @property
    def reward_std(self) -> float | None:
        n = self.n_rewarded
        if n == 0:
            return None
        mean = self.reward_sum / n
        return math.sqrt(max(0.0, self.reward_sq / n - mean * mean))

    @property
    def slowest_component(self) -> ComponentStats | None:
        timed = [c for c in self.components.values() if c.scored]
        return max(timed, key=lambda c: c.seconds) if timed else None

    def add_records(self, records: list[ScoredRecord]) -> None:
        total = squares = 0.0
        for record in records:
            reward = record.reward
            if reward is not None:
                total += reward
                squares += reward * reward
        self.reward_sum += total
        self.reward_sq += squares
        self.statuses.update(record.status.value for record in records)

    def merge(self, other: RunStats) -> None:
        for name, comp in other.components.items():
            self.components.setdefault(name, ComponentStats(name)).merge(comp)
        self.statuses.update(other.statuses)
        self.reward_sum += other.reward_sum
        self.reward_sq += other.reward_sq
        self.abandoned_threads += other.abandoned_threads
        self.restarted_workers += other.restarted_workers

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "statuses": dict(self.statuses),
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
            "seconds": self.seconds,
            "components": {
                name: {"mean": c.mean, "statuses": dict(c.counts), "us_per_sample": c.us_per_sample}
                for name, c in self.components.items()
            },
        }
