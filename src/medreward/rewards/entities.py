r"""``entities``: clinical entities in the answer against ``reference.entities`` (set or span F1)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import Field, model_validator

from ..errors import RecordError
from ..parse.mentions import MentionList, drug_ids, find_mentions
from ..records import ComponentScore, Rollout
from ..vocab import Vocabulary
from .base import ComponentParams, RewardComponent, answer_section, memoised_reference, register, remember
from .reference_lists import reference_items

__all__ = ["ClinicalEntities", "Span", "prf", "span_scores"]

_CACHE_MAX = 16384
_CACHEABLE_CHARS = 2048
_MAX_SPANS = 4096  # spans read from one answer (more: the rest is ignored and `truncated` set)


class Span(NamedTuple):
    """A labelled character span ``[start, end)``."""

    start: int
    end: int
    label: str


def prf(n_pred: int, n_true: int, matched: float) -> tuple[float, float, float]:
    r"""Precision, recall and F1 of ``matched`` hits among ``n_pred`` predictions and ``n_true``
    true items: :math:`P = m/|P|`, :math:`R = m/|T|`, :math:`F_1 = 2m/(|P|+|T|)`; all three
    are 1 when both sets are empty, and P (R) is 0 when only the true (predicted) set is.

    >>> prf(3, 2, 1)
    (0.3333333333333333, 0.5, 0.4)
    >>> prf(0, 0, 0), prf(0, 2, 0)
    ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    """
    if n_pred == 0 and n_true == 0:
        return 1.0, 1.0, 1.0
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_true if n_true else 0.0
    return precision, recall, 2.0 * matched / (n_pred + n_true)


def span_scores(predicted: Sequence[Span], truth: Sequence[Span]) -> dict[str, Any]:
    """Strict and partial span matches of ``predicted`` against ``truth`` (duplicates removed).

    * **strict**: same ``start``, ``end`` and ``label``;
    * **partial**: the same label and at least one shared character. Pairs are one-to-one:
      exact pairs first, then, for each predicted span in order, the first unmatched true
      span of its label that it overlaps.

    Returns ``{"strict": (P, R, F1), "partial": (P, R, F1), "exact": [p…], "matched_partial": [(p, t)…]}``.

    >>> s = span_scores([Span(0, 9, "DRUG"), Span(10, 13, "DOSE"), Span(40, 45, "DRUG")],
    ...                 [Span(0, 9, "DRUG"), Span(10, 15, "DOSE"), Span(30, 38, "DRUG")])
    >>> [round(x, 4) for x in s["strict"]], [round(x, 4) for x in s["partial"]]
    ([0.3333, 0.3333, 0.3333], [0.6667, 0.6667, 0.6667])
    """
    pred = list(dict.fromkeys(predicted))
    true = list(dict.fromkeys(truth))
    true_set = set(true)
    exact = [p for p in pred if p in true_set]
    pairs: list[tuple[Span, Span]] = [(p, p) for p in exact]
    used = set(exact)
    by_label: dict[str, list[Span]] = {}
    for t in true:
        if t not in used:
            by_label.setdefault(t.label, []).append(t)
    for p in pred:
        if p in used:
            continue
        candidates = by_label.get(p.label, [])
        for k, t in enumerate(candidates):
            if p.start < t.end and t.start < p.end:
                pairs.append((p, t))
                del candidates[k]
                break
    return {
        "strict": prf(len(pred), len(true), len(exact)),
        "partial": prf(len(pred), len(true), len(pairs)),
        "exact": exact,
        "matched_partial": pairs,
    }


class _Mentions(NamedTuple):
    predicted: tuple[str, ...]
    negated: tuple[str, ...]
    truncated: bool


@register
class ClinicalEntities(RewardComponent):
    r"""Clinical entities of the answer against the reference's: set F1 (mentions) or span F1.

    **Mentions** (``mode = "mentions"``, default). The answer's entities are found in its prose
    by :func:`medreward.parse.mentions.find_mentions`: drug names through
    ``drug-named-entity-recognition``, normalised to the library's canonical drug (brand ↔
    generic: Tylenol = paracetamol = ``acetaminophen``), and, with ``vocabulary``, the terms of
    that vocabulary (ids, names, synonyms, members; a vocabulary term wins over a drug name).
    **Negated mentions are not predictions** ("no aspirin", "denies taking metformin",
    "opioids ruled out": the ConText-style rules the label reader uses,
    :mod:`medreward.parse.scopes`); ``info["negated"]`` lists them. The reference
    ``entities`` is a list of names (or a comma-separated / JSON-array string), each normalised
    the same way (vocabulary first, then the drug dictionary); a name neither knows is a data
    bug (:class:`~medreward.errors.RecordError`, naming the field).

    With :math:`P` the predicted and :math:`T` the reference id sets, :math:`m = |P∩T|`:
    precision :math:`m/|P|`, recall :math:`m/|T|`, :math:`F_1 = 2m/(|P|+|T|)`, all 1 when
    :math:`P = T = ∅` (:func:`prf`). ``metric`` picks the value (default ``f1``).

    **Spans** (``mode = "spans"``). The answer is a JSON array of ``{"start": int, "end": int,
    "label": str}`` objects (character offsets, ``end`` exclusive; other keys are ignored; a
    code fence and an object holding one such array are accepted), as is the reference
    ``entities``. Offsets refer to ``reference[text_field]`` (default ``"text"``), else to the
    prompt; a span with ``start < 0``, ``end <= start`` or ``end`` beyond that text's length
    raises :class:`~medreward.errors.RecordError` (record status ``error`` with
    ``info["error"]``), in the answer as in the reference. ``span_match`` picks **strict**
    (same start, end and label) or **partial** (same label, any overlap; one-to-one) F1
    (:func:`span_scores`); ``info`` holds both. An answer that is not such an array scores 0
    with ``info["reason"]``; items of the wrong shape count as wrong predictions
    (``info["malformed"]``).

    Source: set F1 over normalised entities is the entity reward of knowledge-graph-guided
    clinical RL (PathReasoner-R1 rewards the entities of its reasoning against a medical
    knowledge graph [UNVERIFIED: formula not read; set F1 is medreward's choice]). Span F1:
    strict ("exact") and lenient ("inexact", overlap with the same type) matching as in the
    i2b2/VA 2010 concept-extraction evaluation (Uzuner et al., JAMIA 2011) and the clinical NER
    benchmarks that follow it; our partial F1 equals nervaluate's ``ent_type`` scheme (SemEval-2013
    Task 9.1, Segura-Bedmar et al. 2013: overlap with the correct type counts), not its
    half-credit ``partial`` scheme.

    ``info``: mentions mode: ``predicted``, ``missed``, ``hallucinated``, ``negated``,
    ``precision``, ``recall``, ``f1``; spans mode: ``strict`` and ``partial`` (each
    ``{precision, recall, f1}``), ``predicted`` (the spans read), ``malformed``.

    Params: ``field`` (``"entities"``), ``mode`` (``"mentions"`` | ``"spans"``), ``vocabulary``
    (packaged name or TOML path; optional), ``drugs`` (true), ``metric`` (``f1`` |
    ``precision`` | ``recall``), ``span_match`` (``strict`` | ``partial``), ``text_field``
    (``"text"``), ``answer_tag`` (``"answer"``; ``None`` reads the whole completion).

    >>> ents = ClinicalEntities()
    >>> ents(["<answer>Start Tylenol; no aspirin.</answer>", "<answer>metformin and lisinopril</answer>"],
    ...      [{"entities": ["acetaminophen"]}, {"entities": ["Glucophage"]}])
    [1.0, 0.6666666666666666]
    """

    kind = "entities"

    class Params(ComponentParams):
        field: str = Field(default="entities", min_length=1, description="Reference key of the entities.")
        mode: Literal["mentions", "spans"] = "mentions"
        vocabulary: str | None = Field(default=None, min_length=1)
        drugs: bool = True
        metric: Literal["f1", "precision", "recall"] = "f1"
        span_match: Literal["strict", "partial"] = "strict"
        text_field: str = Field(default="text", min_length=1, description="Reference key of the text spans index.")
        answer_tag: str | None = "answer"

        @model_validator(mode="after")
        def _finds_something(self) -> ClinicalEntities.Params:
            if self.mode == "mentions" and not self.drugs and self.vocabulary is None:
                raise ValueError("mentions mode needs drugs = true or a vocabulary")
            return self

    params: Params

    def setup(self) -> None:
        self._vocab: Vocabulary | None = self.vocabulary_param(self.params.vocabulary)
        self._truths: dict[Any, Any] = {}
        self._answers: dict[str, _Mentions] = {}

    def reference_keys(self) -> tuple[str, ...]:
        if self.params.mode == "spans":
            return (self.params.field, self.params.text_field)
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        if p.mode == "spans":
            return self._score_spans(rollout, raw)
        truth: tuple[str, ...] = memoised_reference(self._truths, raw, self._truth_ids, _CACHE_MAX)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None or not answer.strip():
            reason = f"no <{p.answer_tag}> section" if answer is None else "empty answer"
            return ComponentScore(0.0, info={"reason": reason, "predicted": [], "missed": list(truth)})
        found = self._mentions(answer)
        truth_set = set(truth)
        pred_set = set(found.predicted)
        matched = len(pred_set & truth_set)
        precision, recall, f1 = prf(len(pred_set), len(truth_set), matched)
        info: dict[str, Any] = {
            "predicted": list(found.predicted),
            "missed": [t for t in truth if t not in pred_set],
            "hallucinated": [x for x in found.predicted if x not in truth_set],
            "negated": list(found.negated),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
        if found.truncated:
            info["truncated"] = True
        return ComponentScore({"f1": f1, "precision": precision, "recall": recall}[p.metric], info=info)

    # -- mentions ------------------------------------------------------------------------------
    def _mentions(self, answer: str) -> _Mentions:
        hit = self._answers.get(answer)
        if hit is not None:
            return hit
        found: MentionList = find_mentions(answer, vocabulary=self._vocab, drugs=self.params.drugs)
        asserted = found.ids()
        negated = tuple(x for x in found.ids(negated=True) if x not in asserted)
        result = _Mentions(asserted, negated, found.truncated)
        if len(answer) <= _CACHEABLE_CHARS:
            remember(self._answers, answer, result, _CACHE_MAX)
        return result

    def _truth_ids(self, raw: Any) -> tuple[str, ...]:
        field = self.params.field
        items = _name_list(raw, field)
        out: dict[str, None] = {}
        for k, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise RecordError(f"reference.{field}[{k}] must be a non-empty entity name, got {item!r}")
            ids: tuple[str, ...] = ()
            if self._vocab is not None:
                ids = self._vocab.normalize(item) or ()
            if not ids and self.params.drugs:
                ids = drug_ids(item)
            if not ids:
                known = []
                if self._vocab is not None:
                    known.append(f"a term of vocabulary {self._vocab.name!r}")
                if self.params.drugs:
                    known.append("a drug known to drug-named-entity-recognition")
                raise RecordError(f"reference.{field}[{k}]: {item!r} is not {' or '.join(known)}")
            out.update(dict.fromkeys(ids))
        return tuple(out)

    # -- spans ---------------------------------------------------------------------------------
    def _score_spans(self, rollout: Rollout, raw: Any) -> ComponentScore:
        p = self.params
        text = rollout.reference.get(p.text_field)
        if text is not None and not isinstance(text, str):
            raise RecordError(f"reference.{p.text_field} must be a string, got {type(text).__name__}")
        limit = len(text) if text is not None else (len(rollout.prompt_text) or None)
        truth = _reference_spans(raw, p.field, limit)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None or not answer.strip():
            reason = f"no <{p.answer_tag}> section" if answer is None else "empty answer"
            return ComponentScore(0.0, info={"reason": reason, "predicted": []})
        items = _json_array(answer)
        if items is None:
            return ComponentScore(0.0, info={"reason": "the answer is not a JSON array of spans", "predicted": []})
        truncated = len(items) > _MAX_SPANS
        predicted: list[Span] = []
        malformed: list[int] = []
        for k, item in enumerate(items[:_MAX_SPANS]):
            span = _span(item)
            if span is None:
                malformed.append(k)
                continue
            _check_range(span, limit, f"answer span #{k}")
            predicted.append(span)
        scores = span_scores(predicted, truth)
        # a malformed item is a prediction that matches nothing
        n_pred = len(dict.fromkeys(predicted)) + len(malformed)
        n_true = len(dict.fromkeys(truth))
        strict = prf(n_pred, n_true, len(scores["exact"]))
        partial = prf(n_pred, n_true, len(scores["matched_partial"]))
        info: dict[str, Any] = {
            "strict": dict(zip(("precision", "recall", "f1"), strict)),
            "partial": dict(zip(("precision", "recall", "f1"), partial)),
            "predicted": [list(s) for s in predicted[:64]],
            "malformed": malformed[:64],
        }
        if truncated:
            info["truncated"] = True
        chosen = strict if p.span_match == "strict" else partial
        value = {"precision": chosen[0], "recall": chosen[1], "f1": chosen[2]}[p.metric]
        return ComponentScore(value, info=info)


def _name_list(raw: Any, field: str) -> Sequence[Any]:
    return reference_items(raw, field, noun="entity names")


def _json_array(answer: str) -> list[Any] | None:
    s = answer.strip()
    if s.startswith("```"):
        s = s[3:]
        s = s[s.find("\n") + 1 :] if "\n" in s else s
        s = s.rstrip()
        if s.endswith("```"):
            s = s[:-3]
        s = s.strip()
    if not s.startswith(("[", "{")):
        return None
    try:
        value = json.loads(s)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        arrays = [v for v in value.values() if isinstance(v, list)]
        value = arrays[0] if len(arrays) == 1 else None
    return value if isinstance(value, list) else None


def _span(item: Any) -> Span | None:
    if not isinstance(item, dict):
        return None
    start, end, label = item.get("start"), item.get("end"), item.get("label")
    if type(start) is not int or type(end) is not int or not isinstance(label, str) or not label.strip():
        return None
    return Span(start, end, label.strip())


def _check_range(span: Span, limit: int | None, where: str) -> None:
    if span.start < 0 or span.end <= span.start or (limit is not None and span.end > limit):
        bound = f" (text length {limit})" if limit is not None else ""
        raise RecordError(f"{where} [{span.start}, {span.end}) is out of range{bound}")


def _reference_spans(raw: Any, field: str, limit: int | None) -> list[Span]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise RecordError(f"reference.{field}: not a JSON array of spans") from None
    if not isinstance(raw, (list, tuple)):
        raise RecordError(
            f"reference.{field} must be a list of {{start, end, label}} objects, got {type(raw).__name__}"
        )
    out = []
    for k, item in enumerate(raw):
        span = _span(item)
        if span is None:
            raise RecordError(
                f"reference.{field}[{k}] must be an object with integer 'start', 'end' and a string 'label', got {item!r}"
            )
        _check_range(span, limit, f"reference.{field}[{k}]")
        out.append(span)
    return out
