"""What a sampled completion answered, and whether it is correct, per task (for pass@k and maj@k).

Each task defines three things about one sample (:class:`SampleJudgement`):

- ``answer``: the hashable value majority voting compares (``None``: no answer to vote with);
- ``correct``: the task's exact correctness, independent of the spec;
- ``predicted_labels`` / ``reference_labels``: label counts, for label tasks (the hedge rate).

========== ================================================ =============================================
task       answer (what maj@k votes on)                     correct
========== ================================================ =============================================
toxicology the set of vocabulary class ids in ``<answer>``   the set equals the reference's ``substances``
           (labels normalised as the ``multilabel`` reward)  (∅ = "no intoxicant" is an answer too)
mcq        the option letter in ``<answer>`` (parse_choice)  the letter equals ``reference.answer``
calculator the number in ``<answer>`` converted to the        the unit-aware ``numeric`` reward scores 1.0
           reference's unit, to 3 significant digits          (the reference band, else ±5 %)
icd_coding the set of ICD-10-CM codes in ``<answer>``        the set equals the reference ``codes``
other      the ``<answer>`` text, case- and space-folded     reward >= 1.0 (a full score)
========== ================================================ =============================================

A caller may replace "correct" by ``reward >= threshold`` for every task (``correct_threshold``).
A sample without an ``<answer>`` section has answer ``None`` and is not correct.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..parse.choice import parse_choice
from ..parse.icd import asserted_codes, normalize_icd_code
from ..parse.labels import parse_labels
from ..parse.tags import extract_section
from ..records import Rollout, ScoredRecord, Status
from ..vocab import load_vocabulary

__all__ = ["LABEL_TASKS", "SampleJudgement", "correctness_rule", "judge_samples"]

#: tasks whose answer is a set of labels (the hedge rate is reported for them)
LABEL_TASKS = frozenset({"toxicology", "icd_coding"})

_RULES = {
    "toxicology": "exact match of the predicted substance-class set with the reference",
    "mcq": "the chosen letter equals the reference letter",
    "calculator": "the numeric reward (reference band, else ±5 %) scores 1.0",
    "icd_coding": "exact match of the predicted ICD-10-CM code set with the reference",
}


@dataclass(frozen=True)
class SampleJudgement:
    """One sample's parsed answer and its correctness (see the module docstring)."""

    answer: Hashable | None
    correct: bool
    predicted_labels: int | None = None
    reference_labels: int | None = None


def correctness_rule(task: str, correct_threshold: float | None = None) -> str:
    """The sentence that says what "correct" means for ``task`` (it goes into the report)."""
    if correct_threshold is not None:
        return f"reward >= {correct_threshold:g}"
    return _RULES.get(task, "reward >= 1 (a full score)")


def judge_samples(
    task: str, scored: Sequence[ScoredRecord], *, correct_threshold: float | None = None
) -> list[SampleJudgement]:
    """One :class:`SampleJudgement` per scored sample, in order."""
    texts = [_completion_text(s.record) for s in scored]
    judge = _JUDGES.get(task, _generic)
    judged = judge(texts, [s.record.get("reference") for s in scored], scored)
    if correct_threshold is None:
        return judged
    return [
        SampleJudgement(j.answer, _reward_at_least(s, correct_threshold), j.predicted_labels, j.reference_labels)
        for j, s in zip(judged, scored)
    ]


def _reward_at_least(s: ScoredRecord, threshold: float) -> bool:
    return s.status is Status.OK and s.reward is not None and math.isfinite(s.reward) and s.reward >= threshold


def _completion_text(record: Mapping[str, Any]) -> str:
    try:
        return Rollout.from_dict(record).completion_text
    except Exception:  # noqa: BLE001 - a broken record answers nothing; the scorer reports it
        return ""


def _answer(text: str) -> str | None:
    section = extract_section(text, "answer")
    return None if section is None else section.content


Judge = Callable[[list[str], list[Any], Sequence[ScoredRecord]], list[SampleJudgement]]


def _toxicology(texts: list[str], references: list[Any], scored: Sequence[ScoredRecord]) -> list[SampleJudgement]:
    vocab = load_vocabulary("toxicology")
    out = []
    for text, ref in zip(texts, references):
        truth = frozenset(ref.get("substances") or ()) if isinstance(ref, Mapping) else frozenset()
        content = _answer(text)
        if content is None:
            out.append(SampleJudgement(None, False, None, len(truth)))
            continue
        ids: set[str] = set()
        for label in parse_labels(content).labels:
            ids.update(vocab.normalize(label) or ())
        predicted = frozenset(ids)
        out.append(SampleJudgement(predicted, predicted == truth, len(predicted), len(truth)))
    return out


def _mcq(texts: list[str], references: list[Any], scored: Sequence[ScoredRecord]) -> list[SampleJudgement]:
    out = []
    for text, ref in zip(texts, references):
        ref = ref if isinstance(ref, Mapping) else {}
        options = ref.get("options")
        letters = "".join(sorted(options)) if isinstance(options, Mapping) and options else "ABCDE"
        content = _answer(text)
        letter = parse_choice(content, letters).letter if content is not None else None
        truth = str(ref.get("answer") or "").strip().upper()
        out.append(SampleJudgement(letter, letter is not None and letter == truth))
    return out


def _calculator(texts: list[str], references: list[Any], scored: Sequence[ScoredRecord]) -> list[SampleJudgement]:
    from ..rewards.base import component_class
    from ..tasks.calculators import TOLERANCE

    numeric = component_class("numeric")(field="value", rel_tol=TOLERANCE)
    rollouts = [Rollout(completion=t, reference=dict(r) if isinstance(r, Mapping) else {}) for t, r in zip(texts, references)]
    out = []
    for score in numeric.score_batch(rollouts):
        converted = score.info.get("converted") if score.status is Status.OK else None
        key: Hashable | None = None
        if isinstance(converted, (int, float)) and math.isfinite(converted):
            key = float(f"{converted:.3g}")
        elif isinstance(converted, list):  # a range answer: its endpoints
            key = tuple(float(f"{x:.3g}") for x in converted)
        out.append(SampleJudgement(key, score.status is Status.OK and score.value == 1.0))
    return out


def _icd(texts: list[str], references: list[Any], scored: Sequence[ScoredRecord]) -> list[SampleJudgement]:
    out = []
    for text, ref in zip(texts, references):
        raw = ref.get("codes") if isinstance(ref, Mapping) else None
        truth = frozenset(c for c in (normalize_icd_code(str(x)) for x in raw or ()) if c is not None)
        content = _answer(text)
        if content is None:
            out.append(SampleJudgement(None, False, None, len(truth)))
            continue
        predicted = frozenset(asserted_codes(content))  # as the reward reads them: "not I10" predicts nothing
        out.append(SampleJudgement(predicted, predicted == truth, len(predicted), len(truth)))
    return out


def _generic(texts: list[str], references: list[Any], scored: Sequence[ScoredRecord]) -> list[SampleJudgement]:
    out = []
    for text, s in zip(texts, scored):
        content = _answer(text)
        key = " ".join(content.casefold().split()) if content is not None else None
        out.append(SampleJudgement(key or None, _reward_at_least(s, 1.0)))
    return out


_JUDGES: dict[str, Judge] = {"toxicology": _toxicology, "mcq": _mcq, "calculator": _calculator, "icd_coding": _icd}
