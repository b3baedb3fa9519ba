"""Baseline policies and metrics for the ``mcq`` task (generated or loaded questions).

* ``always_a`` — answers ``A`` every time: the position-bias floor (1/k on letter-balanced items).
* ``random`` — a uniformly random option letter (chance level, 1/k).
* ``keyword_overlap`` — picks the option whose content words (4+ letters, a small stop list, the
  first 6 letters compared so "opioid"/"opioids" match) overlap most with the question; ties and
  zero overlap fall back to a random choice among the best. Cheap lexical matching of the kind
  that exploits question-option leakage; it reads the question and options only.

All three read ``case["question"]`` and ``case["options"]`` (never ``reference``).

Metric (registered for ``mcq`` in :mod:`medreward.baselines.evaluate`): ``accuracy`` — the share
of records whose final choice, read from the ``<answer>`` section by
:func:`medreward.parse.choice.parse_choice` over the question's option letters, is the reference
letter (an ambiguous or missing choice counts as wrong); ``answered`` — the share with a choice.

>>> import random
>>> case = {"case": {"question": "Which drug is an opioid analgesic?", "options": {"A": "Insulin", "B": "Opioid: morphine"}}}
>>> keyword_overlap_policy(case, random.Random(0)).splitlines()[-1]
'<answer>B</answer>'
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..parse.choice import parse_choice
from ..parse.tags import extract_section
from ..records import Rollout, ScoredRecord
from .base import register_policy
from .evaluate import MetricSet, accuracy, register_metric

__all__ = ["always_a_policy", "keyword_overlap_policy", "mcq_metrics", "random_policy"]

TASK = "mcq"
_STOP = frozenset({
    "which", "following", "what", "with", "from", "that", "this", "does", "have", "most", "likely", "patient",
    "drug", "class", "belong", "belongs", "code", "chapter", "classified", "icd-10-cm", "into", "than", "their",
    "there", "these", "those", "other",
})  # fmt: skip


def _options(case: Mapping[str, Any]) -> dict[str, str]:
    structured = case.get("case") or {}
    options = structured.get("options")
    if not isinstance(options, Mapping) or not options:
        raise ValueError("the case has no case['options'] (an MCQ case made by medreward.tasks.mcq)")
    return {str(k): str(v) for k, v in options.items()}


def _completion(reasoning: str, letter: str) -> str:
    return f"<think>{reasoning}</think>\n<answer>{letter}</answer>"


@register_policy(TASK, "always_a", description="Always answers A (position-bias floor).")
def always_a_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("I pick the first option.", "A")


@register_policy(TASK, "random", description="A uniformly random option letter (chance level).")
def random_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("I guess.", rng.choice(sorted(_options(case))))


def _words(text: str) -> set[str]:
    cleaned = "".join(ch.lower() if ch.isalnum() or ch == "-" else " " for ch in text)
    return {w[:6] for w in cleaned.split() if len(w) >= 4 and w not in _STOP}


@register_policy(TASK, "keyword_overlap", description="Picks the option sharing the most content words with the "
                 "question (ties broken at random); reads the question and options only.")
def keyword_overlap_policy(case: dict[str, Any], rng: random.Random) -> str:
    options = _options(case)
    question = _words(str((case.get("case") or {}).get("question") or ""))
    overlap = {k: len(question & _words(v)) for k, v in sorted(options.items())}
    best = max(overlap.values())
    letter = rng.choice([k for k, v in overlap.items() if v == best])
    return _completion(f"Option {letter} shares {best} key word(s) with the question.", letter)


@register_metric(TASK)
def mcq_metrics(records: Sequence[ScoredRecord]) -> MetricSet:
    """``accuracy`` (final choice == reference letter) and ``answered`` (a single choice was made)."""
    correct: list[bool] = []
    answered: list[bool] = []
    for r in records:
        reference = r.record.get("reference")
        if not isinstance(reference, Mapping) or not isinstance(reference.get("answer"), str):
            continue
        options = reference.get("options")
        letters = "".join(sorted(options)) if isinstance(options, Mapping) and options else "ABCDE"
        try:
            section = extract_section(Rollout.from_dict(r.record).completion_text, "answer")
        except Exception:  # noqa: BLE001 - a broken record answers nothing; the scorer reports it
            section = None
        choice = parse_choice(section.content, letters).letter if section is not None else None
        answered.append(choice is not None)
        correct.append(choice is not None and choice == reference["answer"].strip().upper())
    return MetricSet({"accuracy": accuracy(correct), "answered": accuracy(answered)})
