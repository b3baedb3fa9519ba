r"""``icd_codes``: ICD-10-CM code-set F1 with hierarchical partial credit."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import Field, model_validator

from ..errors import RecordError
from ..parse.icd import asserted_codes, normalize_icd_code, parse_icd_codes
from ..records import ComponentScore, Rollout
from .base import (
    ComponentParams,
    RewardComponent,
    answer_section,
    memoised_reference,
    register,
)
from .reference_lists import reference_items

__all__ = ["CodeInfo", "IcdCodeF1", "Match", "code_info", "match_codes"]

_TRUTH_CACHE_MAX = 65536


@lru_cache(maxsize=1)
def _icd() -> Any:
    """``simple_icd_10_cm``, imported once on first use (parsing its XML takes about 2 s)."""
    with warnings.catch_warnings():  # the library uses deprecated importlib.resources calls
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    return simple_icd_10_cm


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What the reward needs to know about one normalised code."""

    valid: bool  # an ICD-10-CM code (category, subcategory or full code; not a block/chapter)
    billable: bool  # a leaf of the tabular list
    category: str  # the three-character category
    block: str | None  # the block (e.g. "I20-I25") the category belongs to


@lru_cache(maxsize=65536)
def code_info(code: str) -> CodeInfo:
    """Validity, billability and hierarchy of a normalised code (``E11.9``), cached.

    >>> code_info("I21.4")
    CodeInfo(valid=True, billable=True, category='I21', block='I20-I25')
    >>> code_info("E11.90").valid
    False
    """
    cm = _icd()
    category = code[:3]
    try:
        valid = bool(cm.is_valid_item(code)) and "-" not in code and not cm.is_chapter(code)
    except Exception:  # noqa: BLE001 - the library raises assorted errors on malformed strings
        valid = False
    if not valid:
        return CodeInfo(False, False, category, None)
    # ancestors run from the parent up to the chapter; the item just below the chapter is the block
    ancestors = cm.get_ancestors(code)
    block = ancestors[-2] if len(ancestors) >= 2 else None
    return CodeInfo(True, bool(cm.is_leaf(code)), category, block)


@dataclass(frozen=True, slots=True)
class Match:
    predicted: str
    reference: str
    level: str  # "exact" | "category" | "block"
    credit: float


def match_codes(
    predicted: Sequence[str], reference: Sequence[str], exact: float, category: float, block: float
) -> list[Match]:
    """The one-to-one assignment of predicted to reference codes that maximises total credit.

    Greedy by credit (ties: earlier predicted, then earlier reference code). Greedy is optimal
    here: credit depends only on the deepest level two codes share in a tree (code ⊂ category
    ⊂ block) and does not grow with depth lost, so similarity is an ultrametric and the
    usual exchange argument holds — swapping a best pair into any assignment never lowers
    its total. All codes must be valid (see :func:`code_info`).

    >>> [(m.predicted, m.reference, m.level) for m in match_codes(["E11.65", "I10"], ["E11.9", "I10"], 1, .5, .25)]
    [('I10', 'I10', 'exact'), ('E11.65', 'E11.9', 'category')]
    """
    pairs: list[tuple[float, int, int, str]] = []
    for i, p in enumerate(predicted):
        pi = code_info(p)
        for j, t in enumerate(reference):
            if p == t:
                pairs.append((exact, i, j, "exact"))
                continue
            ti = code_info(t)
            if pi.category == ti.category:
                pairs.append((category, i, j, "category"))
            elif pi.block is not None and pi.block == ti.block:
                pairs.append((block, i, j, "block"))
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    used_p: set[int] = set()
    used_t: set[int] = set()
    out: list[Match] = []
    for credit, i, j, level in pairs:
        if credit <= 0 or i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append(Match(predicted[i], reference[j], level, credit))
    return out


@register
class IcdCodeF1(RewardComponent):
    r"""Soft F1 between the predicted and the reference ICD-10-CM code sets.

    Formula: codes are paired one-to-one (:func:`match_codes`) and each pair earns the credit
    of the deepest level the two share: ``exact`` (same code, default 1.0), ``category``
    (same three-character category, e.g. E11.65 vs E11.9, default 0.5) or ``block`` (same
    block, e.g. I21.4 vs I25.10 in I20-I25, default 0.25); other pairs earn 0. With
    :math:`S` the total credit, soft precision :math:`P = S/|\hat{C}|`, soft recall
    :math:`R = S/|C|` and :math:`F_1 = 2PR/(P+R) = 2S/(|\hat{C}|+|C|)`; :math:`F_1 = 1`
    when both sets are empty and 0 when exactly one is.

    Source: code-set (micro/example-based) F1 is the standard metric of automated ICD coding
    (e.g. Mullenbach et al., CAML, NAACL 2018; the MIMIC coding literature). The
    hierarchical partial credit is medreward's design [UNVERIFIED: inferred] — in the spirit
    of hierarchical evaluation measures for ICD coding (Kosmopoulos et al., 2015), but the
    levels and the default credits 1 / 0.5 / 0.25 are our choice.

    Rules:

    * Predicted codes are read from the ``<answer>`` section (``answer_tag``; ``None`` reads
      the whole completion) by :func:`medreward.parse.icd.parse_icd_codes` (with or without
      the dot, any case; deduplicated). A code negated where it stands ("not E11.9", "rule
      out I10", "E11.9 excluded"; :func:`medreward.parse.icd.asserted_codes`) is not predicted.
    * A predicted code that is not in ICD-10-CM (``simple_icd_10_cm.is_valid_item``; e.g.
      E11.90, B12) is a hallucination: it counts in :math:`|\hat{C}|` and earns nothing.
      With ``require_billable``, so does a valid code that is not billable (a category such
      as E11 where a full code exists).
    * A missing answer section or a blank answer scores 0 (``info["reason"]``). An answer
      with no codes ("none") is the empty prediction, which scores 1 only against an empty
      reference.
    * A reference without the field is ``not_applicable``; a reference code that is not a
      valid ICD-10-CM code raises :class:`~medreward.errors.RecordError` (a data bug: the
      runner records ``error``). The field is a list of codes, or a string — comma /
      semicolon / space separated or a JSON array — as verl passes ``ground_truth``.

    ``info``: ``predicted``, ``matched`` (``{predicted, reference, level, credit}``),
    ``missed`` (reference codes that earned nothing), ``invalid``, ``non_billable`` (with
    ``require_billable``), ``hallucinated`` (predicted codes that earned nothing),
    ``precision``, ``recall``; ``truncated`` when the parser hit its bounds.

    Params: ``field`` (``"codes"``), ``answer_tag`` (``"answer"``), ``exact`` (1.0),
    ``category`` (0.5), ``block`` (0.25) with ``0 <= block <= category <= exact <= 1`` and
    ``exact > 0``, ``require_billable`` (false).

    >>> icd = IcdCodeF1()
    >>> icd(["<answer>E11.9, I10</answer>", "<answer>E11.65</answer>", "<answer>I25.10</answer>"],
    ...     [{"codes": ["E11.9", "I10"]}, {"codes": ["E11.9"]}, {"codes": ["I21.4"]}])
    [1.0, 0.5, 0.25]
    """

    kind = "icd_codes"

    class Params(ComponentParams):
        field: str = Field(default="codes", min_length=1, description="Reference key holding the true codes.")
        answer_tag: str | None = "answer"
        exact: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
        category: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)
        block: float = Field(default=0.25, ge=0, le=1, allow_inf_nan=False)
        require_billable: bool = False

        @model_validator(mode="after")
        def _ordered(self) -> IcdCodeF1.Params:
            if not self.block <= self.category <= self.exact:
                raise ValueError("credits must satisfy block <= category <= exact")
            return self

    params: Params

    def setup(self) -> None:
        self._truths: dict[Any, tuple[str, ...]] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        truth = self._cached_truth(raw)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return self._zero(truth, f"no <{p.answer_tag}> section")
        if not answer.strip():
            return self._zero(truth, "empty answer")
        parsed = parse_icd_codes(answer)
        predicted = list(asserted_codes(answer, parsed))  # "not E11.9" predicts nothing

        invalid: list[str] = []
        non_billable: list[str] = []
        scorable: list[str] = []
        for code in predicted:
            info = code_info(code)
            if not info.valid:
                invalid.append(code)
            elif p.require_billable and not info.billable:
                non_billable.append(code)
            else:
                scorable.append(code)

        matches = match_codes(scorable, truth, p.exact, p.category, p.block)
        total = sum(m.credit for m in matches)
        n_pred, n_true = len(predicted), len(truth)
        if n_pred == 0 and n_true == 0:
            value = 1.0
        else:
            value = 2.0 * total / (n_pred + n_true)
        credited_p = {m.predicted for m in matches}
        credited_t = {m.reference for m in matches}
        out: dict[str, Any] = {
            "predicted": predicted,
            "matched": [
                {"predicted": m.predicted, "reference": m.reference, "level": m.level, "credit": m.credit}
                for m in matches
            ],
            "missed": [t for t in truth if t not in credited_t],
            "invalid": invalid,
            "hallucinated": [c for c in predicted if c not in credited_p],
            "precision": total / n_pred if n_pred else float(n_true == 0),
            "recall": total / n_true if n_true else float(n_pred == 0),
        }
        if p.require_billable:
            out["non_billable"] = non_billable
        if parsed.truncated:
            out["truncated"] = True
        return ComponentScore(value, info=out)

    def _zero(self, truth: tuple[str, ...], reason: str) -> ComponentScore:
        return ComponentScore(
            0.0,
            info={"reason": reason, "predicted": [], "matched": [], "missed": list(truth), "invalid": [],
                  "hallucinated": []},
        )  # fmt: skip

    def _cached_truth(self, raw: Any) -> tuple[str, ...]:
        return memoised_reference(self._truths, raw, self._truth, _TRUTH_CACHE_MAX)

    def _truth(self, raw: Any) -> tuple[str, ...]:
        """Reference codes, normalised, validated against ICD-10-CM and deduplicated."""
        field = self.params.field
        items = reference_items(
            raw, field, noun="ICD-10-CM codes", string_form="a string",
            split=lambda text: [s for s in text.replace(";", ",").replace(",", " ").split() if s],
        )  # fmt: skip
        out: dict[str, None] = {}
        for item in items:
            code = normalize_icd_code(item) if isinstance(item, str) else None
            if code is None:
                raise RecordError(f"reference.{field}: {item!r} is not shaped like an ICD-10-CM code")
            if not code_info(code).valid:
                raise RecordError(f"reference.{field}: {code!r} is not an ICD-10-CM code (simple-icd-10-cm 1.5.0)")
            out[code] = None
        return tuple(out)
