r"""``grounding``: the fraction of the answer's checkable claims found in the context (rule-based faithfulness)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..errors import RecordError
from ..parse.icd import parse_icd_codes
from ..parse.mentions import find_mentions
from ..parse.numbers import ParsedNumber, parse_numbers
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register, remember
from .numeric import UnitError, convert

__all__ = ["Grounding"]

log = logging.getLogger(__name__)

_CONTEXT_CACHE_MAX = 256  # parsed contexts kept per component (a GRPO group shares its context)
ClaimKind = Literal["numbers", "drugs", "codes"]


@dataclass(frozen=True, slots=True)
class _Context:
    numbers: dict[str, list[tuple[float, float, float]]]  # unit → (value, low, high) of each mention
    drugs: frozenset[str]
    codes: frozenset[str]


def _same(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)


@register
class Grounding(RewardComponent):
    r"""The fraction of the answer's checkable claims that the provided context supports.

    Formula: :math:`R = |\{c \in C : c \text{ found in the context}\}| / |C|` over the checkable
    claims :math:`C` of the answer:

    * **numbers with a unit** (:func:`medreward.parse.numbers.parse_numbers`; a bare number is
      not checkable): supported when a number of the context converts to the same value
      (pint, the ``numeric`` component's registry: 5 mg = 5mg = 0.005 g; 98.6 °F = 37 °C;
      relative tolerance ``rel_tol``). A range claim ("10-12 mg") needs a context range with
      the same ends; a single value may also equal either end of a context range. A context
      number without a unit supports nothing (the unit is part of the claim);
    * **drugs** (:func:`medreward.parse.mentions.find_mentions`, brand ↔ generic through
      ``drug-named-entity-recognition``'s canonical names): supported when the context names
      the same drug. Negated mentions count as claims too ("not on warfarin" talks about
      warfarin);
    * **ICD-10-CM codes** (:func:`medreward.parse.icd.parse_icd_codes`, normalised: E119 =
      e11.9 = E11.9): supported when the context holds the same code.

    Each distinct claim counts once. The context is ``reference[context_field]`` (a string, or a
    list of strings joined by new lines), else the prompt (``use_prompt``). An answer with no
    checkable claim is ``not_applicable`` ("nothing to check": it asserts nothing the context
    could contradict, and a 0 would punish it, a 1 reward it, for saying nothing); so is a
    record with no context. A missing answer section scores 0 with ``info["reason"]``; a
    context of the wrong type raises :class:`~medreward.errors.RecordError` naming the field.

    Source: Clinical-R1 (CRPO) rewards faithfulness — the answer's statements are supported by
    the clinical context — next to accuracy and comprehensiveness [UNVERIFIED: formula not
    read; there a model judges it]; this is medreward's rule-based version over the claims a
    rule can check.

    ``info``: ``n_claims``, ``supported`` and ``unsupported`` (each ``{"kind", "text"}``;
    ``kind`` is ``number``, ``drug`` or ``code``), ``context`` (``"reference.<field>"`` or
    ``"prompt"``).

    Params: ``context_field`` (``"context"``), ``use_prompt`` (true), ``claims`` (which kinds
    are checked; default all three), ``rel_tol`` (``1e-6``), ``answer_tag`` (``"answer"``;
    ``None`` reads the whole completion).

    >>> g = Grounding()
    >>> g(["<answer>Give 0.005 g of warfarin (Coumadin); code I48.91.</answer>",
    ...    "<answer>Give 10 mg aspirin.</answer>", "<answer>Rest.</answer>"],
    ...   [{"context": "On warfarin 5mg daily. AF (I4891)."}] * 3)
    [1.0, 0.0, None]
    """

    kind = "grounding"

    class Params(ComponentParams):
        context_field: str = Field(default="context", min_length=1, description="Reference key of the context.")
        use_prompt: bool = True
        claims: tuple[ClaimKind, ...] = Field(default=("numbers", "drugs", "codes"), min_length=1)
        rel_tol: float = Field(default=1e-6, ge=0, lt=1, allow_inf_nan=False)
        answer_tag: str | None = "answer"

    params: Params

    def setup(self) -> None:
        self._contexts: dict[str, _Context] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.context_field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.context_field)
        source = f"reference.{p.context_field}"
        if raw is None:
            text = rollout.prompt_text if p.use_prompt else ""
            source = "prompt"
        elif isinstance(raw, str):
            text = raw
        elif isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
            text = "\n".join(raw)
        else:
            raise RecordError(
                f"reference.{p.context_field} must be a string or a list of strings, got {type(raw).__name__}"
            )
        if not text.strip():
            where = f"reference.{p.context_field}" + (" or the prompt" if p.use_prompt else "")
            return ComponentScore.not_applicable(f"no context: {where} is empty or missing")
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section", "context": source})
        context = self._context(text)
        supported: list[dict[str, str]] = []
        unsupported: list[dict[str, str]] = []
        kinds = set(p.claims)
        if "numbers" in kinds:
            seen: set[tuple[float, float, str]] = set()
            for num in parse_numbers(answer):
                if num.unit is None or (num.low, num.high, num.unit) in seen:
                    continue
                seen.add((num.low, num.high, num.unit))
                claim = {"kind": "number", "text": num.raw[:200]}
                (supported if self._number_found(num, context) else unsupported).append(claim)
        if "drugs" in kinds:
            found = find_mentions(answer)
            for drug in dict.fromkeys(found.ids() + found.ids(negated=True)):
                (supported if drug in context.drugs else unsupported).append({"kind": "drug", "text": drug})
        if "codes" in kinds:
            for code in parse_icd_codes(answer).codes:
                (supported if code in context.codes else unsupported).append({"kind": "code", "text": code})
        n = len(supported) + len(unsupported)
        if n == 0:
            return ComponentScore.not_applicable(
                "no checkable claims in the answer (" + ", ".join(_CLAIM_WORDS[k] for k in p.claims) + ")"
            )
        info = {"n_claims": n, "supported": supported, "unsupported": unsupported, "context": source}
        return ComponentScore(len(supported) / n, info=info)

    def _context(self, text: str) -> _Context:
        hit = self._contexts.get(text)
        if hit is not None:
            return hit
        kinds = set(self.params.claims)
        numbers: dict[str, list[tuple[float, float, float]]] = {}
        if "numbers" in kinds:
            for num in parse_numbers(text):
                if num.unit is not None:
                    numbers.setdefault(num.unit, []).append((num.value, num.low, num.high))
        drugs: frozenset[str] = frozenset()
        if "drugs" in kinds:
            found = find_mentions(text)
            drugs = frozenset(found.ids() + found.ids(negated=True))
        codes = frozenset(parse_icd_codes(text).codes) if "codes" in kinds else frozenset()
        context = _Context(numbers, drugs, codes)
        remember(self._contexts, text, context, _CONTEXT_CACHE_MAX)
        return context

    def _number_found(self, num: ParsedNumber, context: _Context) -> bool:
        tol = self.params.rel_tol
        assert num.unit is not None
        for unit, mentions in context.numbers.items():
            try:
                low = convert(num.low, num.unit, unit)
                high = convert(num.high, num.unit, unit)
            except UnitError as exc:  # a parser unit pint cannot read: not comparable
                log.debug("grounding: %s", exc)
                continue
            if low is None or high is None:
                continue  # another dimension
            for value, c_low, c_high in mentions:
                if num.is_range:
                    if _same(low, c_low, tol) and _same(high, c_high, tol):
                        return True
                elif _same(low, value, tol) or _same(low, c_low, tol) or _same(low, c_high, tol):
                    return True
        return False


_CLAIM_WORDS = {"numbers": "numbers with units", "drugs": "drug names", "codes": "ICD-10-CM codes"}
