"""Baseline policies per task and their evaluation."""

from __future__ import annotations

from .base import PolicyInfo, get_policy, list_policies, register_policy, run_policy

__all__ = ["PolicyInfo", "get_policy", "list_policies", "register_policy", "run_policy"]
