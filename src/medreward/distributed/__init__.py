"""Scoring on a distributed engine (Ray Data), behind the ``ray`` extra: see docs/distributed.md."""

from .ray_scoring import RAY_EXTRA_HINT, score_dataset

__all__ = ["RAY_EXTRA_HINT", "score_dataset"]
