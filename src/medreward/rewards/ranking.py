r"""``ranking``: a ranked list of ids (trials, PMIDs, ICD codes) against the relevant ones."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2
from pydantic import Field, model_validator

from ..errors import RecordError, SpecError
from ..parse.ranked_ids import IdKind, normalize_id, parse_ranked_ids
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, memoised_reference, register

__all__ = ["Ranking", "RankingMetrics", "ranking_metrics"]

_TRUTH_CACHE_MAX = 65536
_INFO_IDS = 100  # ids of the ranked list kept in info


@dataclass(frozen=True, slots=True)
class RankingMetrics:
    """The metrics of one ranked list (see :func:`ranking_metrics`)."""

    recall: float
    precision: float
    ndcg: float
    mrr: float
    sensitivity: float
    found: tuple[str, ...]  # relevant ids within the first k
    missed: tuple[str, ...]  # relevant ids not within the first k


def _gain(grade: float, gain: str) -> float:
    return grade if gain == "linear" else 2.0**grade - 1.0


def ranking_metrics(
    ranked: Sequence[str],
    grades: Mapping[str, float],
    k: int,
    budget: int,
    gain: Literal["exponential", "linear"] = "exponential",
) -> RankingMetrics:
    r"""Recall@k, precision@k, nDCG@k, MRR and sensitivity at a budget of one ranked list.

    ``grades`` maps the reference's ids to their relevance grade; an id is relevant when its
    grade is above 0 (there must be at least one). With :math:`rel_i` the grade of the id at
    rank :math:`i` (0 for ids outside the reference) and :math:`R` the relevant set:

    * recall@k :math:`= |R ∩ top_k| / |R|`; precision@k :math:`= |R ∩ top_k| / k` (the
      denominator is k even when fewer ids are listed, as in trec_eval's P@k);
    * nDCG@k :math:`= DCG_k / IDCG_k`, :math:`DCG_k = \sum_{i=1}^{k} g(rel_i)/\log_2(i+1)`,
      :math:`IDCG_k` the DCG of the reference's grades sorted best first (Järvelin &
      Kekäläinen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 2002), with
      gain :math:`g(r) = 2^r - 1` (``exponential``, Burges et al., ICML 2005; the usual
      choice for graded relevance) or :math:`g(r) = r` (``linear``, what
      ``sklearn.metrics.ndcg_score`` uses). For binary relevance the two agree;
    * MRR (reciprocal rank) :math:`= 1/\text{rank}` of the first relevant id in the whole
      list, 0 when none is listed (Voorhees, TREC-8 QA, 1999);
    * sensitivity at a budget :math:`= |R ∩ top_{budget}| / |R|`: the fraction of the
      relevant records a screener finds when it reads only the first ``budget`` (the
      work-saving view of citation screening used by Panacea's and Quicker's screening
      evaluations).

    >>> m = ranking_metrics(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, k=2, budget=3)
    >>> round(m.recall, 4), m.precision, m.mrr, round(m.sensitivity, 4)
    (0.3333, 0.5, 1.0, 0.6667)
    >>> round(m.ndcg, 4)  # (1/log2 2) / (1/log2 2 + 1/log2 3)
    0.6131
    """
    relevant = {i for i, g in grades.items() if g > 0}
    top = ranked[:k]
    found = tuple(i for i in top if i in relevant)
    found_set = set(found)
    dcg = sum(_gain(grades.get(i, 0.0), gain) / math.log2(r + 2) for r, i in enumerate(top))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(_gain(g, gain) / math.log2(r + 2) for r, g in enumerate(ideal))
    mrr = next((1.0 / (r + 1) for r, i in enumerate(ranked) if i in relevant), 0.0)
    in_budget = sum(1 for i in ranked[:budget] if i in relevant)
    return RankingMetrics(
        recall=len(found) / len(relevant),
        precision=len(found) / k,
        ndcg=dcg / idcg,
        mrr=mrr,
        sensitivity=in_budget / len(relevant),
        found=found,
        missed=tuple(i for i in grades if i in relevant and i not in found_set),
    )


@register
class Ranking(RewardComponent):
    r"""How well the answer ranks the relevant ids: recall@k, precision@k, nDCG@k, MRR or
    screening sensitivity at a budget (``metric``; ``info`` holds all of them).

    Formulas: :func:`ranking_metrics` (recall/precision@k; nDCG@k after Järvelin &
    Kekäläinen, ACM TOIS 2002, exponential gain :math:`2^{rel}-1` by default; MRR; sensitivity
    at a budget). Sources: the standard IR measures (trec_eval) as used by clinical-trial
    retrieval and evidence screening systems (Panacea, arXiv 2407.11007: trial search and
    screening; Quicker: evidence screening for clinical decision support) — [UNVERIFIED: which
    cut-offs and budgets those papers report was not checked; ``k`` and ``budget`` are
    parameters for that reason]; automated ICD coding reports top-k recall of a ranked code
    list (recall@k in the MIMIC coding literature: set ``ids = "icd10"``, ``metric =
    "recall"``, ``k = 10``).

    Reading the answer: the ``<answer>`` section (``answer_tag``; ``None`` reads the whole
    completion) is read as a ranked list by :func:`medreward.parse.ranked_ids.parse_ranked_ids`:
    ``ids`` chooses what an id is (``nct`` trial ids, ``pmid``, ``icd10`` codes normalised as
    :mod:`medreward.parse.icd` does, or ``token``: every item of a plain list), or
    ``id_pattern`` gives a regular expression (re2 syntax; group 1 when it has a group). A
    repeated id keeps its first rank (``info["duplicates"]`` counts the repeats).

    Reference (``field``, default ``relevant``): a list of relevant ids (binary relevance),
    or an object ``{id: grade}`` with numeric grades ≥ 0 (graded relevance; grade 0 is
    "judged not relevant"); a JSON string, or a string of ids separated by commas, semicolons or
    blanks (commas or semicolons only with ``id_pattern``), is accepted too.
    Reference ids are normalised like the answer's (``nct01234567`` → ``NCT01234567``,
    ``E119`` → ``E11.9``). A reference without the field is ``not_applicable``, and so is one
    with no relevant id (recall is undefined); a malformed one (an id not shaped like
    ``ids``, a negative or non-numeric grade, another type) raises
    :class:`~medreward.errors.RecordError` naming the field (the runner records ``error``).

    Scoring: a missing answer section or an answer that lists no id scores 0 with
    ``info["reason"]``. ``info``: ``recall``, ``precision``, ``ndcg``, ``mrr``,
    ``sensitivity`` (at ``budget``), ``k``, ``budget``, ``found`` (relevant ids in the first
    k), ``missed``, ``ranked`` (the first 100 ids read), ``n_listed``, ``duplicates``;
    ``truncated`` when the parser hit its bounds.

    Params: ``field`` (``"relevant"``), ``ids`` (``token`` | ``nct`` | ``pmid`` | ``icd10``;
    default ``token``), ``id_pattern`` (re2 pattern, overrides ``ids``), ``metric``
    (``ndcg`` | ``recall`` | ``precision`` | ``mrr`` | ``sensitivity``; default ``ndcg``),
    ``k`` (10), ``budget`` (default: ``k``), ``gain`` (``exponential`` | ``linear``),
    ``answer_tag`` (``"answer"``).

    >>> rank = Ranking(ids="nct", metric="recall", k=2)
    >>> rank(["<answer>1. NCT00000001\n2. NCT00000009\n3. NCT00000002</answer>"],
    ...      [{"relevant": ["NCT00000001", "NCT00000002"]}])
    [0.5]
    >>> Ranking(ids="icd10", metric="recall", k=10)(["<answer>E119, I10</answer>"], [{"relevant": "E11.9, N18.3"}])
    [0.5]
    """

    kind = "ranking"

    class Params(ComponentParams):
        field: str = Field(default="relevant", min_length=1, description="Reference key holding the relevant ids.")
        ids: IdKind = "token"
        id_pattern: str | None = Field(default=None, min_length=1, description="re2 pattern of an id (overrides ids).")
        metric: Literal["ndcg", "recall", "precision", "mrr", "sensitivity"] = "ndcg"
        k: int = Field(default=10, ge=1, le=1000)
        budget: int | None = Field(default=None, ge=1, le=1000, description="Ids a screener reads (default: k).")
        gain: Literal["exponential", "linear"] = "exponential"
        answer_tag: str | None = "answer"

        @model_validator(mode="after")
        def _pattern_compiles(self) -> Ranking.Params:
            if self.id_pattern is not None:
                try:
                    re2.compile(self.id_pattern)
                except Exception as exc:  # noqa: BLE001 - re2 raises its own error type
                    raise ValueError(f"id_pattern {self.id_pattern!r} is not a valid re2 pattern ({exc})") from None
            return self

    params: Params

    def setup(self) -> None:
        p = self.params
        try:
            self._pattern = re2.compile(p.id_pattern) if p.id_pattern is not None else None
        except Exception as exc:  # noqa: BLE001 - validated above; kept for safety
            raise SpecError(f"{self.name}.params.id_pattern: {exc}") from None
        self._truths: dict[Any, dict[str, float]] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    @property
    def _budget(self) -> int:
        return self.params.budget if self.params.budget is not None else self.params.k

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        grades = memoised_reference(self._truths, raw, self._truth, _TRUTH_CACHE_MAX)
        if not any(g > 0 for g in grades.values()):
            return ComponentScore.not_applicable(f"reference.{p.field} has no relevant id")
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return self._zero(grades, f"no <{p.answer_tag}> section")
        parsed = parse_ranked_ids(answer, p.ids, self._pattern)
        if not parsed.ids:
            return self._zero(grades, "no ids found in the answer")
        m = ranking_metrics(parsed.ids, grades, p.k, self._budget, p.gain)
        info: dict[str, Any] = {
            "recall": m.recall, "precision": m.precision, "ndcg": m.ndcg, "mrr": m.mrr,
            "sensitivity": m.sensitivity, "k": p.k, "budget": self._budget,
            "found": list(m.found), "missed": list(m.missed), "ranked": list(parsed.ids[:_INFO_IDS]),
            "n_listed": len(parsed.ids), "duplicates": parsed.duplicates,
        }  # fmt: skip
        if parsed.truncated:
            info["truncated"] = True
        return ComponentScore(getattr(m, p.metric), info=info)

    def _zero(self, grades: Mapping[str, float], reason: str) -> ComponentScore:
        missed = [i for i, g in grades.items() if g > 0]
        return ComponentScore(
            0.0,
            info={"reason": reason, "recall": 0.0, "precision": 0.0, "ndcg": 0.0, "mrr": 0.0, "sensitivity": 0.0,
                  "k": self.params.k, "budget": self._budget, "found": [], "missed": missed, "ranked": [],
                  "n_listed": 0, "duplicates": 0},
        )  # fmt: skip

    def _truth(self, raw: Any) -> dict[str, float]:
        """Reference ids → grades (1 for a plain list), normalised and validated."""
        field, kind = self.params.field, self.params.ids
        if isinstance(raw, str):
            text = raw.strip()
            if text[:1] in ("[", "{"):
                try:
                    raw = json.loads(text)
                except ValueError:
                    raise RecordError(f"reference.{field}: {text[:80]!r} is not valid JSON") from None
            elif self._pattern is not None:  # a custom id may hold blanks
                raw = [s for s in (t.strip() for t in text.replace(";", ",").split(",")) if s]
            else:
                raw = text.replace(";", " ").replace(",", " ").split()
        if isinstance(raw, Mapping):
            pairs = list(raw.items())
        elif isinstance(raw, (list, tuple)):
            pairs = [(item, 1.0) for item in raw]
        else:
            raise RecordError(
                f"reference.{field} must be a list of ids or an object {{id: grade}}, got {type(raw).__name__}"
            )
        grades: dict[str, float] = {}
        for item, grade in pairs:
            key = self._normalise(item)
            if key is None:
                shape = "an id" if self._pattern is not None else f"a {kind} id"
                raise RecordError(f"reference.{field}: {item!r} is not {shape}")
            if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade) or grade < 0:
                raise RecordError(f"reference.{field}: grade of {item!r} must be a number >= 0, got {grade!r}")
            grades[key] = max(float(grade), grades.get(key, 0.0))
        return grades

    def _normalise(self, item: Any) -> str | None:
        if self._pattern is not None:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                return None
            s = str(item).strip()
            return s or None
        return normalize_id(item, self.params.ids)
