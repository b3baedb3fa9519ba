"""Baseline policies per task and their evaluation."""

from __future__ import annotations

import importlib

from .base import PolicyInfo, get_policy, list_policies, register_policy, run_policy

__all__ = ["PolicyInfo", "get_policy", "list_policies", "register_policy", "run_policy"]

_BUILTIN_MODULES = ("toxicology", "calculators", "icd_coding", "mcq")


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        name = f"{__name__}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
