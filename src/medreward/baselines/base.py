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

from ..registry import Registry
from ..tasks.base import UnknownNameError

__all__ = [
    "Policy",
    "PolicyInfo",
    "get_policy",
    "list_policies",
    "load_builtin_policies",
    "policy_rng",
    "register_policy",
    "run_policy",
]


class Policy(Protocol):
    def __call__(self, case: dict[str, Any], rng: random.Random) -> str: ...


@dataclass(frozen=True)
class PolicyInfo:
    task: str
    name: str
    description: str
    policy: Policy


# Modules whose import registers the built-in policies (and their task metrics), loaded on
# the first lookup.
_BUILTIN_MODULES = ("toxicology", "calculators", "icd_coding", "mcq")
_POLICIES: Registry[tuple[str, str], PolicyInfo] = Registry(
    "policy", "policies", package=__name__.rpartition(".")[0], builtins=_BUILTIN_MODULES, error=UnknownNameError
)


def register_policy(task: str, name: str, *, description: str) -> Callable[[Policy], Policy]:
    """Decorator: register a policy as ``name`` for ``task``."""

    def decorator(fn: Policy) -> Policy:
        _POLICIES.add((task, name), PolicyInfo(task, name, description, fn))
        return fn

    return decorator


def load_builtin_policies() -> None:
    """Import the built-in baseline modules (which also register their task metrics)."""
    _POLICIES.load_builtins()


def list_policies(task: str | None = None) -> list[PolicyInfo]:
    """The registered policies (built-ins included), of ``task`` or of every task, sorted."""
    return [p for (t, _), p in _POLICIES.entries().items() if task is None or t == task]


def get_policy(task: str, name: str) -> PolicyInfo:
    """The policy ``name`` of ``task``; an :class:`UnknownNameError` lists that task's policies."""
    info = _POLICIES.find((task, name))
    if info is None:
        raise _POLICIES.unknown(name, (p.name for p in list_policies(task)), context=f" for task {task!r}")
    return info


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
