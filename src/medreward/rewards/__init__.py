"""Reward components, registered by ``kind`` (see :mod:`medreward.rewards.base`).

Built-in kinds: ``format.tags``, ``length``, ``repetition``, ``reasoning_pattern``,
``choice``, ``multilabel``, ``numeric``, ``icd_codes``, ``classification``, ``iou``.
"""

from __future__ import annotations

from .base import (
    ComponentParams,
    RewardComponent,
    component_class,
    register,
    registered_kinds,
)

__all__ = ["ComponentParams", "RewardComponent", "component_class", "register", "registered_kinds"]
