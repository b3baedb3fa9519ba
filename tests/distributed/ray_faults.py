"""A component that kills the process scoring it, once per marker file: Ray workers import it as
``ray_faults:KillsItsWorker`` (the tests put this folder on the workers' PYTHONPATH)."""

from __future__ import annotations

import os
from pathlib import Path

from medreward.records import ComponentScore
from medreward.rewards.base import RewardComponent


class KillsItsWorker(RewardComponent):
    """A completion ``"kill <marker path>"`` kills its process the first time (the marker file is
    created first, so the retried batch scores); every sample scores 1.0."""

    kind = "test.kills_its_worker"

    def score_one(self, rollout):
        text = rollout.completion_text
        if text.startswith("kill "):
            marker = Path(text[5:])
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the worker dies mid-batch, as on an OOM kill or a node loss
        return ComponentScore.ok(1.0)


class ComparesItsGroup(RewardComponent):
    """Says it compares GRPO group members (as ``pairwise`` does), without a model."""

    kind = "test.compares_its_group"

    @property
    def needs_whole_groups(self) -> bool:
        return True

    def score_one(self, rollout):
        return ComponentScore.ok(1.0)
