"""Baseline policies: rule-based "models" that turn cases into completions, to show what a
reward rewards before any GPU time is spent.

A policy is a callable ``policy(case, rng) -> completion text``; it reads the case record
(``prompt``, ``case``) and must never read ``reference`` unless it is an oracle-with-slips
policy that says so in its description. Policies register per task with
:func:`register_policy`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..tasks.base import UnknownNameError, list_tasks

__all__ = ["Policy", "PolicyInfo", "get_policy", "list_policies", "policy_rng", "register_policy", "run_policy"]


class Policy(Protocol):
    def __call__(self, case: dict[str, Any], rng: random.Random) -> str: ...


@dataclass(frozen=True)
class PolicyInfo:
    task: str
    name: str
    description: str
    policy: Policy


_POLICIES: dict[tuple[str, str], PolicyInfo] = {}


def register_policy(task: str, name: str, *, description: str) -> Callable[[Policy], Policy]:
    def decorator(fn: Policy) -> Policy:
        _POLICIES[(task, name)] = PolicyInfo(task, name, description, fn)
        return fn

    return decorator


def list_policies(task: str | None = None) -> list[PolicyInfo]:
    list_tasks()  # importing the task modules registers their policies too
    from . import _load_builtins

    _load_builtins()
    return [p for (t, _), p in sorted(_POLICIES.items()) if task is None or t == task]


def get_policy(task: str, name: str) -> PolicyInfo:
    policies = list_policies(task)
    for p in policies:
        if p.name == name:
            return p
    known = ", ".join(p.name for p in policies) or "none"
    raise UnknownNameError(f"unknown policy {name!r} for task {task!r}; known policies: {known}")


def policy_rng(task: str, name: str, seed: int = 0) -> random.Random:
    """The random generator :func:`run_policy` hands a policy (callers that run cases one at a
    time, e.g. the CLI, use it to produce the same rollouts)."""
    return random.Random(f"{task}/{name}/{seed}")


def run_policy(task: str, name: str, cases: Iterable[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Rollouts: each case plus the policy's ``completion`` (deterministic for a seed)."""
    info = get_policy(task, name)
    rng = policy_rng(task, name, seed)
    out = []
    for case in cases:
        rollout = dict(case)
        rollout["completion"] = info.policy(case, rng)
        rollout["policy"] = name
        out.append(rollout)
    return out
