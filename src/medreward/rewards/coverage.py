r"""``coverage``: the fraction of the reference's key points that the answer states (negation-aware)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import Field

from ..errors import RecordError
from ..parse.phrases import PhraseIndex, phrase_keys
from ..parse.scopes import negation_view
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, memoised_reference, register

__all__ = ["Coverage", "KeyPoint", "read_key_points"]

_CACHE_MAX = 16384


class KeyPoint(NamedTuple):
    """One key point: ``label`` (its first phrasing, as written); ``positive``: the word keys of
    its affirmative phrasings; ``negative``: the word keys of what its negative phrasings deny
    ("no antibiotics" → ``("antibiotic",)``)."""

    label: str
    positive: tuple[tuple[str, ...], ...]
    negative: tuple[tuple[str, ...], ...]


def read_key_points(raw: Any, field: str = "key_points") -> tuple[KeyPoint, ...]:
    """Key points from a reference value: a list whose items are a phrase or a list of
    acceptable phrasings. A phrasing that is itself negated ("no antibiotics", "antibiotics
    ruled out") is a *negative* key point: it is stated when the answer negates what it denies.

    >>> [(k.label, k.positive, k.negative) for k in read_key_points([["beta blocker", "metoprolol"], "no antibiotics"])]
    [('beta blocker', (('beta', 'blocker'), ('metoprolol',)), ()), ('no antibiotics', (), (('antibiotic',),))]
    """
    if not isinstance(raw, (list, tuple)):
        raise RecordError(
            f"reference.{field} must be a list of key points (each a phrase or a list of phrasings), "
            f"got {type(raw).__name__}"
        )
    out = []
    for k, item in enumerate(raw):
        phrasings = [item] if isinstance(item, str) else item
        if not isinstance(phrasings, (list, tuple)) or not phrasings:
            raise RecordError(
                f"reference.{field}[{k}] must be a phrase or a non-empty list of phrasings, got {item!r}"
            )
        positive: list[tuple[str, ...]] = []
        negative: list[tuple[str, ...]] = []
        for j, phrasing in enumerate(phrasings):
            where = f"reference.{field}[{k}]" + ("" if isinstance(item, str) else f"[{j}]")
            if not isinstance(phrasing, str) or not phrase_keys(phrasing):
                raise RecordError(f"{where} must be a phrase with at least one word, got {phrasing!r}")
            view = negation_view(phrasing)
            denied = [phrase_keys(view.text[s:e]) for s, e in view.negated]
            denied = [d for d in denied if d]
            if denied:
                negative.extend(denied)
            else:
                positive.append(phrase_keys(phrasing))
        out.append(KeyPoint(str(phrasings[0]).strip(), tuple(positive), tuple(negative)))
    return tuple(out)


@register
class Coverage(RewardComponent):
    r"""The fraction of the reference's key points that the answer states, lexically and
    negation-aware (Clinical-R1's comprehensiveness, rule-based).

    Formula: :math:`R = |\{k : \text{stated}(k)\}| / K` over the :math:`K` key points of
    ``reference.key_points`` (each a phrase or a list of acceptable phrasings, its synonyms).

    A key point is **stated** when one of its phrasings occurs in the answer — as a run of
    words, case-, accent-, punctuation- and plural-insensitive ("Beta-blockers" states "beta
    blocker"; :class:`medreward.parse.phrases.PhraseIndex`) — and **not negated** there (the
    ConText-style rules of the label reader, :mod:`medreward.parse.scopes`): "no beta blocker"
    or "beta blockers were ruled out" does not state "beta blocker". A key point that is itself
    negative ("no antibiotics") is stated when the answer *negates* what it denies ("Do not
    give antibiotics", "antibiotics: not indicated" if a trigger reads it so, "no antibiotics"),
    and not by a bare "antibiotics". A key point mentioned only with the opposite polarity is
    listed in ``info["contradicted"]`` (it still scores as not stated).

    Source: Clinical-R1 (CRPO, Clinical-Objective Relative Policy Optimization) rewards
    comprehensiveness — the coverage of the key clinical points of a reference — next to
    accuracy and faithfulness [UNVERIFIED: formula not read; there the judgement is made by a
    model; medreward's rule-based key-point recall is its own choice].

    Rules: a reference without the field is ``not_applicable``, as is an empty list (nothing to
    cover); a field of the wrong shape raises :class:`~medreward.errors.RecordError` naming it
    (``reference.key_points[2][0] must be a phrase …``). A missing answer section or an empty
    answer scores 0 with ``info["reason"]``. Semantic matching (an embedding backend) is not
    built yet: paraphrases count only when the reference lists them as phrasings.

    ``info``: ``stated``, ``missed``, ``contradicted`` (key points by their first phrasing),
    ``n_key_points``; ``truncated`` when the answer was cut at the reader's bound.

    Params: ``field`` (``"key_points"``), ``answer_tag`` (``"answer"``; ``None`` reads the whole
    completion).

    >>> cov = Coverage()
    >>> cov(["<answer>Start a beta-blocker and aspirin. No antibiotics.</answer>",
    ...      "<answer>No beta blocker; give antibiotics.</answer>"],
    ...     [{"key_points": [["beta blocker", "metoprolol"], "aspirin", "no antibiotics"]}] * 2)
    [1.0, 0.0]
    """

    kind = "coverage"

    class Params(ComponentParams):
        field: str = Field(default="key_points", min_length=1, description="Reference key of the key points.")
        answer_tag: str | None = "answer"

    params: Params

    def setup(self) -> None:
        self._truths: dict[Any, tuple[KeyPoint, ...]] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        points: tuple[KeyPoint, ...] = memoised_reference(
            self._truths, raw, lambda r: read_key_points(r, p.field), _CACHE_MAX
        )
        if not points:
            return ComponentScore.not_applicable(f"reference.{p.field} is empty")
        labels = [k.label for k in points]
        answer = answer_section(rollout, p.answer_tag)
        if answer is None or not answer.strip():
            reason = f"no <{p.answer_tag}> section" if answer is None else "empty answer"
            return ComponentScore(0.0, info={"reason": reason, "stated": [], "missed": labels, "contradicted": []})
        index = PhraseIndex(answer)
        stated, missed, contradicted = _judge(index, points)
        info: dict[str, Any] = {
            "stated": stated,
            "missed": missed,
            "contradicted": contradicted,
            "n_key_points": len(points),
        }
        if index.truncated:
            info["truncated"] = True
        return ComponentScore(len(stated) / len(points), info=info)


def _judge(index: PhraseIndex, points: Sequence[KeyPoint]) -> tuple[list[str], list[str], list[str]]:
    stated: list[str] = []
    missed: list[str] = []
    contradicted: list[str] = []
    for point in points:
        opposite = False
        ok = False
        for keys in point.positive:
            flags = index.occurrences(keys)
            if not all(flags):  # one occurrence free of negation
                ok = True
                break
            opposite = opposite or bool(flags)
        if not ok:
            for keys in point.negative:
                flags = index.negated_occurrences(keys)
                if any(flags):
                    ok = True
                    break
                opposite = opposite or bool(flags)
        if ok:
            stated.append(point.label)
        elif opposite:
            contradicted.append(point.label)
        else:
            missed.append(point.label)
    return stated, missed, contradicted
