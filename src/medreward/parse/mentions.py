"""Clinical mentions in prose: drug names (``drug-named-entity-recognition``) and vocabulary
terms, each marked negated or asserted.

``"Denies taking Glucophage; started Tylenol."`` → metformin (negated), acetaminophen.

* **Drugs**: the words of the text (punctuation split off, hyphens inside a word kept, as the
  library expects pre-tokenised input) go to ``find_drugs`` of ``drug-named-entity-recognition``
  (20,070 drugs, 107,360 brand and generic name variants from MeSH, DrugBank, Wikipedia and
  the NHS). Every mention gets the library's canonical drug name, case-folded, as its id, so a
  brand and its generic share one id (Tylenol, acetaminophen, paracetamol → ``acetaminophen``;
  Lantus → ``insulin glargine``). The library loads a pickle (about 2 s) once per process, on
  first use.
* **Vocabulary terms**: with a :class:`~medreward.vocab.Vocabulary`, runs of up to the longest
  term's word count are looked up by :func:`~medreward.vocab.term_key` (the vocabulary's own
  matching: case, accents, punctuation, plural, trailing "overdose"/"toxicity"… tolerant),
  longest run first, left to right. A vocabulary term wins over a drug name for the same
  words. The vocabulary's "none" terms are not mentions.
* **Negation**: :func:`medreward.parse.scopes.negation_view` (the label reader's ConText-style
  rules); a mention inside a negated span is ``negated``.

>>> found = find_mentions("Denies taking Glucophage; started Tylenol 500 mg.")
>>> [(m.id, m.negated) for m in found.mentions]
[('metformin', True), ('acetaminophen', False)]

Linear: words come from one scan (:data:`_WORD`); each word starts at most ``max_words`` dict
lookups; ``find_drugs`` makes two dict lookups per word. At most ``max_chars`` characters are
read and ``max_mentions`` mentions kept (``truncated`` says so).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import re

from ..vocab import Vocabulary, term_key
from .scopes import MAX_CHARS, negation_view

__all__ = ["MAX_MENTIONS", "Mention", "MentionList", "drug_finder", "drug_ids", "find_mentions", "words"]

log = logging.getLogger(__name__)

MAX_MENTIONS = 512
_MAX_TERM_WORDS = 6
# a word: letters and digits, with hyphens and apostrophes inside; everything else separates.
# Linear in Python's re: a separator is never a word character, so a failed "-x" continuation
# gives back nothing that could match another way (re2's per-match call costs more than the scan).
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_GAP = "\x00"  # stands for words already taken, so no drug bigram is formed across them


@dataclass(frozen=True, slots=True)
class Mention:
    """One mention: ``id`` (canonical drug name or vocabulary id), ``kind`` (``"drug"`` or
    ``"term"``), ``raw`` (as written), ``negated``, ``span`` (in the text's collapsed view,
    :attr:`MentionList.text`)."""

    id: str
    kind: Literal["drug", "term"]
    raw: str
    negated: bool
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class MentionList:
    """Mentions in order of appearance; ``text`` is the whitespace-collapsed text the spans
    refer to; ``truncated``: a bound was hit."""

    mentions: tuple[Mention, ...]
    text: str
    truncated: bool = False

    def ids(self, *, negated: bool = False) -> tuple[str, ...]:
        """Distinct ids of the asserted (or, with ``negated=True``, the negated) mentions, in order."""
        return tuple(dict.fromkeys(m.id for m in self.mentions if m.negated == negated))


def words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word of ``text`` (see :data:`_WORD`).

    >>> t = "co-trimoxazole/TMP, (aspirin)."
    >>> [t[s:e] for s, e in words(t)]
    ['co-trimoxazole', 'TMP', 'aspirin']
    """
    return [m.span() for m in _WORD.finditer(text)]


@lru_cache(maxsize=1)
def drug_finder() -> Any:
    """``find_drugs`` of ``drug-named-entity-recognition``, imported once per process (its
    import loads the drug dictionary, about 2 s)."""
    from drug_named_entity_recognition import find_drugs

    log.info("loaded drug-named-entity-recognition (once per process)")
    return find_drugs


def _drug_hits(tokens: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(canonical id, first token, end token)`` of each drug ``find_drugs`` sees in ``tokens``."""
    if not tokens:
        return []
    try:
        found = drug_finder()(list(tokens), is_ignore_case=True)
    except Exception as exc:  # noqa: BLE001 - a third-party lookup: a miss, not a crash
        log.warning("drug-named-entity-recognition failed on %d tokens: %s", len(tokens), exc)
        return []
    out = []
    for data, start, end in found:
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and name.strip():
            out.append((_fold(name), start, end))
    out.sort(key=lambda hit: (hit[1], hit[2]))
    return out


def drug_ids(name: str) -> tuple[str, ...]:
    """Canonical ids of the drugs a name (brand or generic) denotes; ``()`` when it names none.

    >>> drug_ids("Tylenol"), drug_ids("paracetamol"), drug_ids("not a drug")
    (('acetaminophen',), ('acetaminophen',), ())
    """
    tokens = [name[s:e] for s, e in words(name)]
    return tuple(dict.fromkeys(hit[0] for hit in _drug_hits(tokens)))


def _fold(text: str) -> str:
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.casefold().split())


@lru_cache(maxsize=32)
def _term_index(vocab: Vocabulary) -> tuple[frozenset[str], int]:
    """Keys of the first word of every vocabulary term, and the most words a term has."""
    terms: list[str] = []
    for cls in vocab.classes.values():
        terms.extend((cls.id, cls.name, *cls.synonyms, *cls.members))
    terms.extend(vocab.combinations)
    first: set[str] = set()
    longest = 1
    for term in terms:
        spans = words(_fold(term).replace("_", " "))
        if spans:
            folded = _fold(term).replace("_", " ")
            first.add(term_key(folded[spans[0][0] : spans[0][1]]))
            longest = max(longest, len(spans))
    return frozenset(first), min(longest, _MAX_TERM_WORDS)


def find_mentions(
    text: str,
    *,
    vocabulary: Vocabulary | None = None,
    drugs: bool = True,
    max_chars: int = MAX_CHARS,
    max_mentions: int = MAX_MENTIONS,
) -> MentionList:
    """Drug and vocabulary mentions of ``text``, negation marked (see the module docstring).

    >>> from medreward.vocab import load_vocabulary
    >>> found = find_mentions("Benzos and opioid overdose ruled out; ethanol.", vocabulary=load_vocabulary("toxicology"))
    >>> [(m.id, m.negated) for m in found.mentions]
    [('benzodiazepines', True), ('opioids', True), ('ethanol', False)]
    """
    view = negation_view(text, max_chars=max_chars)
    flat = view.text
    spans = words(flat)
    index = _term_index(vocabulary) if vocabulary is not None else None
    table = vocabulary.table if vocabulary is not None else None
    taken: list[tuple[str, str, int, int]] = []  # (id, kind, first word, end word)
    used = [False] * len(spans)
    if index is not None and table is not None:
        first_keys, longest = index
        i = 0
        n = len(spans)
        while i < n:
            s0, e0 = spans[i]
            if term_key(flat[s0:e0]) not in first_keys:
                i += 1
                continue
            for w in range(min(longest, n - i), 0, -1):
                ids = table.get(term_key(flat[s0 : spans[i + w - 1][1]]))
                if ids:
                    taken.extend((class_id, "term", i, i + w) for class_id in ids)
                    for k in range(i, i + w):
                        used[k] = True
                    i += w
                    break
            else:
                i += 1
    if drugs and spans:
        tokens = [_GAP if used[k] else flat[s:e] for k, (s, e) in enumerate(spans)]
        # find_drugs matches tokens, so a negation boundary inside a two-word name is rare
        # and harmless: the mention is judged by its span below
        taken.extend((drug, "drug", start, end) for drug, start, end in _drug_hits(tokens))
    taken.sort(key=lambda t: (t[2], t[3]))
    out: list[Mention] = []
    truncated = view.truncated
    for mention_id, kind, first, end in taken:
        if len(out) >= max_mentions:
            truncated = True
            break
        start, stop = spans[first][0], spans[end - 1][1]
        out.append(Mention(mention_id, kind, flat[start:stop], view.overlaps_negation(start, stop), (start, stop)))  # type: ignore[arg-type]
    return MentionList(tuple(out), flat, truncated)
