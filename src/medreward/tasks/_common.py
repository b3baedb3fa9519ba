"""Helpers shared by the clinical task generators (calculators, ICD coding, MCQ).

Kept private: the public contract of a generator is ``generate(n, seed) -> list[dict]``
(:mod:`medreward.tasks.base`).
"""

from __future__ import annotations

from ..errors import MedrewardError

__all__ = ["TaskArgumentError", "check_count", "reasoning_instruction"]


class TaskArgumentError(MedrewardError, ValueError):
    """A generator was called with a bad argument (``n <= 0``, an unknown calculator, a bad knob).

    It is a :class:`~medreward.errors.MedrewardError`, so the CLI prints the message without a
    traceback, and a :class:`ValueError` for callers that catch the built-in type.
    """


def check_count(n: object, task: str) -> int:
    """``n`` as a positive ``int``, or a :class:`TaskArgumentError` naming the task.

    >>> check_count(3, "mcq")
    3
    >>> check_count(0, "mcq")
    Traceback (most recent call last):
    ...
    medreward.tasks._common.TaskArgumentError: mcq: n must be a positive number of cases, got 0
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TaskArgumentError(f"{task}: n must be an integer number of cases, got {n!r}")
    if n <= 0:
        raise TaskArgumentError(f"{task}: n must be a positive number of cases, got {n}")
    return n


def reasoning_instruction(answer: str) -> str:
    """The closing instruction of every prompt: reasoning in ``<think>``, the answer in ``<answer>``."""
    return (
        "Think step by step inside <think>...</think>, then give the final answer inside "
        f"<answer>...</answer>: {answer}"
    )
