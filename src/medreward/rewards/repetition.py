"""``repetition``: n-gram repetition penalty on the words (or token ids) of a completion."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence, Sized
from typing import Any, Literal

from pydantic import Field

from ..errors import RecordError
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, register

__all__ = ["MAX_WORDS", "Repetition", "capped_words", "ngram_stats"]

#: Words examined per text. A 10 MB completion has ~1.5M words; counting n-gram tuples over all
#: of them costs seconds and hundreds of MB, and any text this long is already fully repetitive
#: or garbage, so the first MAX_WORDS words decide. ``info["truncated"]`` says when it happened.
MAX_WORDS = 200_000

log = logging.getLogger(__name__)


def capped_words(text: str, limit: int = MAX_WORDS) -> tuple[list[str], bool]:
    """The first ``limit`` whitespace-separated words of ``text``, lowercased, and whether more followed.

    ``str.split(None, limit)`` stops splitting after ``limit`` words, so the cost is bounded by the
    examined prefix, not the whole text.

    >>> capped_words("Wait, Wait again", 2)
    (['wait,', 'wait'], True)
    """
    words = text.split(None, limit)
    truncated = len(words) > limit
    if truncated:
        del words[limit:]
    return [w.lower() for w in words], truncated


def ngram_stats(words: Sequence[Hashable], n: int) -> tuple[int, int, int]:
    """``(total, distinct, repeated)`` word n-grams: how many there are, how many distinct ones,
    and how many distinct ones occur more than once. One pass, hashing n-gram tuples.

    >>> ngram_stats("a b a b a".split(), 2)
    (4, 2, 2)
    """
    total = len(words) - n + 1
    if total <= 0:
        return 0, 0, 0
    counts = Counter(zip(*(words[i:] for i in range(n))))
    repeated = sum(1 for c in counts.values() if c > 1)
    return total, len(counts), repeated


@register
class Repetition(RewardComponent):
    r"""Penalty for repeated word n-grams: 0 for text without repeats, down to ``max_penalty``.

    Formula: :math:`R = (1 - \frac{\#\text{distinct n-grams}}{\#\text{n-grams}}) \cdot \text{max\_penalty}
    \in [\text{max\_penalty}, 0]`, over the lowercased whitespace-split words of the completion;
    a text with fewer than ``n`` words scores 0.

    Source: open-r1 ``rewards.py::get_repetition_penalty_reward`` (words, lowercased) and TRL
    ``rewards/other_rewards.py::get_repetition_penalty_reward`` (the same formula on token ids),
    both after Yeo et al., "Demystifying Long CoT Reasoning", App. C.2. Defaults as there:
    ``ngram_size = 3``, ``max_penalty = -1.0``. Only the first :data:`MAX_WORDS` words (or token
    ids) are examined (``info["truncated"]``), so a 10 MB completion costs no more than a 200k-word one.

    ``unit``: ``"words"`` (default, as open-r1) or ``"tokens"``: n-grams over the policy's token ids
    in ``extra["completion_ids"]`` (TRL passes them to reward functions), as TRL counts them; a
    rollout without ids falls back to words (a warning, and ``info["unit_source"]`` says so).

    ``info``: ``words`` (items counted: words or ids), ``ngrams``, ``distinct``, ``truncated``, and
    with ``unit = "tokens"`` ``unit_source`` (``words`` or ``completion_ids``).

    >>> rep = Repetition()
    >>> rep(["the patient is stable", "stop stop stop stop stop", "ok"])
    [0.0, -0.6666666666666667, 0.0]
    """

    kind = "repetition"

    class Params(ComponentParams):
        ngram_size: int = Field(default=3, ge=1)
        max_penalty: float = Field(default=-1.0, le=0, allow_inf_nan=False)
        unit: Literal["words", "tokens"] = "words"

    def setup(self) -> None:
        self._warned_no_ids = False

    @property
    def output_range(self) -> tuple[float, float]:
        return (self.params.max_penalty, 0.0)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        n = self.params.ngram_size
        items, truncated, source = self._items(rollout)
        total, distinct, _ = ngram_stats(items, n)
        info: dict[str, Any] = {"words": len(items), "ngrams": total, "distinct": distinct, "truncated": truncated}
        if self.params.unit == "tokens":
            info["unit_source"] = source
        if total == 0:
            return ComponentScore.ok(0.0, reason=f"fewer than {n} words", **info)
        # + 0.0 turns the -0.0 of a repeat-free text into 0.0
        return ComponentScore.ok((1.0 - distinct / total) * self.params.max_penalty + 0.0, **info)

    def _items(self, rollout: Rollout) -> tuple[Sequence[Hashable], bool, str]:
        """What the n-grams are formed over: token ids (``unit = "tokens"`` with ids), else words."""
        if self.params.unit == "tokens":
            ids = rollout.extra.get("completion_ids")
            if ids is not None:
                return (*_token_ids(ids), "completion_ids")
            if not self._warned_no_ids:
                self._warned_no_ids = True  # once per component: the info of every sample says it too
                log.warning("%s: rollouts carry no 'completion_ids'; counting n-grams over words", self.name)
        words, truncated = capped_words(rollout.completion_text)
        return words, truncated, "words"


def _token_ids(ids: Any) -> tuple[list[Hashable], bool]:
    if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Sized):
        raise RecordError(f"'completion_ids' must be a list of token ids, got {type(ids).__name__}")
    tolist = getattr(ids, "tolist", None)  # a tensor / array row
    items = list(tolist() if callable(tolist) else ids)
    truncated = len(items) > MAX_WORDS
    if truncated:
        del items[MAX_WORDS:]
    try:
        hash(tuple(items))
    except TypeError:
        raise RecordError("'completion_ids' must hold token ids (integers)") from None
    return items, truncated
