"""Audit cases: rollout records without a completion, and the gold completion of each.

A *case* is a rollout record without ``completion``: ``id``, ``prompt``, ``task``,
``reference``, optionally ``case`` (a task generator's structured view) and ``gold`` (a gold
completion string). The audit scores a spec on transformed completions of each case and
compares them with the gold completion's reward, so every case needs a gold completion:
``record["gold"]`` when given, else one built from the reference by the task's gold builder
(:func:`register_gold`; built-ins for ``toxicology``, ``calculator``, ``icd_coding`` and
``mcq``), in the tasks' ``<think>…</think>\\n<answer>…</answer>`` format.

>>> [case] = generate_cases("mcq", 1, seed=0)
>>> gold_completion(case)
'<think>I weigh each option against the question.</think>\\n<answer>A</answer>'
>>> gold_completion({"task": "toxicology", "reference": {"substances": []}})
'<think>I review the scene, the vital signs, the examination, the ECG and the laboratory values, and match them to the toxidromes.</think>\\n<answer>none</answer>'
>>> gold_completion({"task": "toxicology"}) is None
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import read_records
from ..records import BadRecord
from ..tasks.base import get_task

__all__ = [
    "GoldBuilder",
    "format_number",
    "generate_cases",
    "gold_answer",
    "gold_builders",
    "gold_completion",
    "load_cases",
    "register_gold",
    "tagged",
]

log = logging.getLogger(__name__)

#: A gold builder: the task's reference → the gold *answer* text (what goes inside ``<answer>``),
#: or ``None`` when the reference lacks what the builder needs.
GoldBuilder = Callable[[Mapping[str, Any]], "str | None"]

_BUILDERS: dict[str, tuple[GoldBuilder, str]] = {}


def register_gold(task: str, *, reasoning: str = "I answer from the information given.") -> Callable[[GoldBuilder], GoldBuilder]:
    """Decorator: register ``fn(reference) -> answer text | None`` as the gold builder of ``task``.

    ``reasoning`` is the neutral ``<think>`` text of the gold completion; it never states the
    answer, so probes that move or repeat the reasoning do not carry the answer with them.
    Registering a different builder under a taken task is a ``TypeError``.
    """

    def decorator(fn: GoldBuilder) -> GoldBuilder:
        current = _BUILDERS.get(task)
        if current is not None and current != (fn, reasoning):
            raise TypeError(f"gold builder for task {task!r} is registered twice")
        _BUILDERS[task] = (fn, reasoning)
        return fn

    return decorator


def gold_builders() -> dict[str, GoldBuilder]:
    """The registered gold builders by task (built-ins included), sorted by task."""
    return {task: fn for task, (fn, _) in sorted(_BUILDERS.items())}


def tagged(reasoning: str, answer: str) -> str:
    """``<think>reasoning</think>\\n<answer>answer</answer>`` (the tasks' completion format)."""
    return f"<think>{reasoning}</think>\n<answer>{answer}</answer>"


def format_number(value: float) -> str:
    """A number as a completion writes it: integers without a decimal point, others with up to
    six significant digits and no exponent.

    >>> format_number(3.0), format_number(49.2), format_number(0.000123456789), format_number(-2)
    ('3', '49.2', '0.000123457', '-2')
    """
    value = float(value)
    if value.is_integer():
        return str(int(value))
    text = f"{value:.6g}"
    if "e" in text:
        text = f"{value:.{max(6, 6 - math.floor(math.log10(abs(value))))}f}".rstrip("0").rstrip(".")
    return text


def gold_answer(record: Mapping[str, Any]) -> str | None:
    """The gold answer text of a case from its reference (``None``: no reference, no builder for
    its task, or a reference without the builder's field)."""
    reference = record.get("reference")
    entry = _BUILDERS.get(str(record.get("task")))
    if entry is None or not isinstance(reference, Mapping) or not reference:
        return None
    return entry[0](reference)


def gold_completion(record: Mapping[str, Any]) -> str | None:
    """The gold completion of a case: ``record["gold"]`` if it is a non-empty string, else built
    from the reference by the task's gold builder; ``None`` when there is neither."""
    given = record.get("gold")
    if isinstance(given, str) and given.strip():
        return given
    answer = gold_answer(record)
    if answer is None:
        return None
    return tagged(_BUILDERS[str(record.get("task"))][1], answer)


# -- built-in gold builders ------------------------------------------------------------------
@register_gold(
    "toxicology",
    reasoning="I review the scene, the vital signs, the examination, the ECG and the laboratory values, "
    "and match them to the toxidromes.",
)
def _toxicology_gold(reference: Mapping[str, Any]) -> str | None:
    substances = reference.get("substances")
    if not isinstance(substances, (list, tuple)):
        return None
    return ", ".join(str(s) for s in substances) or "none"


@register_gold("calculator", reasoning="I take the values from the note and apply the calculator's formula.")
def _calculator_gold(reference: Mapping[str, Any]) -> str | None:
    value = reference.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    unit = reference.get("unit")
    return f"{format_number(value)} {unit}" if unit else format_number(value)


@register_gold("icd_coding", reasoning="I code each documented diagnosis to its most specific billable ICD-10-CM code.")
def _icd_gold(reference: Mapping[str, Any]) -> str | None:
    codes = reference.get("codes")
    if isinstance(codes, str):
        codes = [c.strip() for c in codes.replace(";", ",").split(",") if c.strip()]
    if not isinstance(codes, (list, tuple)):
        return None
    return ", ".join(str(c) for c in codes) or "none"


@register_gold("mcq", reasoning="I weigh each option against the question.")
def _mcq_gold(reference: Mapping[str, Any]) -> str | None:
    answer = reference.get("answer")
    return answer.strip() if isinstance(answer, str) and answer.strip() else None


# -- reading and generating cases -------------------------------------------------------------
def load_cases(path: str | Path, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream the cases of a JSONL / JSON / Parquet file (:func:`medreward.io.read_records`).

    A ``completion`` field is ignored (a rollout file can serve as a case file). A malformed line
    is an :class:`~medreward.errors.InputError` naming the line; ``limit`` stops after that many
    cases (the rest of the file is not read).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be a non-negative integer, got {limit!r}")
    records = read_records(path)
    count = 0
    for item in records:
        if limit is not None and count >= limit:
            break
        if isinstance(item, BadRecord):
            where = f"line {item.line}" if item.line is not None else "a record"
            raise InputError(f"{path}: {where} is not a case: {item.error}")
        case = {k: v for k, v in item.items() if k != "completion"}
        count += 1
        yield case


def generate_cases(task: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` cases of a registered task (:mod:`medreward.tasks`), deterministic for ``seed``.

    >>> [c["task"] for c in generate_cases("calculator", 2)]
    ['calculator', 'calculator']
    """
    return get_task(task).generate(n, seed)
