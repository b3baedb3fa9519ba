"""Task generators: deterministic, seeded producers of cases in the rollout format.

A *case* is a rollout record without a completion (docs/contracts.md): ``id``, ``prompt`` (a
conversation), ``task``, ``reference``, and ``case`` — the generator's structured view of
the case (findings, parameters…) that baseline policies and consistency tests read.
Generators register by name with :func:`register_task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import MedrewardError
from ..registry import Registry

__all__ = ["TaskGenerator", "TaskInfo", "UnknownNameError", "get_task", "list_tasks", "register_task"]


class UnknownNameError(MedrewardError):
    """An unknown task or policy name (the message lists the known ones)."""


class TaskGenerator(Protocol):
    def __call__(self, n: int, seed: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    preset: str  # the spec that scores this task's rollouts
    generate: TaskGenerator


# Modules whose import registers the built-in tasks (loaded on the first lookup).
_BUILTIN_MODULES = ("toxicology", "calculators", "icd_coding", "mcq")
_TASKS: Registry[str, TaskInfo] = Registry(
    "task", "tasks", package=__name__.rpartition(".")[0], builtins=_BUILTIN_MODULES, error=UnknownNameError
)


def register_task(name: str, *, description: str, preset: str) -> Callable[[TaskGenerator], TaskGenerator]:
    """Decorator: register a case generator as task ``name``, scored by the spec ``preset``."""

    def decorator(fn: TaskGenerator) -> TaskGenerator:
        _TASKS.add(name, TaskInfo(name, description, preset, fn))
        return fn

    return decorator


def list_tasks() -> dict[str, TaskInfo]:
    """Every registered task (built-ins included), sorted by name."""
    return _TASKS.entries()


def get_task(name: str) -> TaskInfo:
    """The task registered as ``name``; an :class:`UnknownNameError` lists the known tasks."""
    return _TASKS.get(name)
