"""Running a spec over rollouts: isolation, time limits, worker processes, statistics."""

from .scorer import BadRecord, Scorer, score
from .stats import ComponentStats, RunStats

__all__ = ["BadRecord", "ComponentStats", "RunStats", "Scorer", "score"]
