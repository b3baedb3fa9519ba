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


_TASKS: dict[str, TaskInfo] = {}
_BUILTIN_MODULES = ("toxicology", "calculators", "icd_coding", "mcq")


def register_task(name: str, *, description: str, preset: str) -> Callable[[TaskGenerator], TaskGenerator]:
    def decorator(fn: TaskGenerator) -> TaskGenerator:
        _TASKS[name] = TaskInfo(name, description, preset, fn)
        return fn

    return decorator


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def list_tasks() -> dict[str, TaskInfo]:
    _load_builtins()
    return dict(sorted(_TASKS.items()))


def get_task(name: str) -> TaskInfo:
    tasks = list_tasks()
    if name not in tasks:
        raise UnknownNameError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    return tasks[name]
