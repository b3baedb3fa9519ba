"""medreward: reward engine for RL post-training of clinical language models.

>>> import medreward
>>> [r] = medreward.score([{"completion": "<think>miosis</think><answer>opioids</answer>",
...                         "reference": {"substances": ["opioids"]}}], "toxicology")
>>> r.reward
1.0
"""

from .compose.spec import ComponentSpec, Spec, list_presets, load_spec
from .errors import InputError, MedrewardError, RecordError, SpecError
from .io import open_writer, read_records
from .records import BadRecord, ComponentScore, Rollout, ScoredRecord, Status
from .rewards.base import ComponentParams, RewardComponent, register, registered_kinds
from .runner import RunStats, Scorer, score

__version__ = "0.1.0"

__all__ = [
    "BadRecord",
    "ComponentParams",
    "ComponentScore",
    "ComponentSpec",
    "InputError",
    "MedrewardError",
    "RecordError",
    "RewardComponent",
    "Rollout",
    "RunStats",
    "ScoredRecord",
    "Scorer",
    "Spec",
    "SpecError",
    "Status",
    "list_presets",
    "load_spec",
    "open_writer",
    "read_records",
    "register",
    "registered_kinds",
    "score",
]
