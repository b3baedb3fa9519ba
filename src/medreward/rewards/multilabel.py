r"""``multilabel``: set agreement between the predicted and the reference labels over a vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any, Literal, NamedTuple

from pydantic import Field

from ..errors import RecordError
from ..parse.labels import parse_labels
from ..records import ComponentScore, Rollout
from ..vocab import Vocabulary, term_key
from .base import (
    ComponentParams,
    RewardComponent,
    answer_section,
    memoised_reference,
    register,
    remember,
)
from .reference_lists import reference_items

__all__ = ["MultiLabel", "set_agreement"]

_PREDICTION_CACHE_MAX = 65536  # distinct answers memoised per component (cleared when full)
_CACHEABLE_CHARS = 512  # longer answers are parsed every time (rare; keeps the memo small)


class _Prediction(NamedTuple):
    ids: tuple[str, ...]  # vocabulary ids, in order of first mention
    id_set: frozenset[str]
    unknown: tuple[str, ...]  # raw labels outside the vocabulary (one per distinct key)
    truncated: bool
    empty: bool  # nothing was stated at all (not even "none" or [])
    negated: tuple[str, ...]  # labels the answer names as absent ("no X", "X ruled out")


class _Verdict(NamedTuple):
    """The score of one (answer, reference) pair and what went into it."""

    value: float
    predicted: tuple[str, ...]
    missed: tuple[str, ...]
    hallucinated: tuple[str, ...]
    unknown: tuple[str, ...]
    truncated: bool
    reason: str | None  # why an answer scored 0 without being compared (no labels stated)
    negated: tuple[str, ...] = ()


def set_agreement(
    n_pred: int,
    n_true: int,
    n_common: int,
    metric: Literal["f1", "jaccard", "precision_weighted", "recall_weighted"] = "f1",
    beta: float = 2.0,
) -> float:
    r"""Agreement of a predicted set P and a true set T from their sizes and ``|P∩T|``.

    * ``f1``: :math:`2|P∩T|/(|P|+|T|)`
    * ``jaccard``: :math:`|P∩T|/|P∪T|`
    * ``recall_weighted``: :math:`F_\beta = (1+\beta^2)|P∩T| / (\beta^2|T| + |P|)` (β > 1
      weighs a missed label more than a hallucinated one)
    * ``precision_weighted``: :math:`F_{1/\beta}` (hallucinations weigh more)

    Every metric is 1 when P = T = ∅.

    >>> set_agreement(2, 1, 1), set_agreement(2, 1, 1, "jaccard"), set_agreement(0, 0, 0)
    (0.6666666666666666, 0.5, 1.0)
    >>> round(set_agreement(2, 1, 1, "recall_weighted", beta=2.0), 4)  # 5/(4+2)
    0.8333
    """
    if n_pred == 0 and n_true == 0:
        return 1.0
    if metric == "f1":
        return 2.0 * n_common / (n_pred + n_true)
    if metric == "jaccard":
        return n_common / (n_pred + n_true - n_common)
    b2 = beta * beta if metric == "recall_weighted" else 1.0 / (beta * beta)
    return (1.0 + b2) * n_common / (b2 * n_true + n_pred)


@register
class MultiLabel(RewardComponent):
    r"""Agreement of the predicted label set P with the reference set T over a closed vocabulary.

    Formula (default ``metric = "f1"``): :math:`R = 2|P∩T|/(|P|+|T|)`, and :math:`R = 1` when
    :math:`P = T = ∅`. ``"jaccard"``: :math:`|P∩T|/|P∪T|`. ``"recall_weighted"`` /
    ``"precision_weighted"``: :math:`F_\beta` / :math:`F_{1/\beta}` with the ``beta`` param
    (:func:`set_agreement`).

    Source: DeToxR (Learning Diagnostic Reasoning for Decision Support in Toxicology, arXiv
    2603.29608) rewards GRPO with "a multi-label agreement metric" that penalises both missed
    co-ingestions and hallucinated poisons, and reports Micro-F1. The exact metric is NOT
    PUBLIC (no code; method section not read); per-sample F1 is medreward's choice because it
    matches the reported Micro-F1 (docs/formulas.md#multi-label-set-agreement). Hamming accuracy is deliberately
    not offered: with 14 sparse labels an empty prediction already scores about 0.9.

    Reading the answer: the ``<answer>`` section (``answer_tag``; ``None`` reads the whole
    completion) is split into labels by :func:`medreward.parse.labels.parse_labels` (comma,
    newline, bullet, JSON-array… lists) and each label is normalised to vocabulary ids by
    :meth:`medreward.vocab.Vocabulary.normalize` (synonyms, brand and member drug names; a
    combination product such as Percocet maps to several ids; "none" / "no intoxicant" / ``[]``
    is the empty set). Several labels of one class count once.

    Scoring rules:

    * a label outside the vocabulary is a hallucination: it adds one false positive (distinct
      unknown labels count once each);
    * a missing answer section, or an answer that states nothing, scores 0.0 with
      ``info["reason"]`` (DeToxR: an unparseable answer gets 0). The empty set must be said
      ("none"), so an empty answer cannot collect the ∅/∅ = 1 reward;
    * "none" next to real labels is ignored (the labels count);
    * negated mentions ("cocaine; benzodiazepines excluded", "no ethanol", "opioids ruled out")
      are not predictions (:mod:`medreward.parse.negation`: NegEx/ConText-style triggers and
      scopes); ``info["negated"]`` lists them as written. An answer that only negates states
      the empty set;
    * a reference without the field is ``not_applicable``; a reference naming an id that is
      not in the vocabulary raises :class:`~medreward.errors.RecordError` (a data bug: the
      runner records ``error``). The reference field is a list of ids, or a string — comma
      separated (``"opioids, ethanol"``) or a JSON array — as verl passes ``ground_truth``.
      The vocabulary's "no answer" terms (``"none"``, ``["none"]``, "no intoxicant"…: the same
      list an answer may use) and ``[]`` are the empty set; "none" next to ids is an error.

    ``info``: ``predicted`` (ids), ``missed`` (reference ids not predicted), ``hallucinated``
    (predicted ids not in the reference, then the raw unknown labels), ``unknown`` (the raw
    unknown labels alone); ``truncated`` when the label list hit the parser's bounds.

    Params: ``vocabulary`` (packaged name such as ``"toxicology"``, or a TOML path; required),
    ``field`` (reference key, default ``"labels"``), ``metric`` (``f1`` | ``jaccard`` |
    ``precision_weighted`` | ``recall_weighted``), ``beta`` (default 2.0, for the weighted
    metrics), ``answer_tag`` (default ``"answer"``), ``drug_ner`` (default false: also map
    drug names the vocabulary lacks through ``drug-named-entity-recognition``; slow to load).

    >>> tox = MultiLabel(vocabulary="toxicology", field="substances")
    >>> tox(["<answer>opioids, ethanol</answer>", "<answer>Percocet</answer>", "<answer>none</answer>"],
    ...     [{"substances": ["opioids"]}, {"substances": ["opioids", "acetaminophen"]}, {"substances": []}])
    [0.6666666666666666, 1.0, 1.0]
    """

    kind = "multilabel"

    class Params(ComponentParams):
        vocabulary: str = Field(min_length=1, description="Packaged vocabulary name or path of a TOML file.")
        field: str = Field(default="labels", min_length=1, description="Reference key holding the true ids.")
        metric: Literal["f1", "jaccard", "precision_weighted", "recall_weighted"] = "f1"
        beta: float = Field(default=2.0, gt=0, allow_inf_nan=False, description="β of the weighted F-scores.")
        answer_tag: str | None = "answer"
        drug_ner: bool = False

    params: Params

    def setup(self) -> None:
        self._vocab: Vocabulary = self.vocabulary_param(self.params.vocabulary)
        self._predictions: dict[str, _Prediction] = {}
        self._truths: dict[Any, tuple[str, ...]] = {}
        self._verdicts: dict[tuple[str, tuple[str, ...]], _Verdict] = {}

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    # -- scoring -----------------------------------------------------------------------------
    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        # Parsing is bounded and linear, so the runner may time the batch as a whole. RL batches
        # repeat references and (answer, reference) pairs (a GRPO group shares its reference),
        # so both are memoised; each sample still gets its own info lists.
        field, tag = self.params.field, self.params.answer_tag
        cached_truth, verdicts, judge = self._cached_truth, self._verdicts, self._judge
        out: list[ComponentScore] = []
        append = out.append
        for rollout in rollouts:
            raw_truth = rollout.reference.get(field)
            if raw_truth is None:
                append(ComponentScore.not_applicable(f"reference has no '{field}'"))
                continue
            truth = cached_truth(raw_truth)
            answer = answer_section(rollout, tag)
            if answer is None:
                append(self._zero(truth, f"no <{tag}> section"))
                continue
            verdict = verdicts.get((answer, truth))
            if verdict is None:
                verdict = judge(answer, truth)
                if len(answer) <= _CACHEABLE_CHARS:
                    remember(verdicts, (answer, truth), verdict, _PREDICTION_CACHE_MAX)
            if verdict.reason is not None:
                append(self._zero(truth, verdict.reason))
                continue
            info: dict[str, Any] = {
                "predicted": list(verdict.predicted),
                "missed": list(verdict.missed),
                "hallucinated": list(verdict.hallucinated),
                "unknown": list(verdict.unknown),
            }
            if verdict.truncated:
                info["truncated"] = True
            if verdict.negated:
                info["negated"] = list(verdict.negated)
            append(ComponentScore(verdict.value, info=info))
        return out

    def score_one(self, rollout: Rollout) -> ComponentScore:
        return self.score_batch((rollout,))[0]

    def _judge(self, answer: str, truth: tuple[str, ...]) -> _Verdict:
        pred = self._predict(answer)
        if pred.empty:
            return _Verdict(0.0, (), truth, (), (), False, "empty answer")
        truth_set = frozenset(truth)
        pred_set = pred.id_set
        value = set_agreement(
            len(pred.ids) + len(pred.unknown), len(truth), len(pred_set & truth_set), self.params.metric, self.params.beta
        )
        return _Verdict(
            value,
            pred.ids,
            tuple([i for i in truth if i not in pred_set]),
            tuple([i for i in pred.ids if i not in truth_set]) + pred.unknown,
            pred.unknown,
            pred.truncated,
            None,
            pred.negated,
        )

    def _zero(self, truth: tuple[str, ...], reason: str) -> ComponentScore:
        return ComponentScore(
            0.0, info={"reason": reason, "predicted": [], "missed": list(truth), "hallucinated": [], "unknown": []}
        )

    def _predict(self, answer: str) -> _Prediction:
        """Labels of an answer as vocabulary ids and unknown raw strings (memoised: RL answers repeat)."""
        cacheable = len(answer) <= _CACHEABLE_CHARS
        if cacheable:
            hit = self._predictions.get(answer)
            if hit is not None:
                return hit
        parsed = parse_labels(answer)
        # "[]" states the empty set, and so does an answer that only negates ("no opioids")
        stated = parsed.format == "json" or bool(parsed.labels) or bool(parsed.negated)
        found = self._vocab.normalize_all(parsed.labels, drug_ner=self.params.drug_ner)
        unknown: dict[str, str] = {}  # key → first raw spelling
        if None in found:
            for label, hit in zip(parsed.labels, found):
                if hit is None:
                    unknown.setdefault(term_key(label) or label, label)
        ids = dict.fromkeys(chain.from_iterable(hit for hit in found if hit is not None))
        pred = _Prediction(
            tuple(ids), frozenset(ids), tuple(unknown.values()), parsed.truncated, not stated, parsed.negated
        )
        if cacheable:
            remember(self._predictions, answer, pred, _PREDICTION_CACHE_MAX)
        return pred

    def _cached_truth(self, raw: Any) -> tuple[str, ...]:
        return memoised_reference(self._truths, raw, self._truth, _PREDICTION_CACHE_MAX)

    def _truth(self, raw: Any) -> tuple[str, ...]:
        """Reference ids (validated), from a list of ids or a comma-separated / JSON string."""
        field = self.params.field
        items = reference_items(raw, field, noun="ids")
        vocab = self._vocab
        out: dict[str, None] = {}
        said_none = False
        for item in items:
            if isinstance(item, str) and item.strip() not in vocab and vocab.is_none(item):
                said_none = True  # "none" (the word the task prompt asks for) is the empty set
                continue
            if not isinstance(item, str) or item.strip() not in vocab:
                hint = ""
                if isinstance(item, str):
                    guess = vocab.normalize(item)
                    if guess:
                        hint = f" (did you mean {', '.join(repr(g) for g in guess)}?)"
                raise RecordError(
                    f"reference.{field}: {item!r} is not an id of vocabulary {vocab.name!r}{hint}; "
                    f"ids: {', '.join(vocab.ids)}"
                )
            out[item.strip()] = None
        if said_none and out:
            raise RecordError(f"reference.{field}: says 'none' and also names ids {list(out)}; choose one")
        return tuple(out)
