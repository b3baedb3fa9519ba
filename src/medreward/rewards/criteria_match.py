r"""``criteria_match``: per-criterion eligibility labels (met / not met / unknown) against the reference's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ..errors import RecordError
from ..parse.criteria import LABELS, Label, criterion_key, evidence_ids, parse_criteria
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, memoised_reference, register

__all__ = ["CriteriaMatch", "CriteriaTruth", "macro_f1", "set_f1"]

_TRUTH_CACHE_MAX = 65536
_STRICT = {"met": "met", "not_met": "not_met", "not met": "not_met", "unknown": "unknown"}


@dataclass(frozen=True, slots=True)
class CriteriaTruth:
    """The reference: criterion id (:func:`~medreward.parse.criteria.criterion_key` form) → label,
    in reference order, and the evidence ids (``None``: the reference gives no evidence)."""

    labels: tuple[tuple[str, Label], ...]
    evidence: frozenset[str] | None


def macro_f1(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    r"""Macro-averaged F1 over the labels that occur in ``truth`` or ``predicted``.

    Per label :math:`\ell`: :math:`F_1 = 2TP/(2TP + FP + FN)`; the macro average is their
    unweighted mean (= ``sklearn.metrics.f1_score(average="macro")`` with ``labels`` the
    labels seen). A ``None`` prediction (criterion missing or its label unreadable) is a
    false negative of the true label and a false positive of nothing.

    >>> macro_f1(["met", "met", "not_met"], ["met", "not_met", "not_met"])  # (2/3 + 2/3) / 2
    0.6666666666666666
    >>> macro_f1(["met", "unknown"], ["met", None])  # met: 1, unknown: 0
    0.5
    """
    seen = [label for label in LABELS if label in truth or label in predicted]
    scores = []
    for label in seen:
        tp = sum(1 for t, p in zip(truth, predicted) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, predicted) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, predicted) if t == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def set_f1(predicted: frozenset[str], truth: frozenset[str]) -> float:
    r""":math:`2|P∩T|/(|P|+|T|)`, 1 when both are empty (NLI4CT evidence-retrieval F1 per statement).

    >>> set_f1(frozenset({"1", "4"}), frozenset({"1", "2", "3"}))
    0.4
    """
    if not predicted and not truth:
        return 1.0
    return 2 * len(predicted & truth) / (len(predicted) + len(truth))


@register
class CriteriaMatch(RewardComponent):
    r"""Agreement of the answer's per-criterion labels (``met``, ``not_met``, ``unknown``) for a
    patient–trial pair with the reference's, and of its evidence ids with the reference's.

    Formulas, over the reference's :math:`n` criteria with true labels :math:`y_i` and the
    answer's labels :math:`\hat y_i`:

    * ``accuracy`` :math:`= \frac1n \sum_i 1[\hat y_i = y_i]`;
    * ``macro_f1``: the unweighted mean over labels of :math:`2TP/(2TP+FP+FN)`
      (:func:`macro_f1`; equal to ``sklearn.metrics.f1_score(average="macro")``);
    * ``evidence_f1`` :math:`= 2|P∩T|/(|P|+|T|)` between the answer's evidence ids P and the
      reference's T (1 when both are empty), the per-statement F1 of NLI4CT's evidence
      retrieval task.

    A reference criterion the answer does not label, or labels with words that are none of the
    three, counts as wrong (a false negative of its true label): the answer must address every
    criterion. Criteria the answer adds are ignored (``info["extra"]``).

    Sources: PRISM (patient–trial matching by per-criterion LLM judgements, Gupta et al., 2024),
    TREC Clinical Trials (criterion-level eligibility labels), and NLI4CT (SemEval-2023 Task 7,
    Jullien et al.: entailment plus evidence-sentence retrieval scored by F1). The label set and
    the treatment of missing criteria are medreward's choice.

    Reading the answer: the ``<answer>`` section (``answer_tag``; ``None``: the whole
    completion) by :func:`medreward.parse.criteria.parse_criteria`: JSON
    (``{"C1": "met"}``, ``[{"id": "C1", "label": "met", "evidence": [3]}]``,
    ``{"criteria": ..., "evidence": [...]}``) or lines ``C1: met`` / ``Evidence: 3, 7``.
    Criterion ids match case-insensitively, blanks collapsed. A missing section or an answer
    that states no criterion and no evidence scores 0 with ``info["reason"]``.

    Reference (``field``, default ``criteria``): ``{id: label}``, ``{id: {"label": ...,
    "evidence": [...]}}`` or ``[{"id", "label", "evidence"?}]`` (a JSON string of these is
    accepted), labels exactly ``met`` / ``not_met`` (or ``not met``) / ``unknown``, any case.
    Evidence ids: the union of the criteria's ``evidence`` lists and ``reference[evidence_field]``
    (default ``evidence``; a list of ids or sentence indices). Without the field the component is
    ``not_applicable``, and so it is with no criteria, or for ``metric = "evidence_f1"`` when the
    reference gives no evidence. A malformed reference raises
    :class:`~medreward.errors.RecordError` naming the field.

    ``info``: ``accuracy``, ``macro_f1``, ``evidence_f1`` (when the reference has evidence),
    ``labels`` (reference id → the answer's label or ``None``), ``wrong``, ``missing``,
    ``unreadable`` (criteria whose label was not understood), ``extra``, ``evidence`` (the
    answer's), ``format``; ``duplicates`` / ``truncated`` when they apply.

    Params: ``field`` (``"criteria"``), ``evidence_field`` (``"evidence"``), ``metric``
    (``accuracy`` | ``macro_f1`` | ``evidence_f1``; default ``accuracy``), ``answer_tag``.

    >>> cm = CriteriaMatch()
    >>> cm(["<answer>C1: met\nC2: not met\nC3: met</answer>"],
    ...    [{"criteria": {"C1": "met", "C2": "not_met", "C3": "unknown", "C4": "met"}}])
    [0.5]
    >>> CriteriaMatch(metric="evidence_f1")(['<answer>{"criteria": {"S": "met"}, "evidence": [1, 4]}</answer>'],
    ...     [{"criteria": {"S": "met"}, "evidence": [1, 2, 3]}])
    [0.4]
    """

    kind = "criteria_match"

    class Params(ComponentParams):
        field: str = Field(default="criteria", min_length=1, description="Reference key holding the criterion labels.")
        evidence_field: str = Field(default="evidence", min_length=1, description="Reference key of evidence ids.")
        metric: Literal["accuracy", "macro_f1", "evidence_f1"] = "accuracy"
        answer_tag: str | None = "answer"

    params: Params

    def setup(self) -> None:
        self._truths: dict[Any, CriteriaTruth] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field, self.params.evidence_field)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        truth = memoised_reference(self._truths, raw, self._truth, _TRUTH_CACHE_MAX)
        extra_evidence = rollout.reference.get(p.evidence_field)
        if extra_evidence is not None:
            ids = evidence_ids(extra_evidence)
            if ids is None:
                raise RecordError(
                    f"reference.{p.evidence_field} must be a list of evidence ids, got {type(extra_evidence).__name__}"
                )
            truth = CriteriaTruth(truth.labels, (truth.evidence or frozenset()) | frozenset(ids))
        if not truth.labels:
            return ComponentScore.not_applicable(f"reference.{p.field} has no criteria")
        if p.metric == "evidence_f1" and truth.evidence is None:
            return ComponentScore.not_applicable(f"reference has no evidence ids ('{p.evidence_field}')")
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return self._zero(truth, f"no <{p.answer_tag}> section")
        parsed = parse_criteria(answer)
        if not parsed.items and not parsed.evidence:
            return self._zero(truth, "no criterion labels found in the answer")
        stated = {item.id: item for item in parsed.items}
        true_labels = [label for _, label in truth.labels]
        predicted: list[str | None] = [stated[cid].label if cid in stated else None for cid, _ in truth.labels]
        correct = sum(1 for t, y in zip(true_labels, predicted) if t == y)
        info: dict[str, Any] = {
            "accuracy": correct / len(true_labels),
            "macro_f1": macro_f1(true_labels, predicted),
            "labels": {cid: label for (cid, _), label in zip(truth.labels, predicted)},
            "wrong": [cid for (cid, t), y in zip(truth.labels, predicted) if y is not None and y != t],
            "missing": [cid for cid, _ in truth.labels if cid not in stated],
            "unreadable": [item.id for item in parsed.items if item.label is None],
            "extra": [item.id for item in parsed.items if item.id not in dict(truth.labels)],
            "evidence": list(parsed.evidence),
            "format": parsed.format,
        }
        if truth.evidence is not None:
            info["evidence_f1"] = set_f1(frozenset(parsed.evidence), truth.evidence)
        if parsed.duplicates:
            info["duplicates"] = parsed.duplicates
        if parsed.truncated:
            info["truncated"] = True
        return ComponentScore(info[p.metric], info=info)

    def _zero(self, truth: CriteriaTruth, reason: str) -> ComponentScore:
        info: dict[str, Any] = {
            "reason": reason, "accuracy": 0.0, "macro_f1": 0.0, "labels": {cid: None for cid, _ in truth.labels},
            "wrong": [], "missing": [cid for cid, _ in truth.labels], "unreadable": [], "extra": [], "evidence": [],
        }  # fmt: skip
        if truth.evidence is not None:
            info["evidence_f1"] = 0.0  # an answer that states nothing cannot collect the empty-evidence 1
        return ComponentScore(0.0, info=info)

    def _truth(self, raw: Any) -> CriteriaTruth:
        field = self.params.field
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise RecordError(f"reference.{field}: {raw[:80]!r} is not JSON criteria") from None
        entries: list[tuple[Any, Any, Any]]
        if isinstance(raw, Mapping):
            entries = [
                (k, v.get("label"), v.get("evidence")) if isinstance(v, Mapping) else (k, v, None) for k, v in raw.items()
            ]
        elif isinstance(raw, (list, tuple)):
            entries = []
            for n, entry in enumerate(raw):
                if not isinstance(entry, Mapping) or "id" not in entry or "label" not in entry:
                    raise RecordError(f"reference.{field}[{n}] must be an object with 'id' and 'label'")
                entries.append((entry["id"], entry["label"], entry.get("evidence")))
        else:
            raise RecordError(
                f"reference.{field} must be an object {{criterion: label}} or a list of {{id, label}}, "
                f"got {type(raw).__name__}"
            )
        labels: dict[str, Label] = {}
        evidence: set[str] | None = None
        for key, label, ev in entries:
            if isinstance(key, bool) or not isinstance(key, (str, int)) or not criterion_key(key):
                raise RecordError(f"reference.{field}: criterion id {key!r} must be a non-empty string")
            cid = criterion_key(key)
            canonical = _STRICT.get(" ".join(label.split()).casefold()) if isinstance(label, str) else None
            if canonical is None:
                raise RecordError(f"reference.{field}.{key}: label {label!r} is not one of met, not_met, unknown")
            if cid in labels:
                raise RecordError(f"reference.{field}: criterion {key!r} appears twice")
            labels[cid] = canonical  # type: ignore[assignment]
            if ev is not None:
                ids = evidence_ids(ev)
                if ids is None:
                    raise RecordError(f"reference.{field}.{key}.evidence must be a list of evidence ids")
                evidence = (evidence or set()) | set(ids)
        return CriteriaTruth(tuple(labels.items()), frozenset(evidence) if evidence is not None else None)
