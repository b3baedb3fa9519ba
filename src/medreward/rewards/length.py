"""``length``: length shaping of a completion — DAPO soft overlong punishment, open-r1 cosine
scaling, or a target-length band."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sized
from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import RecordError
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, register

__all__ = ["Length", "completion_length"]

log = logging.getLogger(__name__)

Mode = Literal["overlong", "cosine", "band"]
Unit = Literal["chars", "words", "tokens"]

# Parameters that only one mode reads, and their defaults: setting one of them to another value
# in the wrong mode is almost always a spec mistake (e.g. `cache_length` on a cosine component).
_MODE_FIELDS: dict[str, tuple[str, ...]] = {
    "overlong": ("max_length", "cache_length", "penalty_factor"),
    "cosine": (
        "max_length",
        "correct_field",
        "min_value_correct",
        "max_value_correct",
        "min_value_wrong",
        "max_value_wrong",
    ),
    "band": ("low", "high", "slack"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "overlong": ("max_length", "cache_length"),
    "cosine": ("max_length",),
    "band": ("low", "high", "slack"),
}


def completion_length(rollout: Rollout, unit: Unit) -> tuple[int, str]:
    """Length of the completion in ``unit`` and where it came from.

    ``chars``: ``len(text)`` (open-r1 measures the cosine reward so). ``words``: whitespace-split
    words. ``tokens``: ``len(extra["completion_ids"])`` when the rollout carries the policy's token
    ids (TRL passes ``completion_ids`` to reward functions), else the whitespace-word count as an
    approximation — it undercounts subword tokens (roughly 1.3 BPE tokens per English word, more
    for clinical terms), so size ``max_length`` accordingly or pass the ids.

    >>> completion_length(Rollout(completion="pinpoint pupils, low RR"), "words")
    (4, 'words')
    >>> completion_length(Rollout(completion="abc", extra={"completion_ids": [7, 8]}), "tokens")
    (2, 'completion_ids')
    """
    if unit == "tokens":
        ids = rollout.extra.get("completion_ids")
        if ids is not None:
            if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Sized):
                raise RecordError(f"'completion_ids' must be a list of token ids, got {type(ids).__name__}")
            return len(ids), "completion_ids"
        return _word_count(rollout), "whitespace"
    if unit == "words":
        return _word_count(rollout), "words"
    return len(rollout.completion_text), "chars"


def _word_count(rollout: Rollout) -> int:
    return rollout.cached("word_count", lambda: len(rollout.completion_text.split()))


@register
class Length(RewardComponent):
    r"""Length shaping of the completion, in one of three modes (param ``mode``).

    ``mode = "overlong"`` — DAPO soft overlong punishment (Yu et al., DAPO, Eq. 13; open-r1
    ``rewards.py::get_soft_overlong_punishment``, TRL ``other_rewards.py``, verl's DAPO reward
    manager). With :math:`L_{exp} = L_{max} - L_{cache}` and factor :math:`f`:

    .. math::

        R = f \cdot \begin{cases} 0 & |y| \le L_{exp} \\ (L_{exp} - |y|)/L_{cache} & L_{exp} < |y| \le L_{max}
        \\ -1 & |y| > L_{max} \end{cases} \in [-f, 0]

    It is meant to be *added* to a correctness reward. Params: ``max_length`` (:math:`L_{max}`,
    DAPO 20480), ``cache_length`` (:math:`L_{cache}`, DAPO 4096; must be < ``max_length``),
    ``penalty_factor`` (default 1.0).

    ``mode = "cosine"`` — cosine-scaled correctness (Yeo et al., "Demystifying Long CoT", App. C.1;
    open-r1 ``rewards.py::get_cosine_scaled_reward``):
    :math:`p = \mathrm{clip}(|y|/L_{max}, 0, 1)`,
    :math:`R = v_{lo} + \tfrac12 (v_{hi} - v_{lo})(1 + \cos \pi p)`; a correct answer uses
    :math:`(v_{lo}, v_{hi})` = (``min_value_correct``, ``max_value_correct``) = (0.5, 1.0) so shorter
    is better; a wrong one uses (``max_value_wrong``, ``min_value_wrong``). Unlike open-r1, ``p`` is
    clipped: open-r1 lets the cosine rise again past :math:`L_{max}` (docs/formulas.md#length-shaping).
    The defaults are open-r1's *config* defaults, ``min_value_wrong = 0.0`` and
    ``max_value_wrong = -0.5``: with them a short wrong answer scores 0 and a long one −0.5,
    the opposite of the paper's intent (its function default ``min_value_wrong = -1.0`` makes
    long wrong answers penalised *less*); set ``min_value_wrong = -1.0`` to follow the paper.
    Components are independent, so correctness is read from a boolean reference field
    (``correct_field``, default ``"correct"``); without it the component is ``not_applicable``.
    Inside a spec one usually pairs a correctness component with ``length`` in ``overlong`` or
    ``band`` mode instead. Param ``max_length`` is required (open-r1 uses 1000 characters).

    ``mode = "band"`` — target-length band ([UNVERIFIED: inferred], medreward's own): 1 inside
    ``[low, high]``, falling linearly to 0 over ``slack`` units outside it:
    :math:`R = \max(0, 1 - \mathrm{dist}(|y|, [low, high]) / slack)`.

    ``unit`` (``"chars"`` | ``"words"`` | ``"tokens"``, default ``"tokens"``) measures the whole
    completion; see :func:`completion_length` for how tokens are counted (``completion_ids`` in the
    rollout, else a whitespace-split approximation). Parameters that the chosen mode does not read
    must stay at their defaults.

    ``info``: ``length``, ``unit``, ``length_source``, and ``progress``/``correct`` for cosine.

    >>> overlong = Length(mode="overlong", max_length=10, cache_length=4, unit="words")
    >>> overlong(["word " * 6, "word " * 8, "word " * 11])
    [0.0, -0.5, -1.0]
    >>> cosine = Length(mode="cosine", max_length=4, unit="words")
    >>> cosine(["", "a b c d", "a b c d e f"], [{"correct": True}, {"correct": True}, {"correct": False}])
    [1.0, 0.5, -0.5]
    >>> Length(mode="band", low=2, high=4, slack=2, unit="words")(["a", "a b c", "a b c d e f g"])
    [0.5, 1.0, 0.0]
    """

    kind = "length"

    class Params(ComponentParams):
        mode: Mode
        unit: Unit = "tokens"
        max_length: int | None = Field(default=None, gt=0)
        cache_length: int | None = Field(default=None, gt=0)
        penalty_factor: float = Field(default=1.0, gt=0, allow_inf_nan=False)
        correct_field: str = Field(default="correct", min_length=1)
        min_value_correct: float = Field(default=0.5, allow_inf_nan=False)
        max_value_correct: float = Field(default=1.0, allow_inf_nan=False)
        min_value_wrong: float = Field(default=0.0, allow_inf_nan=False)
        max_value_wrong: float = Field(default=-0.5, allow_inf_nan=False)
        low: int | None = Field(default=None, ge=0)
        high: int | None = Field(default=None, ge=0)
        slack: float | None = Field(default=None, gt=0, allow_inf_nan=False)

        @model_validator(mode="after")
        def _fits_mode(self) -> Length.Params:
            for name in _REQUIRED[self.mode]:
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is required when mode = {self.mode!r}")
            used = set(_MODE_FIELDS[self.mode])
            fields = type(self).model_fields
            for name in (n for fs in _MODE_FIELDS.values() for n in fs):
                if name not in used and getattr(self, name) != fields[name].default:
                    raise ValueError(f"{name} is not used when mode = {self.mode!r}")
            if self.mode == "overlong" and self.cache_length >= self.max_length:  # type: ignore[operator]
                raise ValueError(
                    f"cache_length ({self.cache_length}) must be smaller than max_length ({self.max_length})"
                )
            if self.mode == "band" and self.low > self.high:  # type: ignore[operator]
                raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
            return self

    def setup(self) -> None:
        self._warned_no_ids = False

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.correct_field,) if self.params.mode == "cosine" else ()

    @property
    def output_range(self) -> tuple[float, float]:
        p = self.params
        if p.mode == "overlong":
            return (-p.penalty_factor, 0.0)
        if p.mode == "cosine":
            values = (p.min_value_correct, p.max_value_correct, p.min_value_wrong, p.max_value_wrong)
            return (min(values), max(values))
        return (0.0, 1.0)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        if p.mode == "cosine":
            correct = self._correctness(rollout)
            if correct is None:
                return ComponentScore.not_applicable(f"reference has no boolean {p.correct_field!r}")
        length, source = completion_length(rollout, p.unit)
        if source == "whitespace" and not self._warned_no_ids:
            self._warned_no_ids = True  # once per component: the info of every sample says it too
            log.warning("%s: rollouts carry no 'completion_ids'; counting whitespace words as tokens", self.name)
        info: dict[str, Any] = {"length": length, "unit": p.unit, "length_source": source}
        if p.mode == "overlong":
            return ComponentScore.ok(self._overlong(length), **info)
        if p.mode == "cosine":
            progress = min(1.0, length / p.max_length)  # type: ignore[operator]
            if correct:
                lo, hi = p.min_value_correct, p.max_value_correct
            else:  # swapped, as in open-r1: the value at p = 0 is min_value_wrong
                lo, hi = p.max_value_wrong, p.min_value_wrong
            value = lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * progress))
            low, high = self.output_range
            # cos(pi/2) is 6e-17, not 0: keep round-off inside the declared range
            return ComponentScore.ok(min(high, max(low, value)), progress=progress, correct=correct, **info)
        return ComponentScore.ok(self._band(length), **info)

    def _correctness(self, rollout: Rollout) -> bool | None:
        value = rollout.reference.get(self.params.correct_field)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        raise RecordError(
            f"reference field {self.params.correct_field!r} must be true or false, got {type(value).__name__}"
        )

    def _overlong(self, length: int) -> float:
        p = self.params
        expected = p.max_length - p.cache_length  # type: ignore[operator]
        if length <= expected:
            return 0.0
        if length <= p.max_length:  # type: ignore[operator]
            return (expected - length) / p.cache_length * p.penalty_factor  # type: ignore[operator]
        return -p.penalty_factor

    def _band(self, length: int) -> float:
        p = self.params
        if length < p.low:  # type: ignore[operator]
            distance = p.low - length  # type: ignore[operator]
        elif length > p.high:  # type: ignore[operator]
            distance = length - p.high  # type: ignore[operator]
        else:
            return 1.0
        return max(0.0, 1.0 - distance / p.slack)  # type: ignore[operator]
