"""Curricula: a performance-aware threshold ladder (MedLoc-R1) and a task-mix schedule (MedCCO).

Both keep plain JSON-able state (``state_dict()`` / ``load_state_dict()``, ``save``/``load``) so
a resumed run continues exactly where it stopped. See docs/shaping.md.
"""

from medreward.curriculum.task_mix import RampKind, TaskMixSchedule
from medreward.curriculum.threshold import (
    MetricWindow,
    ThresholdChange,
    ThresholdCurriculum,
)

__all__ = [
    "MetricWindow",
    "RampKind",
    "TaskMixSchedule",
    "ThresholdChange",
    "ThresholdCurriculum",
]
