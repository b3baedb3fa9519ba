"""Run statistics: reward mean/std, status counts, per-component means and latency, and the
accounting of each model backend (calls, cache hits, retries, tokens, latency)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from typing import Any

from ..backends.base import BackendStats
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
    #: per declared backend (``{}`` for a spec without backends), merged over threads and processes
    backends: dict[str, BackendStats] = field(default_factory=dict)
    #: the ``info`` of every ``ok`` sample of each component with run-level metrics
    #: (``RewardComponent.batch_metrics``), in input order; held until the run ends
    observations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: component name -> its run-level metrics (None: undefined), set when a Scorer call ends
    batch_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @classmethod
    def empty(cls, names: tuple[str, ...], backends: tuple[str, ...] = (), observe: tuple[str, ...] = ()) -> RunStats:
        """Zero statistics for these component names and backend names; ``observe`` names the
        components whose ``ok`` infos are kept for run-level metrics."""
        return cls(
            {n: ComponentStats(n) for n in names},
            backends={b: BackendStats() for b in backends},
            observations={n: [] for n in observe},
        )

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

    def observe(self, records: list[ScoredRecord]) -> None:
        """Keep the info of each observed component's ``ok`` samples (a value in ``components``)."""
        for name, seen in self.observations.items():
            for record in records:
                if record.components.get(name) is not None:
                    info = record.info.get(name)
                    if isinstance(info, dict):
                        seen.append(info)

    def batch_metric_lines(self) -> list[str]:
        """One summary line per component with run-level metrics: ``name: metric value, …``."""
        return [
            f"{name} over the run: " + ", ".join(f"{k} {'—' if v is None else f'{v:.4g}'}" for k, v in metrics.items())
            for name, metrics in self.batch_metrics.items()
            if metrics
        ]

    def merge(self, other: RunStats) -> None:
        for name, comp in other.components.items():
            self.components.setdefault(name, ComponentStats(name)).merge(comp)
        self.statuses.update(other.statuses)
        self.reward_sum += other.reward_sum
        self.reward_sq += other.reward_sq
        self.abandoned_threads += other.abandoned_threads
        self.restarted_workers += other.restarted_workers
        self.merge_backends(other.backends)
        for name, seen in other.observations.items():
            self.observations.setdefault(name, []).extend(seen)

    def merge_backends(self, backends: dict[str, BackendStats]) -> None:
        """Add backend accounting (a batch's increments, or another run's totals)."""
        for name, stats in backends.items():
            mine = self.backends.get(name)
            if mine is None:
                mine = self.backends[name] = BackendStats()
            mine.merge(stats)

    def to_dict(self) -> dict[str, Any]:
        """The statistics as JSON-ready data (what ``medreward score --stats-json`` writes)."""
        return {
            "n": self.n,
            "statuses": {s.value: self.statuses[s.value] for s in Status},
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
            "seconds": self.seconds,
            "components": {
                name: {"mean": c.mean, "statuses": {s.value: c.counts[s.value] for s in Status}, "us_per_sample": c.us_per_sample}
                for name, c in self.components.items()
            },
            "abandoned_threads": self.abandoned_threads,
            "restarted_workers": self.restarted_workers,
            "backends": {name: b.summary() for name, b in self.backends.items()},
            "batch_metrics": self.batch_metrics,
        }
