"""``reasoning_pattern``: the Reasoning Pattern Reward (RPR) of Lv et al., and RPR calibration of a
noisy reward model."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import field_validator

from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register
from .repetition import capped_words, ngram_stats

__all__ = ["RPR_PHRASES", "ReasoningPattern", "rpr_calibrate", "rpr_score"]

#: The 40 phrases of ``think_reward`` (trestad/Noisy-Rewards-in-Learning-to-Reason,
#: ``verl/verl/utils/reward_score/math_score.py``), verbatim: trailing spaces are part of some
#: phrases, and "makes sence" is misspelt in the source (kept: changing it changes the reward).
RPR_PHRASES: tuple[str, ...] = (
    "i need to", "we need to", "wait", "alternatively", "let me check", "let me see",
    "let's focus on", "we know that", "we can observe ", "we can see ", "let me try", "let's try",
    "let us try", "first, ", "firstly, ", "next, ", "finally, ", "let us first", "let's first",
    "let me first", "try again", "still not", "not working", "not correct", "does not work",
    "doesn't work", "makes sence", "since we ", "because we ", "consequently", "as a result",
    "thus", "therefore", "hence", "so that", "thereby", "if we", "given there ", "for instance ",
    "for example ",
)  # fmt: skip
assert len(RPR_PHRASES) == 40 and len(set(RPR_PHRASES)) == 40

_SATURATION = 20  # hits/20, capped at 1
_REPETITION_N = 20  # word 20-grams
_USER_TURN = "user: "


def rpr_score(text: str) -> tuple[float, dict[str, object]]:
    """RPR of ``text`` (any case) and what it found: the phrase hits, the 20-gram repetition
    ratio and the number of ``"user: "`` turns. Linear time: one ``in`` scan per phrase.

    >>> value, info = rpr_score("First, we need to check. Wait, thus it is.")
    >>> value, info["hits"]
    (0.2, ['we need to', 'wait', 'first, ', 'thus'])
    """
    lowered = text.lower()
    hits = [phrase for phrase in RPR_PHRASES if phrase in lowered]
    words, truncated = capped_words(lowered)
    total, _, repeated = ngram_stats(words, _REPETITION_N)
    repetition = repeated / total if total else 0.0
    user_turns = lowered.count(_USER_TURN)
    value = max(0.0, min(1.0, len(hits) / _SATURATION) - repetition - user_turns)
    return value, {"hits": hits, "repetition_ratio": repetition, "user_turns": user_turns, "truncated": truncated}


@register
class ReasoningPattern(RewardComponent):
    r"""Reasoning Pattern Reward: rewards the *presence* of reflective phrases in the reasoning,
    minus 20-gram repetition and self-dialogue, without checking correctness.

    Formula (Lv et al., "The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in
    Learning to Reason"; code trestad/Noisy-Rewards-in-Learning-to-Reason,
    ``math_score.py::think_reward``; docs/formulas.md#reasoning-pattern-reward):

    .. math::

        \mathrm{RPR} = \max\bigl(0,\ \min(1, \tfrac{h}{20}) - \rho_{20} - c_{user}\bigr)

    where :math:`h` is the number of the 40 phrases of :data:`RPR_PHRASES` present (each counts
    once, however often it occurs), :math:`\rho_{20}` the share of word 20-grams that are distinct
    ones occurring more than once (distinct repeated / total 20-grams, as in the source) and
    :math:`c_{user}` the number of ``"user: "`` occurrences (a model that invents a new question
    and answers it scores 0). Matching is on the lowercased text, by substring as in the source
    (``"thus"`` also matches "thusly").

    The source scores everything after ``Assistant: <think>``; here the text is the last complete
    ``<think>`` section (param ``section_tag``, default ``"think"``; ``None`` = the whole
    completion). A missing or unclosed section scores 0 with ``info["reason"]``: as in the paper's
    setup, reasoning without the required format earns nothing. The source's further rule
    "no ``\boxed{}`` answer → 0" is a format gate; put a ``format.tags`` gate in the spec for it.
    Word 20-grams are counted over the first 200k words (``info["truncated"]``).

    ``info``: ``hits`` (the phrases found), ``repetition_ratio``, ``user_turns``, ``truncated``.

    See :func:`rpr_calibrate` for the paper's use of RPR to repair a noisy reward model.

    >>> rpr = ReasoningPattern()
    >>> rpr(["<think>Wait, let me check the dose. Therefore it is safe.</think><answer>safe</answer>"])
    [0.15]
    >>> rpr(["<answer>safe</answer>"])
    [0.0]
    """

    kind = "reasoning_pattern"

    class Params(ComponentParams):
        section_tag: str | None = "think"

        @field_validator("section_tag")
        @classmethod
        def _plain_name(cls, tag: str | None) -> str | None:
            if tag is not None and (not tag or any(c in tag for c in "<>/ \t\n")):
                raise ValueError(f"tag name {tag!r} must be a bare name like 'think'")
            return tag

    def score_one(self, rollout: Rollout) -> ComponentScore:
        tag = self.params.section_tag
        text = answer_section(rollout, tag)
        if text is None:
            return ComponentScore(0.0, info={"reason": f"no complete <{tag}> section"})
        value, info = rpr_score(text)
        return ComponentScore.ok(value, **info)


def rpr_calibrate(
    rm_scores: Sequence[float | None],
    rpr_scores: Sequence[float | None],
    threshold: float = 0.5,
    weight: float = 0.1,
) -> list[float | None]:
    r"""Repair a noisy reward model's false negatives with RPR:
    :math:`rm' = \min(rm + w \cdot \mathrm{RPR}, 1)` if :math:`rm < \tau`, else :math:`rm`.

    Source: Lv et al. (docs/formulas.md#reasoning-pattern-reward, "Calibrating a noisy RM with RPR"; open-ended task
    "help-think", ``add_format_reward_when_wrong=True``), with :math:`\tau = 0.5`, :math:`w = 0.1`.
    The cap of 1 assumes reward-model scores in [0, 1], as in the source. A ``None`` reward stays
    ``None``; a ``None`` RPR leaves the reward unchanged. The source also zeroes ``rm`` for a
    response without a valid ``<think>…</think>`` and answer; do that with a format gate.

    >>> rpr_calibrate([0.2, 0.3, 0.9, None], [0.5, 1.0, 1.0, 1.0])
    [0.25, 0.4, 0.9, None]
    """
    if len(rm_scores) != len(rpr_scores):
        raise ValueError(f"got {len(rm_scores)} reward-model scores but {len(rpr_scores)} RPR scores")
    out: list[float | None] = []
    for rm, rpr in zip(rm_scores, rpr_scores):
        if rm is None or rpr is None or rm >= threshold:
            out.append(rm)
        else:
            out.append(min(rm + weight * rpr, 1.0))
    return out
