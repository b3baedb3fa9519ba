"""Reward components, registered by ``kind`` (see :mod:`medreward.rewards.base`).

Built-in kinds: ``format.tags``, ``length``, ``repetition``, ``reasoning_pattern``,
``choice``, ``multilabel``, ``numeric``, ``icd_codes``, ``classification``, ``iou``.
"""

from __future__ import annotations

import importlib

from .base import (
    ComponentParams,
    RewardComponent,
    component_class,
    register,
    registered_kinds,
)

__all__ = ["ComponentParams", "RewardComponent", "component_class", "register", "registered_kinds"]

# Modules that register the built-in kinds; imported lazily so `import medreward` stays fast
# (the ICD and unit modules load sizeable data).
_BUILTIN_MODULES = (
    "format_tags",
    "length",
    "repetition",
    "reasoning_pattern",
    "choice",
    "classification",
    "multilabel",
    "numeric",
    "icd_codes",
    "iou",
)
_loaded = False


def _load_builtin_components() -> None:
    global _loaded
    if _loaded:
        return
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    _loaded = True
