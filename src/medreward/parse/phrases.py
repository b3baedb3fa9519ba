r"""Phrases stated in prose, negation-aware: is "beta blocker" said, and said without "no"?

A text is read once (:class:`PhraseIndex`): its whitespace-collapsed view and negated spans come
from :func:`medreward.parse.scopes.negation_view`; its words (runs of letters, digits and
marks: punctuation and hyphens separate, so "beta-blockers" = "beta blockers") are folded
(case, accents, a final plural "s" dropped) and indexed by their key. A phrase is found as a
contiguous run of word keys, and each occurrence is classed **asserted** (it touches no negated
span) or **negated** (it does).

>>> index = PhraseIndex("Start a beta-blocker. No antibiotics; aspirin not excluded.")
>>> index.occurrences("beta blockers")
[False]
>>> index.occurrences("antibiotic"), index.occurrences("aspirin"), index.occurrences("heparin")
([True], [False], [])

Linear: words come from one scan with a single character class (``[^\W_]+``: one greedy run
per word, nothing to backtrack into; Python's ``re`` is used because per-match calls into
:mod:`re2` cost more than the scan); a phrase of ``m`` words is checked at each occurrence of
its first word, so a search costs at most ``m`` times the number of words.
"""

from __future__ import annotations

import re
import unicodedata

from .scopes import MAX_CHARS, NegationView, negation_view

__all__ = ["MAX_PHRASE_WORDS", "PhraseIndex", "phrase_keys"]

MAX_PHRASE_WORDS = 64
_WORD = re.compile(r"[^\W_]+")  # letters and digits; one character class, linear


def _key(word: str) -> str:
    if not word.isascii():
        word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    word = word.casefold()
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def phrase_keys(phrase: str) -> tuple[str, ...]:
    """The folded word keys of a phrase (at most :data:`MAX_PHRASE_WORDS`).

    >>> phrase_keys("Beta-Blockers, IV")
    ('beta', 'blocker', 'iv')
    """
    return tuple(_key(m.group()) for m in _WORD.finditer(phrase))[:MAX_PHRASE_WORDS]


class PhraseIndex:
    """Where phrases occur in one text, and whether each occurrence is negated."""

    __slots__ = ("keys", "positions", "spans", "view")

    def __init__(self, text: str, *, max_chars: int = MAX_CHARS) -> None:
        self.view: NegationView = negation_view(text, max_chars=max_chars)
        flat = self.view.text
        self.spans: list[tuple[int, int]] = []
        self.keys: list[str] = []
        self.positions: dict[str, list[int]] = {}
        for i, m in enumerate(_WORD.finditer(flat)):
            key = _key(m.group())
            self.spans.append(m.span())
            self.keys.append(key)
            self.positions.setdefault(key, []).append(i)

    @property
    def truncated(self) -> bool:
        return self.view.truncated

    def find(self, keys: tuple[str, ...]) -> list[tuple[int, int]]:
        """``(start, end)`` in :attr:`view` text of every occurrence of the word keys ``keys``."""
        if not keys:
            return []
        out = []
        words = self.keys
        m = len(keys)
        for i in self.positions.get(keys[0], ()):
            if words[i : i + m] == list(keys):
                out.append((self.spans[i][0], self.spans[i + m - 1][1]))
        return out

    def occurrences(self, phrase: str | tuple[str, ...]) -> list[bool]:
        """One flag per occurrence of ``phrase`` (text or word keys): ``True`` where it is negated."""
        keys = phrase_keys(phrase) if isinstance(phrase, str) else phrase
        return [self.view.overlaps_negation(s, e) for s, e in self.find(keys)]

    def negated_occurrences(self, phrase: str | tuple[str, ...]) -> list[bool]:
        """One flag per occurrence: ``True`` where it lies wholly inside a negated span."""
        keys = phrase_keys(phrase) if isinstance(phrase, str) else phrase
        return [self.view.is_negated(s, e) for s, e in self.find(keys)]
